"""The custom socket types that carry NUMINA's records between nodes."""
from comfy_api.latest import io

CAPTURE = io.Custom("NUMINA_CAPTURE")
LAYOUT = io.Custom("NUMINA_LAYOUT")
