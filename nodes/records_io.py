"""The custom socket types that carry NUMINA's records between nodes."""
from comfy_api.latest import io

CAPTURE = io.Custom("NUMINA_CAPTURE")
LAYOUT = io.Custom("NUMINA_LAYOUT")
COUNTER = io.Custom("NUMINA_COUNTER")      # an ObjectCounter (numina_ops/judge.py): GroundingDINO, or a test judge
CHECK = io.Custom("NUMINA_CHECK")          # a CountCheck: what the judge counted in a finished video
TRIES = io.Custom("NUMINA_TRIES")          # a CheckedRun: every try of NuminaCheckedSampler
