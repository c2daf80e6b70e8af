"""Schema fields that only some ComfyUI versions know, passed only where they exist."""
from __future__ import annotations

import dataclasses
from typing import Any

from comfy_api.latest import io

# Words users type in the node search to find the pack, on every NUMINA node.
PACK_ALIASES = ("count objects", "number of objects", "object count", "exact count", "numina")


def search_aliases(*aliases: str) -> dict[str, Any]:
    """``io.Schema(..., **search_aliases(...))``: the node-search synonyms (these and the pack's),
    on a ComfyUI whose Schema has the field (0.33 has `search_aliases`; 0.3.75 has none and would
    refuse the unknown argument)."""
    if "search_aliases" not in {f.name for f in dataclasses.fields(io.Schema)}:
        return {}
    return {"search_aliases": list(dict.fromkeys((*aliases, *PACK_ALIASES)))}
