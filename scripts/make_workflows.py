"""Generate the pack's example workflows (ComfyUI UI format) and their thumbnails into example_workflows/.

    .numina_env/venv/bin/python scripts/make_workflows.py                 # all workflows and thumbnails
    .numina_env/venv/bin/python scripts/make_workflows.py --demo-model tiny

Each graph is written as a compact spec (node type, column, socket links, widget values by name);
the builder numbers nodes and links, so the `links` table and every node's `inputs` / `outputs`
always agree.  The node signatures (sockets, widgets in the frontend's order, outputs) are read from
the node definitions of the ComfyUI this script boots in-process (the data GET /object_info
serves), so a changed signature changes what it writes or stops it with the node and input named;
tests/comfy/test_workflows.py checks that the committed files are what it writes.  Run it on the
set-up's ComfyUI (0.3.75, the oldest the pack supports): newer ComfyUIs load those workflows, and
the version is recorded in each workflow's `extra.numina.comfyui`.

ComfyUI serves a custom node's example_workflows/ as its templates (GET /workflow_templates) and the
frontend's template browser shows the same-named .jpg beside each .json.  The CPU demo's thumbnail
is its result: this script runs the demo (a few seconds on one CPU thread) and shows a frame of the
plain run, of the NUMINA run and the refined layout.  The real-Wan workflows cannot run here: theirs
draw the graph and an illustration of the layout preview (synthetic attention maps).
"""
from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from PIL import Image, ImageDraw, ImageFont

from numina_dev import comfy_runtime
from numina_dev.synthetic import make_scene, scene_capture
from numina_ops.layout import infer_layout
from numina_ops.prompt import parse_targets
from numina_ops.refine import refine_layout
from scripts import workflow_api

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(ROOT, "example_workflows")

COUNTWORLD_MODEL = "countworld_wan21_t2v.safetensors"
COUNTWORLD_CHECKPOINT = os.path.join(ROOT, "countworld", "checkpoints", COUNTWORLD_MODEL)
TINY_MODEL = "numina_tiny_wan21_t2v.safetensors"
TINY_TEXT_ENCODER = "numina_tiny_umt5.safetensors"
TINY_VAE = "numina_tiny_wan21_vae.safetensors"

# CountWorld's geometry (countworld/world.py: 32 x 32 latent, 2 latent frames).
DEMO_WIDTH, DEMO_HEIGHT, DEMO_LENGTH = 256, 256, 5
DEMO_NAME = "numina_cpu_demo"
DEMO_PREFIX = "numina_demo"     # the demo's outputs: numina_demo/frame, plain_frame, layout_inferred, ...


# A CountWorld tuning prompt (not a held-out one) and a seed whose plain run shows two or three
# circles, not four: an illustration of a fix; the benchmark gives the averages.
DEMO_PROMPT = "four green circles moving on a plain grey background"
DEMO_SEED = 0

REAL_SEED = 20260411
WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
                "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")

HF_WAN21 = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
HF_WAN22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
HF_KIJAI = "https://huggingface.co/Kijai/WanVideo_comfy/resolve/main"
# Wan 2.1 1.3B's step-distillation LoRA as users name it (CausVid, bidirectional, rank 32; lightx2v's
# LoRAs are for the 14B models and load the same way)
FOUR_STEP_LORA = "Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32.safetensors"
MODEL_URLS = {
    "wan2.1_t2v_1.3B_fp16.safetensors": (HF_WAN21, "diffusion_models"),
    "wan2.1_t2v_14B_fp16.safetensors": (HF_WAN21, "diffusion_models"),
    "wan2.2_ti2v_5B_fp16.safetensors": (HF_WAN22, "diffusion_models"),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": (HF_WAN22, "diffusion_models"),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": (HF_WAN22, "diffusion_models"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (HF_WAN21, "text_encoders"),
    "wan_2.1_vae.safetensors": (HF_WAN21, "vae"),
    "wan2.2_vae.safetensors": (HF_WAN22, "vae"),
    FOUR_STEP_LORA: (HF_KIJAI, "loras"),
}
# files whose download address is not <base>/<folder>/<file>
MODEL_DOWNLOADS = {FOUR_STEP_LORA: f"{HF_KIJAI}/{FOUR_STEP_LORA}"}


# ----------------------------------------------------------------------------- node definitions
def live_object_info() -> dict[str, Any]:
    """What GET /object_info serves, from the ComfyUI the harness boots in this process (the pack
    and the testing pack registered through ComfyUI's own loader)."""
    comfy_runtime.load_custom_nodes()
    return workflow_api.object_info_in_process()


def live_comfyui_version() -> str:
    comfy_runtime.bootstrap()
    import comfyui_version

    return comfyui_version.__version__


@dataclass(frozen=True)
class Socket:
    name: str
    type: str
    optional: bool = False

    def takes(self, link_type: str) -> bool:
        return self.type == "*" or link_type in self.type.split(",")


@dataclass(frozen=True)
class Widget:
    name: str
    spec: tuple[Any, ...]
    optional: bool = False


@dataclass(frozen=True)
class Definition:
    """What the UI format needs of a node definition (an /object_info entry): link sockets and
    widgets in definition order, outputs, and whether it is an output node."""
    sockets: tuple[Socket, ...]
    widgets: tuple[Widget, ...]
    outputs: tuple[Socket, ...]
    output_node: bool = False

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "Definition":
        inputs = info.get("input", {})
        order = info.get("input_order") or {k: list(v) for k, v in inputs.items()}
        sockets, widgets = [], []
        for section in ("required", "optional"):
            for name in order.get(section, list(inputs.get(section, {}))):
                spec = list(inputs[section][name])
                if workflow_api.is_widget(spec):
                    widgets.append(Widget(name, tuple(spec), section == "optional"))
                else:
                    sockets.append(Socket(name, spec[0], section == "optional"))
        outputs = tuple(Socket(n, t) for n, t in zip(info.get("output_name", []), info.get("output", [])))
        return cls(tuple(sockets), tuple(widgets), outputs, bool(info.get("output_node")))


# The frontend's own nodes: in no /object_info
UI_ONLY = {"Note": Definition((), (Widget("text", ("STRING", {"multiline": True})),), ())}


# ----------------------------------------------------------------------------- graph builder
@dataclass(frozen=True)
class Output:
    node_id: int
    slot: int
    type: str


@dataclass
class Node:
    id: int
    type: str
    definition: Definition
    column: int
    title: Optional[str]
    color: Optional[tuple[str, str]]
    links_in: dict[str, Optional[int]]
    widgets_values: list[Any]
    models: list[dict[str, str]]
    size: tuple[float, float]
    links_out: dict[int, list[int]] = field(default_factory=dict)
    pos: tuple[float, float] = (0.0, 0.0)

    def __getitem__(self, name: str) -> Output:
        for slot, socket in enumerate(self.definition.outputs):
            if socket.name == name:
                return Output(self.id, slot, socket.type)
        raise KeyError(f"{self.type} has no output {name!r} (it has {[s.name for s in self.definition.outputs]})")


POSITIVE_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")
NUMINA_COLOR = ("#432", "#653")
NOTE_COLOR = ("#432", "#653")


def _default(node_type: str, widget: Widget) -> Any:
    """The value the frontend gives a widget nobody set: the definition's default, else the first option."""
    kind, options = widget.spec[0], (widget.spec[1] if len(widget.spec) > 1 else {})
    if "default" in options:
        return options["default"]
    if isinstance(kind, list) and kind:
        return kind[0]
    if kind == "COMBO" and options.get("options"):
        return options["options"][0]
    if kind == workflow_api.DYNAMIC_COMBO and options.get("options"):
        return options["options"][0]["key"]
    raise ValueError(f"{node_type}: widget {widget.name!r} has no default: give it a value")


def widget_values(node_type: str, definition: Definition, values: dict[str, Any]) -> list[Any]:
    """widgets_values in the frontend's order, taken by name from `values` (consumed).

    The pack's own nodes need a value for every widget, so a widget added to one of them stops this
    script until the example sets it.  A core node's widget without a value gets its default, and
    trailing optional ones are left out (the frontend fills them in): a widget that a newer ComfyUI
    adds to a core node does not change the workflow.  A seed-like widget is followed by the
    frontend's control_after_generate value, 'fixed'.  A V3 DynamicCombo's chosen option brings its
    own widgets right after it, named '<combo>.<widget>' here."""
    strict = node_type.startswith("Numina")
    entries: list[tuple[list[Any], bool]] = []    # (stored values, may be left out when trailing)

    def read(widgets: list[Widget], prefix: str = "") -> None:
        for widget in widgets:
            name = prefix + widget.name
            given = name in values
            if not given and strict:
                raise ValueError(f"{node_type}: widget {name!r} needs a value in this example")
            value = values.pop(name) if given else _default(node_type, widget)
            spec = list(widget.spec)
            stored = [value, "fixed"] if workflow_api.has_control_value(widget.name, spec) else [value]
            entries.append((stored, widget.optional and not given))
            options = workflow_api.option_widgets(spec, value)
            if options:
                read([Widget(n, tuple(s), widget.optional) for n, s in options], name + ".")

    read(list(definition.widgets))
    while entries and entries[-1][1]:
        entries.pop()
    return [value for stored, _ in entries for value in stored]


class Graph:
    """A workflow under construction: nodes are stacked in columns, links numbered as made.
    `object_info` is what GET /object_info serves (see `live_object_info`)."""

    def __init__(self, name: str, title: str, description: str, object_info: dict[str, Any],
                 comfyui: str) -> None:
        self.name, self.title, self.description = name, title, description
        self.object_info, self.comfyui = object_info, comfyui
        self.nodes: list[Node] = []
        self.links: list[list[Any]] = []
        self.groups: list[tuple[str, list[Node], str]] = []
        self.illustration: Optional[tuple[str, int, int, int]] = None  # noun, target, token grid h, w

    def definition(self, node_type: str) -> Definition:
        if node_type in UI_ONLY:
            return UI_ONLY[node_type]
        if node_type not in self.object_info:
            raise KeyError(f"{node_type} is not registered in this ComfyUI")
        return Definition.from_info(self.object_info[node_type])

    def add(self, node_type: str, column: int, *, title: Optional[str] = None,
            color: Optional[tuple[str, str]] = None, box_height: Optional[float] = None, **values: Any) -> Node:
        definition = self.definition(node_type)
        node_id = len(self.nodes) + 1
        links_in: dict[str, Optional[int]] = {}
        for slot, socket in enumerate(definition.sockets):
            source = values.pop(socket.name, None)
            if source is None:
                if not socket.optional:
                    raise ValueError(f"{node_type}: required input {socket.name!r} is not connected")
                links_in[socket.name] = None
                continue
            if not isinstance(source, Output):
                raise TypeError(f"{node_type}.{socket.name}: connect an output, got {source!r}")
            if not socket.takes(source.type):
                raise TypeError(f"{node_type}.{socket.name} takes {socket.type}, got {source.type}")
            link_id = len(self.links) + 1
            self.links.append([link_id, source.node_id, source.slot, node_id, slot, source.type])
            self.nodes[source.node_id - 1].links_out.setdefault(source.slot, []).append(link_id)
            links_in[socket.name] = link_id
        widgets = widget_values(node_type, definition, values)
        if values:
            raise ValueError(f"{node_type}: unknown inputs {sorted(values)}")
        models = [_model_entry(v) for v in widgets if isinstance(v, str) and v in MODEL_URLS]
        node = Node(node_id, node_type, definition, column, title, color, links_in, widgets, models,
                    (_width(node_type), box_height or _height(definition, widgets)))
        self.nodes.append(node)
        return node

    def group(self, title: str, members: list[Node], color: str = "#3f789e") -> None:
        self.groups.append((title, members, color))

    # ------------------------------------------------------------------ UI format
    def to_ui(self) -> dict[str, Any]:
        self._place()
        order = _topological_order(self.nodes, self.links)
        nodes_json = []
        for node in self.nodes:
            definition = node.definition
            entry: dict[str, Any] = {
                "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size),
                "flags": {}, "order": order[node.id], "mode": 0,
                "inputs": [dict({"name": s.name, "type": s.type, "link": node.links_in[s.name]},
                                **({"shape": 7} if s.optional else {})) for s in definition.sockets],
                "outputs": [{"name": s.name, "type": s.type, "links": node.links_out.get(slot, []),
                             "slot_index": slot} for slot, s in enumerate(definition.outputs)],
                "properties": {} if node.type in UI_ONLY else {"Node name for S&R": node.type},
                "widgets_values": node.widgets_values,
            }
            if node.models:
                entry["properties"]["models"] = node.models
            if node.title:
                entry["title"] = node.title
            if node.color:
                entry["color"], entry["bgcolor"] = node.color
            nodes_json.append(entry)
        groups_json = []
        for index, (title, members, color) in enumerate(self.groups, start=1):
            left = min(n.pos[0] for n in members) - 15
            top = min(n.pos[1] for n in members) - 70
            right = max(n.pos[0] + n.size[0] for n in members) + 15
            bottom = max(n.pos[1] + n.size[1] for n in members) + 15
            groups_json.append({"id": index, "title": title, "bounding": [left, top, right - left, bottom - top],
                                "color": color, "font_size": 24, "flags": {}})
        return {
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes_json,
            "links": self.links,
            "groups": groups_json,
            "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [40, 120]},
                      "numina": {"title": self.title, "description": self.description,
                                 "generated_by": "scripts/make_workflows.py", "comfyui": self.comfyui}},
            "version": 0.4,
        }

    def _place(self) -> None:
        columns = sorted({n.column for n in self.nodes})
        x = 0.0
        for column in columns:
            members = [n for n in self.nodes if n.column == column]
            y = 0.0
            for node in members:
                node.pos = (x, y)
                y += node.size[1] + 90  # room for the title bar and a group header
            x += max(n.size[0] for n in members) + 70


def _model_entry(filename: str) -> dict[str, str]:
    base, directory = MODEL_URLS[filename]
    return {"name": filename, "url": MODEL_DOWNLOADS.get(filename, f"{base}/{directory}/{filename}"),
            "directory": directory}


def _width(node_type: str) -> float:
    return {"CLIPTextEncode": 420.0, "Note": 420.0, "NuminaAttentionCapture": 380.0, "CLIPLoader": 350.0,
            "UNETLoader": 350.0, "VAELoader": 350.0, "NuminaLayoutInfer": 360.0, "NuminaLayoutRefine": 360.0,
            "NuminaSampler": 360.0, "NuminaCheckedSampler": 420.0, "NuminaCountCheck": 380.0}.get(node_type, 320.0)


def _height(definition: Definition, widgets_values: list[Any]) -> float:
    """Room for the sockets and widgets, and for what the node shows on itself: a picture (save /
    preview nodes, the layout nodes' animated preview) or a report's text."""
    if definition.output_node and definition.sockets and definition.sockets[0].type == "IMAGE":
        return 280.0  # a save / preview node: room for the picture
    sockets = max(len(definition.sockets), len(definition.outputs))
    multiline = sum(1 for w in definition.widgets if len(w.spec) > 1 and w.spec[1].get("multiline"))
    height = 10 + 22 * sockets + 26 * len(widgets_values) + 90 * multiline
    if definition.output_node and any(s.name == "tries" for s in definition.outputs):
        height += 620   # the checked sampler: the kept video's check preview and every try's line
    elif definition.output_node and any(s.name == "all_right" for s in definition.outputs):
        height += 440   # the count check: the video's check preview and its counts
    elif definition.output_node and any(s.type == "IMAGE" for s in definition.outputs):
        height += 300   # the layout preview and the counts, on the node
    elif any(s.name == "report" for s in definition.outputs):
        height += 120   # the report's text, on the node
    return float(height)


def _topological_order(nodes: list[Node], links: list[list[Any]]) -> dict[int, int]:
    """LiteGraph's `order`: a node after everything it reads (ties by id)."""
    waiting = {n.id: 0 for n in nodes}
    for link in links:
        waiting[link[3]] += 1
    order: dict[int, int] = {}
    ready = sorted(i for i, k in waiting.items() if k == 0)
    while ready:
        node_id = ready.pop(0)
        order[node_id] = len(order)
        for link in links:
            if link[1] == node_id:
                waiting[link[3]] -= 1
                if waiting[link[3]] == 0:
                    ready.append(link[3])
                    ready.sort()
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    return order


# ----------------------------------------------------------------------------- workflows
HOW_IT_WORKS_NOTE = (
    "NUMINA fixes object counts.\n"
    "1. NUMINA Attention Capture: the run's settings are entered HERE, once (seed, steps, cfg, sampler, "
    "scheduler; prompt text = the positive prompt). It runs a short reference pass and reads where each "
    "counted noun is. Counts come from the prompt ('three red apples' -> apples: 3); count_override wins.\n"
    "2. Layout Infer and Layout Refine show the layout (animated over the latent frames) and the counts on "
    "the node: inspect them before the final run.\n"
    "3. NUMINA Sampler takes every setting from the capture. Counts already right: it finishes the "
    "capture's reference pass (no second pass). A count to fix: the guided pass from the same noise.\n"
    "Capture, sampler and layout nodes show their reports on the node.")


@dataclass(frozen=True)
class Sampling:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str

    def as_widgets(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": self.steps, "cfg": self.cfg, "sampler_name": self.sampler_name,
                "scheduler": self.scheduler}


@dataclass(frozen=True)
class Numina:
    """A workflow's NUMINA settings: the nodes' own defaults unless said otherwise."""
    reference_step: int = -1
    block: int = -1
    cross_attention_blocks: str = "all"
    approach_steps: int = 2
    mode: str = "auto"
    bias: str = "calibrated"
    bias_form: str = "auto"
    added_boost: float = 0.0
    bias_modifiers: bool = True


# The published behaviour, as a preset: the published step and block, cross-attention of that block
# only, the published readout (its reproduction) and the published fixed-offset bias in its dense form.
PUBLISHED = Numina(cross_attention_blocks="capture block", mode="faithful", bias="published", bias_form="dense",
                   bias_modifiers=False, approach_steps=0)


def _prompts(g: Graph, clip: Output, positive: str, negative: str) -> tuple[Node, Node]:
    pos = g.add("CLIPTextEncode", 1, title="CLIP Text Encode (Positive Prompt)", color=POSITIVE_COLOR,
                clip=clip, text=positive)
    neg = g.add("CLIPTextEncode", 1, title="CLIP Text Encode (Negative Prompt)", color=NEGATIVE_COLOR,
                clip=clip, text=negative)
    return pos, neg


def _capture(g: Graph, model: Output, clip: Output, pos: Node, neg: Node, latent: Output, sampling: Sampling,
             prompt: str, numina: Numina) -> Node:
    """The capture node, where a workflow's run settings are entered once."""
    return g.add("NuminaAttentionCapture", 2, color=NUMINA_COLOR, model=model, clip=clip,
                 positive=pos["CONDITIONING"], negative=neg["CONDITIONING"], latent=latent,
                 **sampling.as_widgets(), prompt=prompt, count_override="", reference_step=numina.reference_step,
                 block=numina.block, cross_attention_blocks=numina.cross_attention_blocks, memory_budget_mb=256,
                 approach_steps=numina.approach_steps)


def _numina_run(g: Graph, model: Output, clip: Output, pos: Node, neg: Node, latent: Output,
                sampling: Sampling, prompt: str, numina: Numina = Numina(),
                low_noise_model: Optional[Output] = None, switch_step: int = -1) -> tuple[Node, Node, Node, Node]:
    """capture -> infer -> refine -> NuminaSampler: the settings on the capture, nothing on the sampler."""
    capture = _capture(g, model, clip, pos, neg, latent, sampling, prompt, numina)
    infer = g.add("NuminaLayoutInfer", 3, color=NUMINA_COLOR, capture=capture["capture"], mode=numina.mode)
    refine = g.add("NuminaLayoutRefine", 3, color=NUMINA_COLOR, layout=infer["layout"])
    sampler = g.add("NuminaSampler", 4, color=NUMINA_COLOR, model=model, capture=capture["capture"],
                    layout=refine["layout"], bias_form=numina.bias_form, bias=numina.bias, added_boost=numina.added_boost,
                    bias_modifiers=numina.bias_modifiers, low_noise_model=low_noise_model, switch_step=switch_step)
    return capture, infer, refine, sampler


def _video_out(g: Graph, samples: Output, vae: Output, fps: float, prefix: str, column: int = 5) -> None:
    decode = g.add("VAEDecode", column, samples=samples, vae=vae)
    video = g.add("CreateVideo", column, images=decode["IMAGE"], fps=fps)
    # format auto, codec left to its default (auto): written the same on 0.3.75 and on 0.33, whose
    # format is a DynamicCombo holding the codec
    g.add("SaveVideo", column, box_height=300.0, video=video["VIDEO"], filename_prefix=prefix, format="auto")


def _illustrate(g: Graph, prompt: str, size: tuple[int, int, int], stride: int) -> None:
    """The thumbnail's layout illustration: the prompt's first counted noun on this model's token grid."""
    first = parse_targets(prompt).items[0]
    width, height, _ = size
    g.illustration = (first.noun, first.count, height // stride, width // stride)


def _wan_loaders(g: Graph, unet: str, vae_name: str) -> tuple[Node, Node, Node]:
    """A real-Wan workflow's model, umT5 text encoder and VAE loaders."""
    loader = g.add("UNETLoader", 0, unet_name=unet, weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = g.add("VAELoader", 0, vae_name=vae_name)
    return loader, clip, vae


def _wan_inputs(g: Graph, loader: Node, clip: Node, vae: Node, shift: float, prompt: str,
                size: tuple[int, int, int], wan22_latent: bool = False) -> tuple[Node, Node, Node, Node]:
    """The shifted model, both prompts and the empty video latent of a real-Wan workflow."""
    model = g.add("ModelSamplingSD3", 1, model=loader["MODEL"], shift=shift)
    pos, neg = _prompts(g, clip["CLIP"], prompt, WAN_NEGATIVE)
    width, height, length = size
    if wan22_latent:
        latent = g.add("Wan22ImageToVideoLatent", 1, vae=vae["VAE"], width=width, height=height, length=length,
                       batch_size=1)
    else:
        latent = g.add("EmptyHunyuanLatentVideo", 1, width=width, height=height, length=length, batch_size=1)
    return model, pos, neg, latent


def _checked_sampler(g: Graph, column: int, model: Output, capture: Node, vae: Output, counter: Output,
                     numina: Numina = Numina(), tries: int = 3) -> Node:
    """NuminaCheckedSampler with a workflow's NUMINA settings (the nodes' defaults) and one model."""
    return g.add("NuminaCheckedSampler", column, color=NUMINA_COLOR, model=model, capture=capture["capture"],
                 vae=vae, counter=counter, tries=tries, mode=numina.mode, bias_form=numina.bias_form,
                 bias=numina.bias, added_boost=numina.added_boost, bias_modifiers=numina.bias_modifiers,
                 low_noise_model=None, switch_step=-1)


def wan_t2v(object_info: dict[str, Any], comfyui: str, name: str, title: str, unet: str, vae_name: str,
            size: tuple[int, int, int], sampling: Sampling, shift: float, fps: float, prompt: str,
            wan22_latent: bool = False, numina: Numina = Numina(), lora: str = "",
            note: tuple[str, str] = ("NUMINA: how this works", HOW_IT_WORKS_NOTE)) -> Graph:
    """A one-model NUMINA workflow; with `lora`, a step-distillation LoRA through LoraLoaderModelOnly
    between the model loader and ModelSamplingSD3, as users load lightx2v's."""
    g = Graph(name, title, f"{title}: NUMINA count-corrected text-to-video.", object_info, comfyui)
    g.add("Note", 0, title=note[0], box_height=330.0 if lora else 300.0, color=NOTE_COLOR, text=note[1])
    loader, clip, vae = _wan_loaders(g, unet, vae_name)
    models = [loader]
    if lora:
        models.append(g.add("LoraLoaderModelOnly", 0, model=loader["MODEL"], lora_name=lora, strength_model=1.0))
    model, pos, neg, latent = _wan_inputs(g, models[-1], clip, vae, shift, prompt, size, wan22_latent)
    capture, infer, refine, sampler = _numina_run(g, model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"],
                                                  sampling, prompt, numina)
    _video_out(g, sampler["latent"], vae["VAE"], fps, f"video/{name}")
    g.group("Load models" + (" and the step-distillation LoRA" if lora else ""), [*models, clip, vae])
    g.group("NUMINA: reference pass and layout", [capture, infer, refine], color="#a1309b")
    g.group("NUMINA sampling", [sampler], color="#88A")
    _illustrate(g, prompt, size, 32 if wan22_latent else 16)
    return g


CHECKED_NOTE = (
    "A run that checks itself.\n"
    "NUMINA Checked Sampler samples with NUMINA, decodes the video and counts every counted noun in every "
    "frame with the paper's judge (GroundingDINO). If a count is wrong it runs the whole NUMINA cycle again on "
    "the next seed (seed + 1, ...), up to 'tries', stops at the first video with every count right and keeps the "
    "best-scoring one. Its report lists every try (seed, counts, score, model evaluations); its preview shows "
    "the kept video with every detection boxed and each frame's count / target.\n\n"
    "The judge: put the Hugging Face folder IDEA-Research/grounding-dino-tiny in "
    "ComfyUI/models/grounding-dino/grounding-dino-tiny/ (huggingface-cli download "
    "IDEA-Research/grounding-dino-tiny --local-dir ComfyUI/models/grounding-dino/grounding-dino-tiny). "
    "It cannot see occluded or merged objects, or nouns it does not know: its count is a check, not the truth.")


def wan_t2v_checked(object_info: dict[str, Any], comfyui: str) -> Graph:
    name = "numina_wan21_t2v_1.3B_checked"
    title = "NUMINA Wan 2.1 T2V 1.3B, checked and retried"
    sampling = Sampling(REAL_SEED, 30, 6.0, "uni_pc", "simple")
    prompt = "Three red apples rolling slowly across a wooden kitchen table, soft morning light."
    size = (832, 480, 81)
    g = Graph(name, title, f"{title}: NUMINA, counted by GroundingDINO, retried on the next seed until right.",
              object_info, comfyui)
    g.add("Note", 0, title="NUMINA: check and retry", box_height=330.0, color=NOTE_COLOR, text=CHECKED_NOTE)
    loader, clip, vae = _wan_loaders(g, "wan2.1_t2v_1.3B_fp16.safetensors", "wan_2.1_vae.safetensors")
    counter = g.add("NuminaCounterLoader", 0, color=NUMINA_COLOR, model_name="grounding-dino-tiny",
                    box_threshold=0.32, text_threshold=0.25, frames_per_batch=4)
    model, pos, neg, latent = _wan_inputs(g, loader, clip, vae, 8.0, prompt, size)
    capture = _capture(g, model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"], sampling, prompt, Numina())
    checked = _checked_sampler(g, 3, model["MODEL"], capture, vae["VAE"], counter["counter"])
    video = g.add("CreateVideo", 4, images=checked["images"], fps=16.0)
    g.add("SaveVideo", 4, box_height=300.0, video=video["VIDEO"], filename_prefix=f"video/{name}", format="auto")
    g.group("Load models and the judge", [loader, clip, vae, counter])
    g.group("NUMINA: reference pass of the first try", [capture], color="#a1309b")
    g.group("NUMINA: sample, count, retry", [checked], color="#88A")
    return g


FOUR_STEP_NOTE = (
    "Fast sampling: a step-distillation LoRA, 4 steps, CFG 1.\n\n"
    "Put the LoRA in ComfyUI/models/loras/ (Wan 2.1 1.3B: " + FOUR_STEP_LORA + "; on the 14B "
    "workflows lightx2v's Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors goes in the same "
    "place). LoraLoaderModelOnly sits between the model loader and ModelSamplingSD3, whose shift 5 with 4 "
    "steps of euler / simple gives the schedule such LoRAs are trained on (timesteps 1000, 937.5, 833, 625).\n\n"
    "NUMINA needs nothing else: the capture takes the 4 steps and CFG 1 from this graph, reads the layout at "
    "its default reference step (step 2 of 4) and, when a count is wrong, guides a second 4-step pass: 3 + 4 = 7 "
    "model evaluations instead of 4. See the README's 'Fast sampling (4-8 steps)'.")


A14B_SWITCH_STEP = 10   # of 20: Comfy-Org's Wan2.2 A14B template hands over to the low-noise expert here
A14B_NOTE = (
    "Wan 2.2 A14B has two experts: high-noise for steps 0..9, low-noise for steps 10..19 of 20.\n\n"
    "The capture runs on the HIGH-noise expert: the published reference step (40% of the schedule, "
    "step 20 of 50) is step 8 of 20 here, inside the high-noise expert's range, and that is where the "
    "layout of the objects is decided.\n\n"
    "NUMINA Sampler samples with the high-noise expert (model) up to switch_step 10, then with the "
    "low-noise expert (low_noise_model); the SAME refined layout guides both. Every other setting comes "
    "from the capture.")


def wan22_a14b(object_info: dict[str, Any], comfyui: str) -> Graph:
    name = "numina_wan22_t2v_A14B"
    title = "NUMINA Wan 2.2 T2V A14B"
    sampling = Sampling(REAL_SEED, 20, 3.5, "euler", "simple")
    prompt = "Two golden retrievers and four yellow ducks playing on a green lawn beside a pond, sunny afternoon."
    g = Graph(name, title, f"{title}: NUMINA count-corrected text-to-video with the two-expert model.",
              object_info, comfyui)
    g.add("Note", 0, title="NUMINA on two experts", box_height=330.0, color=NOTE_COLOR, text=A14B_NOTE)
    high = g.add("UNETLoader", 0, title="Load Diffusion Model (high noise)",
                 unet_name="wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", weight_dtype="default")
    low = g.add("UNETLoader", 0, title="Load Diffusion Model (low noise)",
                unet_name="wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = g.add("VAELoader", 0, vae_name="wan_2.1_vae.safetensors")
    high_model = g.add("ModelSamplingSD3", 1, title="ModelSamplingSD3 (high noise)", model=high["MODEL"], shift=8.0)
    low_model = g.add("ModelSamplingSD3", 1, title="ModelSamplingSD3 (low noise)", model=low["MODEL"], shift=8.0)
    pos, neg = _prompts(g, clip["CLIP"], prompt, WAN_NEGATIVE)
    size = (1280, 720, 81)
    latent = g.add("EmptyHunyuanLatentVideo", 1, width=size[0], height=size[1], length=size[2], batch_size=1)
    capture, infer, refine, sampler = _numina_run(g, high_model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"],
                                                  sampling, prompt, low_noise_model=low_model["MODEL"],
                                                  switch_step=A14B_SWITCH_STEP)
    _video_out(g, sampler["latent"], vae["VAE"], 16.0, f"video/{name}")
    g.group("Load models", [high, low, clip, vae])
    g.group("NUMINA: reference pass on the high-noise expert", [capture, infer, refine], color="#a1309b")
    g.group("NUMINA sampling: both experts, one layout", [sampler], color="#88A")
    _illustrate(g, prompt, size, 16)
    return g


DEMO_NOTE = (
    "Tiny models built by scripts/make_fixtures.py (no download). The NUMINA frames are saved as "
    f"{DEMO_PREFIX}/frame, both layouts as {DEMO_PREFIX}/layout_inferred / layout_refined, and, for "
    f"comparison, a plain KSampler run with the same settings as {DEMO_PREFIX}/plain_frame (its seed, "
    "steps, cfg, sampler and scheduler must match the capture's: change both together). NUMINA Count Check "
    f"counts both videos ({DEMO_PREFIX}/check, plain_check) with the CountWorld judge, as GroundingDINO "
    "counts real videos.\n\n"
    + HOW_IT_WORKS_NOTE)


def cpu_demo(object_info: dict[str, Any], comfyui: str, unet: str, vae_name: str = TINY_VAE) -> Graph:
    title = "NUMINA CPU demo (tiny Wan 2.1)"
    sampling = Sampling(DEMO_SEED, 25, 1.0, "euler", "simple")   # CountWorld: CFG 1 chosen on its tuning prompts
    g = Graph(DEMO_NAME, title, "Runs on a CPU in seconds with the tiny models scripts/make_fixtures.py builds: "
                                "the NUMINA result beside the plain one.", object_info, comfyui)
    g.add("Note", 0, title="NUMINA CPU demo", box_height=380.0, color=NOTE_COLOR, text=DEMO_NOTE)
    loader = g.add("UNETLoader", 0, unet_name=unet, weight_dtype="default")
    clip = g.add("NuminaTinyTextEncoderLoader", 0, text_encoder=TINY_TEXT_ENCODER)
    # CountWorld is a latent-space world: its "VAE" paints each latent pixel in its world code's colour
    latent_world = unet == COUNTWORLD_MODEL
    vae = (g.add("NuminaCountWorldVAE", 0, title="CountWorld VAE (testing)", upscale=8) if latent_world
           else g.add("VAELoader", 0, vae_name=vae_name))
    model = g.add("ModelSamplingSD3", 1, model=loader["MODEL"], shift=3.0)
    pos, neg = _prompts(g, clip["CLIP"], DEMO_PROMPT, "")
    latent = g.add("EmptyHunyuanLatentVideo", 1, width=DEMO_WIDTH, height=DEMO_HEIGHT, length=DEMO_LENGTH,
                   batch_size=1)
    # the nodes' defaults, as on the real-model workflows: nothing chosen for this model
    capture, infer, refine, sampler = _numina_run(g, model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"],
                                                  sampling, DEMO_PROMPT)
    plain = g.add("KSampler", 4, title="KSampler (plain, to compare)",
                  model=model["MODEL"], **sampling.as_widgets(), positive=pos["CONDITIONING"],
                  negative=neg["CONDITIONING"], latent_image=latent["LATENT"], denoise=1.0)
    saved_layouts = [g.add("SaveImage", 4, title=f"Save layout ({name})", images=node["preview"],
                           filename_prefix=f"{DEMO_PREFIX}/layout_{name}")
                     for node, name in ((infer, "inferred"), (refine, "refined"))]
    decode = g.add("VAEDecode", 5, samples=sampler["latent"], vae=vae["VAE"])
    plain_decode = g.add("VAEDecode", 6, samples=plain["LATENT"], vae=vae["VAE"])
    g.add("SaveImage", 5, title="NUMINA frames", images=decode["IMAGE"], filename_prefix=f"{DEMO_PREFIX}/frame")
    g.add("SaveAnimatedWEBP", 5, title="NUMINA video", images=decode["IMAGE"], filename_prefix=f"{DEMO_PREFIX}/video",
          fps=8.0, lossless=False, quality=90, method="default")
    g.add("SaveImage", 6, title="Plain frames", images=plain_decode["IMAGE"],
          filename_prefix=f"{DEMO_PREFIX}/plain_frame")
    checks = []
    if latent_world:     # the CountWorld judge counts the world's pictures; the random tiny Wan draws none
        judge = g.add("NuminaCountWorldCounterLoader", 5, title="CountWorld judge (testing)", error_rate=0.0,
                      error_seed=0)
        for images, name, column in ((decode, "", 7), (plain_decode, "plain_", 8)):
            check = g.add("NuminaCountCheck", column, color=NUMINA_COLOR,
                          title=f"NUMINA Count Check ({'NUMINA' if not name else 'plain'} run)",
                          images=images["IMAGE"], capture=capture["capture"], counter=judge["counter"])
            checks.append(check)
            checks.append(g.add("SaveImage", column, title=f"Save count check ({name or 'numina_'}run)",
                                images=check["preview"], filename_prefix=f"{DEMO_PREFIX}/{name}check"))
        # the run that checks itself: NUMINA, counted, retried on the next seed until right (3 tries)
        checked = _checked_sampler(g, 7, model["MODEL"], capture, vae["VAE"], judge["counter"])
        recheck = g.add("NuminaCountCheck", 8, color=NUMINA_COLOR, title="NUMINA Count Check (checked run)",
                        images=checked["images"], capture=capture["capture"], counter=judge["counter"])
        checks += [checked, recheck, g.add("SaveImage", 8, title="Save count check (checked run)",
                                           images=recheck["preview"], filename_prefix=f"{DEMO_PREFIX}/checked_check")]
    g.group("Tiny models", [loader, clip, vae])
    g.group("NUMINA: reference pass and layout", [capture, infer, refine], color="#a1309b")
    g.group("NUMINA sampling, and the plain run to compare", [sampler, plain], color="#88A")
    g.group("Saved layouts", saved_layouts, color="#444")
    if checks:
        g.group("The count check: what each video shows", checks, color="#3f789e")
    return g


def all_workflows(object_info: dict[str, Any], comfyui: str, demo_unet: str, demo_vae: str = TINY_VAE) -> list[Graph]:
    info = (object_info, comfyui)
    return [
        wan_t2v(*info, "numina_wan21_t2v_1.3B", "NUMINA Wan 2.1 T2V 1.3B", "wan2.1_t2v_1.3B_fp16.safetensors",
                "wan_2.1_vae.safetensors", (832, 480, 81), Sampling(REAL_SEED, 30, 6.0, "uni_pc", "simple"),
                8.0, 16.0, "Three red apples rolling slowly across a wooden kitchen table, soft morning light."),
        wan_t2v(*info, "numina_wan21_t2v_1.3B_published", "NUMINA Wan 2.1 T2V 1.3B, published settings",
                "wan2.1_t2v_1.3B_fp16.safetensors", "wan_2.1_vae.safetensors", (832, 480, 81),
                Sampling(REAL_SEED, 30, 6.0, "uni_pc", "simple"), 8.0, 16.0,
                "Three red apples rolling slowly across a wooden kitchen table, soft morning light.", numina=PUBLISHED),
        wan_t2v(*info, "numina_wan21_t2v_14B", "NUMINA Wan 2.1 T2V 14B", "wan2.1_t2v_14B_fp16.safetensors",
                "wan_2.1_vae.safetensors", (1280, 720, 81), Sampling(REAL_SEED, 30, 6.0, "uni_pc", "simple"),
                8.0, 16.0, "Five hot air balloons drifting over a mountain valley at sunrise, aerial shot."),
        wan_t2v(*info, "numina_wan22_ti2v_5B", "NUMINA Wan 2.2 TI2V 5B (text to video)",
                "wan2.2_ti2v_5B_fp16.safetensors", "wan2.2_vae.safetensors", (1280, 704, 121),
                Sampling(REAL_SEED, 20, 5.0, "uni_pc", "simple"), 8.0, 24.0,
                "Three white sheep grazing in a green meadow, gentle wind in the grass, cinematic.", wan22_latent=True),
        wan22_a14b(*info),
        wan_t2v_checked(*info),
        wan_t2v(*info, "numina_wan21_t2v_1.3B_4step", "NUMINA Wan 2.1 T2V 1.3B, 4 steps (distillation LoRA)",
                "wan2.1_t2v_1.3B_fp16.safetensors", "wan_2.1_vae.safetensors", (832, 480, 81),
                Sampling(REAL_SEED, 4, 1.0, "euler", "simple"), 5.0, 16.0,
                "Three red apples rolling slowly across a wooden kitchen table, soft morning light.",
                lora=FOUR_STEP_LORA, note=("NUMINA at 4 steps", FOUR_STEP_NOTE)),
        cpu_demo(*info, demo_unet, demo_vae),
    ]


# ----------------------------------------------------------------------------- thumbnails
THUMBNAIL_SIZE = (640, 400)
_BACKGROUND = (32, 33, 38)
_ACCENT = (230, 140, 50)
_KIND_COLORS = {"loader": (62, 104, 150), "numina": (176, 112, 48), "sampler": (110, 84, 160),
                "output": (64, 130, 84), "note": (150, 130, 60), "other": (90, 90, 96)}
_LINK_COLORS = {"MODEL": (180, 160, 255), "CLIP": (255, 210, 60), "VAE": (255, 110, 110),
                "CONDITIONING": (255, 170, 80), "LATENT": (255, 140, 200), "IMAGE": (100, 180, 255),
                "VIDEO": (120, 220, 160), "NUMINA_CAPTURE": (255, 150, 60), "NUMINA_LAYOUT": (255, 150, 60),
                "STRING": (170, 220, 120)}


def _kind(node_type: str) -> str:
    if node_type.startswith("Numina") and not node_type.endswith(("Loader", "RGBDecode")):
        return "numina"
    if node_type.endswith("Loader"):
        return "loader"
    if node_type.startswith("KSampler"):
        return "sampler"
    if node_type.startswith(("Save", "Preview", "CreateVideo", "VAEDecode", "NuminaLatentRGBDecode")):
        return "output"
    return "note" if node_type == "Note" else "other"


def _label(node: dict[str, Any]) -> str:
    label = node.get("title") or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", node["type"])
    if node["type"].startswith("Numina"):
        label = label.replace("NUMINA ", "").replace("Numina ", "")
    return label.replace("CLIP Text Encode", "Text").replace("Load Diffusion Model", "UNETLoader")


def _wrap(draw: Any, text: str, font: Any, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.replace("(", " (").split():
        if lines and draw.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
            continue
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def _canvas(title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", THUMBNAIL_SIZE, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((18, 12), title, fill=(240, 240, 240), font=ImageFont.load_default(size=24))
    draw.line([(18, 46), (THUMBNAIL_SIZE[0] - 18, 46)], fill=_ACCENT, width=2)
    return image, draw


def _draw_graph(draw: Any, workflow: dict[str, Any], box: tuple[float, float, float, float]) -> None:
    """One box per node, one line per link, scaled into `box`."""
    label_font = ImageFont.load_default(size=9)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    left = min(n["pos"][0] for n in nodes.values())
    top = min(n["pos"][1] for n in nodes.values())
    right = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    scale = min((box[2] - box[0]) / (right - left), (box[3] - box[1]) / (bottom - top))
    offset = (box[0] + (box[2] - box[0] - (right - left) * scale) / 2,
              box[1] + (box[3] - box[1] - (bottom - top) * scale) / 2)

    def rect(node: dict[str, Any]) -> tuple[float, float, float, float]:
        x0 = offset[0] + (node["pos"][0] - left) * scale
        y0 = offset[1] + (node["pos"][1] - top) * scale
        return x0, y0, x0 + node["size"][0] * scale, y0 + max(node["size"][1] * scale, 14)

    for link in workflow["links"]:
        a, b = rect(nodes[link[1]]), rect(nodes[link[3]])
        start = (a[2], a[1] + 6 + 4 * link[2])
        end = (b[0], b[1] + 6 + 4 * link[4])
        bend = max(12.0, (end[0] - start[0]) / 2)
        points = [start, (start[0] + bend, start[1]), (end[0] - bend, end[1]), end]
        draw.line(points, fill=_LINK_COLORS.get(link[5], (200, 200, 200)), width=2)
    for node in nodes.values():
        x0, y0, x1, y1 = rect(node)
        draw.rounded_rectangle((x0, y0, x1, y1), radius=4, fill=_KIND_COLORS[_kind(node["type"])],
                               outline=(220, 220, 220))
        y = y0 + 2
        for line in _wrap(draw, _label(node), label_font, x1 - x0 - 6):
            if y + 10 > y1:
                break
            draw.text((x0 + 3, y), line, fill=(255, 255, 255), font=label_font)
            y += 10


def layout_illustration(noun: str, target: int, height: int, width: int, seed: int = 3) -> Image.Image:
    """One frame of the layout preview the NUMINA layout nodes show, drawn by the pack's own
    renderer on a synthetic reading (numina_dev.synthetic) with one instance of `noun` missing:
    the refined layout shows the found instances in colour and the added one in green."""
    scene = make_scene(target - 1, height=height, width=width, frames=1, noise="clean", seed=seed)
    capture = scene_capture(scene, noun=noun, target=target)
    layout = refine_layout(infer_layout(capture))
    nodes_package = comfy_runtime.pack_module("NuminaLayoutInfer").__package__
    preview = importlib.import_module(nodes_package + ".preview")
    return preview.render_frames(layout, {noun: scene.cross})[0]


def graph_thumbnail(workflow: dict[str, Any], title: str, illustration: Optional[Image.Image] = None) -> Image.Image:
    """The graph, and under it (when given) a picture of what the layout nodes show."""
    image, draw = _canvas(title)
    width, height = THUMBNAIL_SIZE
    if illustration is None:
        _draw_graph(draw, workflow, (18, 62, width - 18, height - 14))
        return image
    _draw_graph(draw, workflow, (18, 58, width - 18, 226))
    picture = illustration.copy()
    picture.thumbnail((width - 250, height - 250))
    top = height - 12 - picture.height
    image.paste(picture, (width - 18 - picture.width, top))
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    y = top
    for line in _wrap(draw, "NUMINA Layout Refine shows the layout on the node, frame by frame:", font, 200):
        draw.text((18, y), line, fill=(240, 240, 240), font=font)
        y += 17
    y += 6
    for line in _wrap(draw, "instances found in colour, added ones green, removed ones red; the counts "
                            "against the target.", small, 200):
        draw.text((18, y), line, fill=(210, 210, 210), font=small)
        y += 14
    y += 6
    for line in _wrap(draw, "Illustration: synthetic attention maps on this model's token grid.", small, 200):
        draw.text((18, y), line, fill=(160, 160, 160), font=small)
        y += 14
    return image


def demo_thumbnail(panels: list[tuple[Image.Image, str]], title: str = "NUMINA CPU demo (tiny Wan 2.1)",
                   footer: str = "One frame of each run, from ./scripts/demo.sh on a CPU.") -> Image.Image:
    """The CPU demo's result, three pictures side by side with their captions (all from one run of
    the demo)."""
    image, draw = _canvas(title)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    panel, gap = 190, 17
    for index, (picture, caption) in enumerate(panels[:3]):
        x = 18 + index * (panel + gap)
        draw.text((x, 60), caption, fill=(240, 240, 240) if index == 0 else _ACCENT, font=font)
        shown = picture.convert("RGB").copy()
        shown.thumbnail((panel, panel + 60))
        image.paste(shown, (x, 82))
    draw.text((18, THUMBNAIL_SIZE[1] - 40), f'"{DEMO_PROMPT}", seed {DEMO_SEED}', fill=(210, 210, 210), font=small)
    draw.text((18, THUMBNAIL_SIZE[1] - 24), footer, fill=(160, 160, 160), font=small)
    return image


def demo_images(outputs: dict[str, Any], api: dict[str, Any],
                read: Callable[[dict[str, Any]], Image.Image]) -> dict[str, list[Image.Image]]:
    """{filename prefix: [PIL images]} of the demo's saved pictures; `read(item)` opens one
    history item ({"filename", "subfolder", "type"})."""
    found: dict[str, list[Image.Image]] = {}
    for node_id, node in api.items():
        prefix = node["inputs"].get("filename_prefix")
        if node["class_type"] == "SaveImage" and node_id in outputs:
            found[prefix] = [read(item) for item in outputs[node_id].get("images", [])]
    return found


def demo_thumbnail_from(images: dict[str, list[Image.Image]]) -> Image.Image:
    """The count checks' last frames (plain, NUMINA, the checked run) when the demo has them (the
    CountWorld demo), else a frame of the plain and of the NUMINA run and the refined layout."""
    if f"{DEMO_PREFIX}/checked_check" in images:
        return demo_thumbnail([(images[f"{DEMO_PREFIX}/plain_check"][-1], "plain run, counted"),
                               (images[f"{DEMO_PREFIX}/check"][-1], "NUMINA, counted"),
                               (images[f"{DEMO_PREFIX}/checked_check"][-1], "NUMINA, checked (3 tries)")],
                              footer="The last frame of each run, counted by NUMINA Count Check: ./scripts/demo.sh")
    return demo_thumbnail([(images[f"{DEMO_PREFIX}/plain_frame"][0], "plain run, same seed"),
                           (images[f"{DEMO_PREFIX}/frame"][0], "NUMINA"),
                           (images[f"{DEMO_PREFIX}/layout_refined"][0], "refined layout (on the node)")])


def run_demo(workflow: dict[str, Any], object_info: dict[str, Any]) -> Image.Image:
    """Run the demo in this process (one torch thread, outputs in a temporary folder) and return its thumbnail."""
    import folder_paths
    import torch

    api = workflow_api.ui_to_api(workflow, object_info)
    before_dir, before_threads = folder_paths.get_output_directory(), torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="numina_demo_thumbnail_") as out:
        folder_paths.set_output_directory(out)
        torch.set_num_threads(1)
        try:
            executor, server = comfy_runtime.execute_graph(api)
            if not executor.success:
                raise RuntimeError(f"the CPU demo failed: {comfy_runtime.execution_error(server)}")

            def read(item: dict[str, Any]) -> Image.Image:
                with Image.open(os.path.join(out, item.get("subfolder", ""), item["filename"])) as picture:
                    return picture.convert("RGB")
            return demo_thumbnail_from(demo_images(executor.history_result["outputs"], api, read))
        finally:
            folder_paths.set_output_directory(before_dir)
            torch.set_num_threads(before_threads)


# ----------------------------------------------------------------------------- main
def demo_unet_choice(choice: str) -> str:
    if choice == "countworld":
        return COUNTWORLD_MODEL
    if choice == "tiny":
        return TINY_MODEL
    return COUNTWORLD_MODEL if os.path.exists(COUNTWORLD_CHECKPOINT) else TINY_MODEL


def demo_vae_choice(choice: Optional[str]) -> str:
    """The VAE of the demo on the random tiny Wan (the CountWorld demo decodes with the testing
    pack's NuminaCountWorldVAE and loads no VAE file): a countworld/checkpoints/countworld*vae*.safetensors
    file when one is committed, else the random tiny VAE."""
    if choice:
        return choice
    found = sorted(glob.glob(os.path.join(ROOT, "countworld", "checkpoints", "countworld*vae*.safetensors")))
    return os.path.basename(found[0]) if found else TINY_VAE


def write_workflows(out_dir: str = OUT_DIR, demo_model: str = "auto", demo_vae: Optional[str] = None,
                    object_info: Optional[dict[str, Any]] = None, thumbnails: bool = True) -> list[str]:
    """Write every workflow (and, with `thumbnails`, its .jpg: this runs the CPU demo) into out_dir."""
    object_info = live_object_info() if object_info is None else object_info
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for graph in all_workflows(object_info, live_comfyui_version(), demo_unet_choice(demo_model),
                               demo_vae_choice(demo_vae)):
        workflow = graph.to_ui()
        path = os.path.join(out_dir, graph.name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(workflow, f, indent=2, ensure_ascii=False)
            f.write("\n")
        written.append(path)
        if not thumbnails:
            continue
        if graph.name == DEMO_NAME:
            thumbnail = run_demo(workflow, object_info)
        else:
            thumbnail = graph_thumbnail(workflow, graph.title,
                                        layout_illustration(*graph.illustration) if graph.illustration else None)
        thumbnail.save(os.path.join(out_dir, graph.name + ".jpg"), quality=88)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=OUT_DIR, help="output folder (default: the pack's example_workflows/)")
    parser.add_argument("--demo-model", choices=("auto", "countworld", "tiny"), default="auto",
                        help="diffusion model of the CPU demo: auto = the CountWorld checkpoint when "
                             f"{os.path.relpath(COUNTWORLD_CHECKPOINT, ROOT)} exists, else the random tiny Wan")
    parser.add_argument("--demo-vae", default=None,
                        help="VAE file of the CPU demo (default: a countworld/checkpoints/countworld*vae* file when "
                             f"one exists, else {TINY_VAE})")
    parser.add_argument("--no-thumbnails", action="store_true", help="write only the workflows (no demo run)")
    args = parser.parse_args()
    for path in write_workflows(args.out, args.demo_model, args.demo_vae, thumbnails=not args.no_thumbnails):
        print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
