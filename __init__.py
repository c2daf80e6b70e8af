"""NUMINA for ComfyUI: exact object counts in Wan text-to-video (CVPR 2026, training-free).

ComfyUI imports this file.  If the pack cannot load (a ComfyUI whose API differs, a missing
requirement), it says so once and registers nothing, so the rest of ComfyUI keeps working.
"""
import logging

# ComfyUI serves this folder at /extensions/<pack folder>/; its frontend reads a node's help page
# from docs/<node id>.md there (web/docs/NuminaAttentionCapture.md, ...).
WEB_DIRECTORY = "./web"

try:
    from .nodes import comfy_entrypoint  # noqa: F401
except Exception as error:  # never take ComfyUI down with us
    logging.error(
        "[NUMINA] the NUMINA nodes are disabled: %s: %s. This pack needs ComfyUI >= 0.3.75 "
        "(comfy_api.latest) and the packages in its requirements.txt; ComfyUI itself runs on.",
        type(error).__name__, error,
    )
    NODE_CLASS_MAPPINGS = {}
    NODE_DISPLAY_NAME_MAPPINGS = {}
