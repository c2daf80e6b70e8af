"""Generate the pack's example workflows (ComfyUI UI format) and their thumbnails into workflows/.

    .numina_env/venv/bin/python scripts/make_workflows.py                 # all workflows
    .numina_env/venv/bin/python scripts/make_workflows.py --demo-model tiny

Each graph is written as a compact spec (node type, column, socket links, widget values by name);
the builder numbers nodes and links, so the `links` table and every node's `inputs` / `outputs`
always agree.  ComfyUI serves the folder as the pack's templates (GET /workflow_templates) and the
frontend's template browser shows the same-named .jpg beside each .json.

The node signatures below (sockets, widget order) are restated from the node definitions so that
this script runs without ComfyUI; tests/comfy/test_workflows.py checks them against the real
definitions and runs every graph through ComfyUI's own validation.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(ROOT, "workflows")

COUNTWORLD_MODEL = "countworld_wan21_t2v.safetensors"
COUNTWORLD_CHECKPOINT = os.path.join(ROOT, "countworld", "checkpoints", COUNTWORLD_MODEL)
TINY_MODEL = "numina_tiny_wan21_t2v.safetensors"
TINY_TEXT_ENCODER = "numina_tiny_umt5.safetensors"
TINY_VAE = "numina_tiny_wan21_vae.safetensors"

# CountWorld's geometry (countworld/world.py: 32 x 32 latent, 2 latent frames).
DEMO_WIDTH, DEMO_HEIGHT, DEMO_LENGTH = 256, 256, 5


def _countworld_settings() -> dict:
    from countworld.settings import NUMINA_SETTINGS

    return dict(NUMINA_SETTINGS)


# A CountWorld tuning prompt (not a held-out one) and a seed whose plain run shows two or three
# circles, not four: an illustration of a fix; the benchmark gives the averages.
DEMO_PROMPT = "four green circles moving on a plain grey background"
DEMO_SEED = 0
# This pack's NUMINA settings for the CountWorld model (chosen on its tuning prompts)
COUNTWORLD_SETTINGS = _countworld_settings()

REAL_SEED = 20260411
WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
                "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")

HF_WAN21 = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
HF_WAN22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
MODEL_URLS = {
    "wan2.1_t2v_1.3B_fp16.safetensors": (HF_WAN21, "diffusion_models"),
    "wan2.1_t2v_14B_fp16.safetensors": (HF_WAN21, "diffusion_models"),
    "wan2.2_ti2v_5B_fp16.safetensors": (HF_WAN22, "diffusion_models"),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": (HF_WAN22, "diffusion_models"),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": (HF_WAN22, "diffusion_models"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (HF_WAN21, "text_encoders"),
    "wan_2.1_vae.safetensors": (HF_WAN21, "vae"),
    "wan2.2_vae.safetensors": (HF_WAN22, "vae"),
}


# ----------------------------------------------------------------------------- node signatures
@dataclass(frozen=True)
class Socket:
    name: str
    type: str
    optional: bool = False


@dataclass(frozen=True)
class Signature:
    """What the UI format needs of a node definition: link sockets in definition order, widget
    names in definition order, outputs.  `seeded` widgets get the frontend's extra
    control_after_generate value stored right after them."""
    inputs: tuple[Socket, ...] = ()
    widgets: tuple[str, ...] = ()
    outputs: tuple[Socket, ...] = ()
    seeded: tuple[str, ...] = ()


def _s(*pairs: str, optional: Iterable[str] = ()) -> tuple[Socket, ...]:
    names = pairs[0::2]
    return tuple(Socket(n, t, n in optional) for n, t in zip(names, pairs[1::2]))


_SAMPLER_INPUTS = _s("model", "MODEL", "positive", "CONDITIONING", "negative", "CONDITIONING",
                     "latent_image", "LATENT")
SIGNATURES: dict[str, Signature] = {
    "UNETLoader": Signature((), ("unet_name", "weight_dtype"), _s("MODEL", "MODEL")),
    "CLIPLoader": Signature((), ("clip_name", "type", "device"), _s("CLIP", "CLIP")),
    "VAELoader": Signature((), ("vae_name",), _s("VAE", "VAE")),
    "NuminaTinyTextEncoderLoader": Signature((), ("text_encoder",), _s("CLIP", "CLIP")),
    "ModelSamplingSD3": Signature(_s("model", "MODEL"), ("shift",), _s("MODEL", "MODEL")),
    "CLIPTextEncode": Signature(_s("clip", "CLIP"), ("text",), _s("CONDITIONING", "CONDITIONING")),
    "EmptyHunyuanLatentVideo": Signature((), ("width", "height", "length", "batch_size"), _s("LATENT", "LATENT")),
    "Wan22ImageToVideoLatent": Signature(_s("vae", "VAE", "start_image", "IMAGE", optional=("start_image",)),
                                         ("width", "height", "length", "batch_size"), _s("LATENT", "LATENT")),
    "NuminaAttentionCapture": Signature(
        _s("model", "MODEL", "clip", "CLIP", "positive", "CONDITIONING", "negative", "CONDITIONING",
           "latent", "LATENT"),
        ("seed", "steps", "cfg", "sampler_name", "scheduler", "prompt", "count_override", "reference_step", "block",
         "memory_budget_mb"),
        _s("capture", "NUMINA_CAPTURE", "reference_latent", "LATENT", "report", "STRING"), seeded=("seed",)),
    "NuminaLayoutInfer": Signature(_s("capture", "NUMINA_CAPTURE"), ("mode",),
                                   _s("layout", "NUMINA_LAYOUT", "preview", "IMAGE", "counts", "STRING")),
    "NuminaLayoutRefine": Signature(_s("layout", "NUMINA_LAYOUT"), (),
                                    _s("layout", "NUMINA_LAYOUT", "preview", "IMAGE", "counts", "STRING")),
    "NuminaCrossAttnGuide": Signature(_s("model", "MODEL", "layout", "NUMINA_LAYOUT"),
                                      ("bias_form", "added_boost", "bias_modifiers"),
                                      _s("MODEL", "MODEL", "report", "STRING")),
    "KSampler": Signature(_SAMPLER_INPUTS, ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
                          _s("LATENT", "LATENT"), seeded=("seed",)),
    "KSamplerAdvanced": Signature(
        _SAMPLER_INPUTS,
        ("add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step", "end_at_step",
         "return_with_leftover_noise"),
        _s("LATENT", "LATENT"), seeded=("noise_seed",)),
    "VAEDecode": Signature(_s("samples", "LATENT", "vae", "VAE"), (), _s("IMAGE", "IMAGE")),
    "NuminaLatentRGBDecode": Signature(_s("model", "MODEL", "samples", "LATENT"), ("upscale",), _s("IMAGE", "IMAGE")),
    "CreateVideo": Signature(_s("images", "IMAGE", "audio", "AUDIO", optional=("audio",)), ("fps",),
                             _s("VIDEO", "VIDEO")),
    "SaveVideo": Signature(_s("video", "VIDEO"), ("filename_prefix", "format", "codec")),
    "SaveAnimatedWEBP": Signature(_s("images", "IMAGE"), ("filename_prefix", "fps", "lossless", "quality", "method")),
    "SaveImage": Signature(_s("images", "IMAGE"), ("filename_prefix",)),
    "PreviewImage": Signature(_s("images", "IMAGE")),
    "PreviewAny": Signature(_s("source", "*")),
    "Note": Signature((), ("text",)),
}
UI_ONLY_TYPES = frozenset({"Note"})


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
    column: int
    title: Optional[str]
    color: Optional[tuple[str, str]]
    links_in: dict[str, Optional[int]]
    widgets_values: list[Any]
    models: list[dict[str, str]]
    size: tuple[float, float]
    links_out: dict[int, list[int]] = field(default_factory=dict)
    pos: tuple[float, float] = (0.0, 0.0)

    @property
    def signature(self) -> Signature:
        return SIGNATURES[self.type]

    def __getitem__(self, name: str) -> Output:
        for slot, socket in enumerate(self.signature.outputs):
            if socket.name == name:
                return Output(self.id, slot, socket.type)
        raise KeyError(f"{self.type} has no output {name!r}")


POSITIVE_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")
NUMINA_COLOR = ("#432", "#653")
NOTE_COLOR = ("#432", "#653")


class Graph:
    """A workflow under construction: nodes are stacked in columns, links numbered as made."""

    def __init__(self, name: str, title: str, description: str) -> None:
        self.name, self.title, self.description = name, title, description
        self.nodes: list[Node] = []
        self.links: list[list[Any]] = []
        self.groups: list[tuple[str, list[Node], str]] = []

    def add(self, node_type: str, column: int, *, title: Optional[str] = None,
            color: Optional[tuple[str, str]] = None, box_height: Optional[float] = None, **values: Any) -> Node:
        signature = SIGNATURES[node_type]
        node_id = len(self.nodes) + 1
        links_in: dict[str, Optional[int]] = {}
        for slot, socket in enumerate(signature.inputs):
            source = values.pop(socket.name, None)
            if source is None:
                if not socket.optional:
                    raise ValueError(f"{node_type}: required input {socket.name!r} is not connected")
                links_in[socket.name] = None
                continue
            if not isinstance(source, Output):
                raise TypeError(f"{node_type}.{socket.name}: connect an output, got {source!r}")
            if socket.type != "*" and source.type != socket.type:
                raise TypeError(f"{node_type}.{socket.name} takes {socket.type}, got {source.type}")
            link_id = len(self.links) + 1
            self.links.append([link_id, source.node_id, source.slot, node_id, slot, source.type])
            self.nodes[source.node_id - 1].links_out.setdefault(source.slot, []).append(link_id)
            links_in[socket.name] = link_id
        widgets_values: list[Any] = []
        for name in signature.widgets:
            if name not in values:
                raise ValueError(f"{node_type}: widget {name!r} needs a value")
            widgets_values.append(values.pop(name))
            if name in signature.seeded:
                widgets_values.append("fixed")  # the capture and the sampler must keep one seed
        if values:
            raise ValueError(f"{node_type}: unknown inputs {sorted(values)}")
        models = [_model_entry(v) for v in widgets_values if isinstance(v, str) and v in MODEL_URLS]
        node = Node(node_id, node_type, column, title, color, links_in, widgets_values, models,
                    (_width(node_type), box_height or _height(signature, widgets_values)))
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
            signature = node.signature
            entry: dict[str, Any] = {
                "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size),
                "flags": {}, "order": order[node.id], "mode": 0,
                "inputs": [dict({"name": s.name, "type": s.type, "link": node.links_in[s.name]},
                                **({"shape": 7} if s.optional else {})) for s in signature.inputs],
                "outputs": [{"name": s.name, "type": s.type, "links": node.links_out.get(slot, []),
                             "slot_index": slot} for slot, s in enumerate(signature.outputs)],
                "properties": {} if node.type in UI_ONLY_TYPES else {"Node name for S&R": node.type},
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
                                 "generated_by": "scripts/make_workflows.py"}},
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
    return {"name": filename, "url": f"{base}/{directory}/{filename}", "directory": directory}


def _width(node_type: str) -> float:
    return {"CLIPTextEncode": 420.0, "Note": 420.0, "NuminaAttentionCapture": 380.0, "CLIPLoader": 350.0,
            "UNETLoader": 350.0, "VAELoader": 350.0, "PreviewImage": 320.0, "SaveImage": 320.0}.get(node_type, 320.0)


def _height(signature: Signature, widgets_values: list[Any]) -> float:
    sockets = max(len(signature.inputs), len(signature.outputs))
    multiline = {"text", "prompt"} & set(signature.widgets)
    if signature.inputs and signature.inputs[0].type == "IMAGE" and not signature.outputs:
        return 280.0  # room for the picture
    return float(10 + 22 * sockets + 26 * len(widgets_values) + 90 * len(multiline))


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
SAME_SETTINGS_NOTE = (
    "NUMINA fixes object counts in two passes.\n"
    "1. NUMINA Attention Capture runs a short reference pass and reads where each counted noun is.\n"
    "2. Layout Infer counts the instances per latent frame; Layout Refine removes extra ones and adds "
    "missing ones (see both previews).\n"
    "3. Cross-Attention Guide returns a patched MODEL; the KSampler runs it.\n\n"
    "Keep the capture and the sampler in step: the SAME seed (both are set to 'fixed'), steps, cfg, "
    "sampler and scheduler, the same latent, and the capture's prompt text = the positive prompt. "
    "Counts are read from the prompt ('three red apples' -> apples: 3); count_override wins over it.")


@dataclass(frozen=True)
class Sampling:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str

    def as_widgets(self, seed_name: str = "seed") -> dict[str, Any]:
        return {seed_name: self.seed, "steps": self.steps, "cfg": self.cfg,
                "sampler_name": self.sampler_name, "scheduler": self.scheduler}


def _prompts(g: Graph, clip: Output, positive: str, negative: str) -> tuple[Node, Node]:
    pos = g.add("CLIPTextEncode", 1, title="CLIP Text Encode (Positive Prompt)", color=POSITIVE_COLOR,
                clip=clip, text=positive)
    neg = g.add("CLIPTextEncode", 1, title="CLIP Text Encode (Negative Prompt)", color=NEGATIVE_COLOR,
                clip=clip, text=negative)
    return pos, neg


def _numina_chain(g: Graph, model: Output, clip: Output, pos: Node, neg: Node, latent: Output,
                  sampling: Sampling, prompt: str, previews: str, reference_step: int = -1, block: int = -1,
                  mode: str = "default") -> tuple[Node, Node, Node]:
    """Capture -> infer -> refine; previews either 'preview' (PreviewImage) or a SaveImage prefix."""
    capture = g.add("NuminaAttentionCapture", 2, color=NUMINA_COLOR, model=model, clip=clip,
                    positive=pos["CONDITIONING"], negative=neg["CONDITIONING"], latent=latent,
                    **sampling.as_widgets(), prompt=prompt, count_override="", reference_step=reference_step,
                    block=block, memory_budget_mb=256)
    infer = g.add("NuminaLayoutInfer", 3, color=NUMINA_COLOR, capture=capture["capture"], mode=mode)
    refine = g.add("NuminaLayoutRefine", 3, color=NUMINA_COLOR, layout=infer["layout"])
    for node, name in ((infer, "inferred"), (refine, "refined")):
        if previews == "preview":
            g.add("PreviewImage", 4, title=f"Layout {name}", images=node["preview"])
        else:
            g.add("SaveImage", 4, title=f"Layout {name}", images=node["preview"],
                  filename_prefix=f"{previews}/layout_{name}")
        g.add("PreviewAny", 4, title=f"Counts {name}", box_height=90.0, source=node["counts"])
    return capture, infer, refine


def _video_out(g: Graph, samples: Output, vae: Output, fps: float, prefix: str, column: int = 6) -> None:
    decode = g.add("VAEDecode", column, samples=samples, vae=vae)
    video = g.add("CreateVideo", column, images=decode["IMAGE"], fps=fps)
    g.add("SaveVideo", column, box_height=300.0, video=video["VIDEO"], filename_prefix=prefix, format="auto",
          codec="auto")


def wan_t2v(name: str, title: str, unet: str, vae_name: str, size: tuple[int, int, int], sampling: Sampling,
            shift: float, fps: float, prompt: str, wan22_latent: bool = False) -> Graph:
    g = Graph(name, title, f"{title}: NUMINA count-corrected text-to-video.")
    note = g.add("Note", 0, title="NUMINA: how this works", box_height=260.0, color=NOTE_COLOR, text=SAME_SETTINGS_NOTE)
    loader = g.add("UNETLoader", 0, unet_name=unet, weight_dtype="default")
    clip = g.add("CLIPLoader", 0, clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = g.add("VAELoader", 0, vae_name=vae_name)
    model = g.add("ModelSamplingSD3", 1, model=loader["MODEL"], shift=shift)
    pos, neg = _prompts(g, clip["CLIP"], prompt, WAN_NEGATIVE)
    width, height, length = size
    if wan22_latent:
        latent = g.add("Wan22ImageToVideoLatent", 1, vae=vae["VAE"], width=width, height=height, length=length,
                       batch_size=1)
    else:
        latent = g.add("EmptyHunyuanLatentVideo", 1, width=width, height=height, length=length, batch_size=1)
    capture, infer, refine = _numina_chain(g, model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"],
                                           sampling, prompt, "preview")
    guide = g.add("NuminaCrossAttnGuide", 5, color=NUMINA_COLOR, model=model["MODEL"], layout=refine["layout"],
                  bias_form="auto", added_boost=0.0, bias_modifiers=False)
    sampler = g.add("KSampler", 5, model=guide["MODEL"], **sampling.as_widgets(), positive=pos["CONDITIONING"],
                    negative=neg["CONDITIONING"], latent_image=latent["LATENT"], denoise=1.0)
    _video_out(g, sampler["LATENT"], vae["VAE"], fps, f"video/{name}")
    g.group("Load models", [loader, clip, vae])
    g.group("NUMINA: reference pass and layout", [capture, infer, refine], color="#a1309b")
    g.group("Guided sampling", [guide, sampler], color="#88A")
    return g


A14B_NOTE = (
    "Wan 2.2 A14B has two experts: high-noise for steps 0..9, low-noise for steps 10..19 of 20.\n\n"
    "The capture runs on the HIGH-noise expert: the published reference step (40% of the schedule, "
    "step 20 of 50) is step 8 of 20 here, inside the high-noise expert's range, and that is where the "
    "layout of the objects is decided.\n\n"
    "The SAME refined layout feeds two Cross-Attention Guide nodes, one per expert, so both halves of the "
    "run are steered toward one layout. Keep seed, steps, cfg, sampler and scheduler identical on the "
    "capture and on both KSamplerAdvanced nodes (high: steps 0..10 with leftover noise; low: 10..end).")


def wan22_a14b() -> Graph:
    name = "numina_wan22_t2v_A14B"
    title = "NUMINA Wan 2.2 T2V A14B"
    sampling = Sampling(REAL_SEED, 20, 3.5, "euler", "simple")
    prompt = "Two golden retrievers and four yellow ducks playing on a green lawn beside a pond, sunny afternoon."
    g = Graph(name, title, f"{title}: NUMINA count-corrected text-to-video with the two-expert model.")
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
    latent = g.add("EmptyHunyuanLatentVideo", 1, width=1280, height=720, length=81, batch_size=1)
    capture, infer, refine = _numina_chain(g, high_model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"],
                                           sampling, prompt, "preview")
    guide_high = g.add("NuminaCrossAttnGuide", 5, title="NUMINA Guide (high noise)", color=NUMINA_COLOR,
                       model=high_model["MODEL"], layout=refine["layout"], bias_form="auto", added_boost=0.0,
                       bias_modifiers=False)
    guide_low = g.add("NuminaCrossAttnGuide", 5, title="NUMINA Guide (low noise)", color=NUMINA_COLOR,
                      model=low_model["MODEL"], layout=refine["layout"], bias_form="auto", added_boost=0.0,
                      bias_modifiers=False)
    first = g.add("KSamplerAdvanced", 6, title="KSamplerAdvanced (high noise)", model=guide_high["MODEL"],
                  add_noise="enable", **sampling.as_widgets("noise_seed"), positive=pos["CONDITIONING"],
                  negative=neg["CONDITIONING"], latent_image=latent["LATENT"], start_at_step=0, end_at_step=10,
                  return_with_leftover_noise="enable")
    second = g.add("KSamplerAdvanced", 6, title="KSamplerAdvanced (low noise)", model=guide_low["MODEL"],
                   add_noise="disable", **sampling.as_widgets("noise_seed"), positive=pos["CONDITIONING"],
                   negative=neg["CONDITIONING"], latent_image=first["LATENT"], start_at_step=10, end_at_step=10000,
                   return_with_leftover_noise="disable")
    _video_out(g, second["LATENT"], vae["VAE"], 16.0, f"video/{name}", column=7)
    g.group("Load models", [high, low, clip, vae])
    g.group("NUMINA: reference pass on the high-noise expert", [capture, infer, refine], color="#a1309b")
    g.group("Guided sampling, one guide per expert", [guide_high, guide_low, first, second], color="#88A")
    return g


def cpu_demo(unet: str, vae_name: str = TINY_VAE) -> Graph:
    name = "numina_cpu_demo"
    title = "NUMINA CPU demo (tiny Wan 2.1)"
    sampling = Sampling(DEMO_SEED, 25, 1.0, "euler", "simple")   # CountWorld: CFG 1 chosen on its tuning prompts
    g = Graph(name, title, "Runs on a CPU in seconds with the tiny models scripts/make_fixtures.py builds: "
                           "the guided result beside the plain one.")
    g.add("Note", 0, title="NUMINA CPU demo", box_height=260.0, color=NOTE_COLOR,
          text="Tiny models built by scripts/make_fixtures.py (no download). The guided frames are saved as "
               "numina_demo/frame, the unguided run with the same seed as numina_demo/plain_frame, and both "
               "layouts as numina_demo/layout_inferred / layout_refined.\n\n" + SAME_SETTINGS_NOTE)
    loader = g.add("UNETLoader", 0, unet_name=unet, weight_dtype="default")
    clip = g.add("NuminaTinyTextEncoderLoader", 0, text_encoder=TINY_TEXT_ENCODER)
    vae = g.add("VAELoader", 0, vae_name=vae_name)
    model = g.add("ModelSamplingSD3", 1, model=loader["MODEL"], shift=3.0)
    pos, neg = _prompts(g, clip["CLIP"], DEMO_PROMPT, "")
    latent = g.add("EmptyHunyuanLatentVideo", 1, width=DEMO_WIDTH, height=DEMO_HEIGHT, length=DEMO_LENGTH,
                   batch_size=1)
    # CountWorld's model: this pack's settings chosen on CountWorld's tuning prompts (README); the
    # tiny random model keeps the published ones
    tuned = COUNTWORLD_SETTINGS if unet == COUNTWORLD_MODEL else dict(reference_step=-1, block=-1, mode="default",
                                                                      added_boost=0.0, bias_modifiers=False)
    capture, infer, refine = _numina_chain(g, model["MODEL"], clip["CLIP"], pos, neg, latent["LATENT"],
                                           sampling, DEMO_PROMPT, "numina_demo", tuned["reference_step"],
                                           tuned["block"], tuned["mode"])
    guide = g.add("NuminaCrossAttnGuide", 5, color=NUMINA_COLOR, model=model["MODEL"], layout=refine["layout"],
                  bias_form="auto", added_boost=tuned["added_boost"], bias_modifiers=tuned["bias_modifiers"])
    sampler = g.add("KSampler", 5, title="KSampler (NUMINA guided)", model=guide["MODEL"], **sampling.as_widgets(),
                    positive=pos["CONDITIONING"], negative=neg["CONDITIONING"], latent_image=latent["LATENT"],
                    denoise=1.0)
    plain = g.add("KSampler", 5, title="KSampler (plain, same seed)", model=model["MODEL"], **sampling.as_widgets(),
                  positive=pos["CONDITIONING"], negative=neg["CONDITIONING"], latent_image=latent["LATENT"],
                  denoise=1.0)
    if unet == COUNTWORLD_MODEL:   # a latent-space world: its pictures come from the fixed preview decode
        decode = g.add("NuminaLatentRGBDecode", 6, model=model["MODEL"], samples=sampler["LATENT"], upscale=8)
        plain_decode = g.add("NuminaLatentRGBDecode", 7, model=model["MODEL"], samples=plain["LATENT"], upscale=8)
    else:
        decode = g.add("VAEDecode", 6, samples=sampler["LATENT"], vae=vae["VAE"])
        plain_decode = g.add("VAEDecode", 7, samples=plain["LATENT"], vae=vae["VAE"])
    g.add("SaveImage", 6, title="Guided frames", images=decode["IMAGE"], filename_prefix="numina_demo/frame")
    g.add("SaveAnimatedWEBP", 6, title="Guided video", images=decode["IMAGE"], filename_prefix="numina_demo/video",
          fps=8.0, lossless=False, quality=90, method="default")
    g.add("SaveImage", 7, title="Plain frames", images=plain_decode["IMAGE"],
          filename_prefix="numina_demo/plain_frame")
    g.group("Tiny models", [loader, clip, vae])
    g.group("NUMINA: reference pass and layout", [capture, infer, refine], color="#a1309b")
    g.group("Guided and plain sampling (same seed)", [guide, sampler, plain], color="#88A")
    return g


def all_workflows(demo_unet: str, demo_vae: str = TINY_VAE) -> list[Graph]:
    return [
        wan_t2v("numina_wan21_t2v_1.3B", "NUMINA Wan 2.1 T2V 1.3B", "wan2.1_t2v_1.3B_fp16.safetensors",
                "wan_2.1_vae.safetensors", (832, 480, 81), Sampling(REAL_SEED, 30, 6.0, "uni_pc", "simple"),
                8.0, 16.0, "Three red apples rolling slowly across a wooden kitchen table, soft morning light."),
        wan_t2v("numina_wan21_t2v_14B", "NUMINA Wan 2.1 T2V 14B", "wan2.1_t2v_14B_fp16.safetensors",
                "wan_2.1_vae.safetensors", (1280, 720, 81), Sampling(REAL_SEED, 30, 6.0, "uni_pc", "simple"),
                8.0, 16.0, "Five hot air balloons drifting over a mountain valley at sunrise, aerial shot."),
        wan_t2v("numina_wan22_ti2v_5B", "NUMINA Wan 2.2 TI2V 5B (text to video)", "wan2.2_ti2v_5B_fp16.safetensors",
                "wan2.2_vae.safetensors", (1280, 704, 121), Sampling(REAL_SEED, 20, 5.0, "uni_pc", "simple"),
                8.0, 24.0, "Three white sheep grazing in a green meadow, gentle wind in the grass, cinematic.",
                wan22_latent=True),
        wan22_a14b(),
        cpu_demo(demo_unet, demo_vae),
    ]


# ----------------------------------------------------------------------------- thumbnails
_KIND_COLORS = {"loader": (62, 104, 150), "numina": (176, 112, 48), "sampler": (110, 84, 160),
                "output": (64, 130, 84), "note": (150, 130, 60), "other": (90, 90, 96)}
_LINK_COLORS = {"MODEL": (180, 160, 255), "CLIP": (255, 210, 60), "VAE": (255, 110, 110),
                "CONDITIONING": (255, 170, 80), "LATENT": (255, 140, 200), "IMAGE": (100, 180, 255),
                "VIDEO": (120, 220, 160), "NUMINA_CAPTURE": (255, 150, 60), "NUMINA_LAYOUT": (255, 150, 60),
                "STRING": (170, 220, 120)}


def _kind(node_type: str) -> str:
    if node_type.startswith("Numina") and not node_type.endswith("Loader"):
        return "numina"
    if node_type.endswith("Loader"):
        return "loader"
    if node_type.startswith("KSampler"):
        return "sampler"
    if node_type.startswith(("Save", "Preview", "CreateVideo", "VAEDecode")):
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


def draw_thumbnail(workflow: dict[str, Any], title: str, path: str, size: tuple[int, int] = (640, 400)) -> None:
    """A diagram of the graph: one box per node, one line per link, the title on top."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, (32, 33, 38))
    draw = ImageDraw.Draw(image)
    title_font = ImageFont.load_default(size=24)
    label_font = ImageFont.load_default(size=9)
    draw.text((18, 12), title, fill=(240, 240, 240), font=title_font)
    draw.line([(18, 46), (size[0] - 18, 46)], fill=(230, 140, 50), width=2)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    left = min(n["pos"][0] for n in nodes.values())
    top = min(n["pos"][1] for n in nodes.values())
    right = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    box = (18, 62, size[0] - 18, size[1] - 14)
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
    image.save(path, quality=88)


# ----------------------------------------------------------------------------- main
def demo_unet_choice(choice: str) -> str:
    if choice == "countworld":
        return COUNTWORLD_MODEL
    if choice == "tiny":
        return TINY_MODEL
    return COUNTWORLD_MODEL if os.path.exists(COUNTWORLD_CHECKPOINT) else TINY_MODEL


def demo_vae_choice(choice: Optional[str]) -> str:
    """The random tiny VAE decodes CountWorld latents to noise; a CountWorld VAE, once one is
    committed (countworld/checkpoints/countworld*vae*.safetensors), shows the world's pictures."""
    if choice:
        return choice
    found = sorted(glob.glob(os.path.join(ROOT, "countworld", "checkpoints", "countworld*vae*.safetensors")))
    return os.path.basename(found[0]) if found else TINY_VAE


def write_workflows(out_dir: str = OUT_DIR, demo_model: str = "auto", demo_vae: Optional[str] = None) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for graph in all_workflows(demo_unet_choice(demo_model), demo_vae_choice(demo_vae)):
        workflow = graph.to_ui()
        path = os.path.join(out_dir, graph.name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(workflow, f, indent=2, ensure_ascii=False)
            f.write("\n")
        draw_thumbnail(workflow, graph.title, os.path.join(out_dir, graph.name + ".jpg"))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=OUT_DIR, help="output folder (default: the pack's workflows/)")
    parser.add_argument("--demo-model", choices=("auto", "countworld", "tiny"), default="auto",
                        help="diffusion model of the CPU demo: auto = the CountWorld checkpoint when "
                             f"{os.path.relpath(COUNTWORLD_CHECKPOINT, ROOT)} exists, else the random tiny Wan")
    parser.add_argument("--demo-vae", default=None,
                        help="VAE file of the CPU demo (default: a countworld/checkpoints/countworld*vae* file when "
                             f"one exists, else {TINY_VAE})")
    args = parser.parse_args()
    for path in write_workflows(args.out, args.demo_model, args.demo_vae):
        print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
