"""One graph per (method, prompt, seed) from a NUMINA workflow template, in ComfyUI's API format.

The template is a shipped workflow (example_workflows/*.json, converted to the API format with the
server's /object_info) or an API-format graph: models, prompts, latent, NuminaAttentionCapture ->
NuminaLayoutInfer -> NuminaLayoutRefine -> NuminaSampler -> a VAE decode.  Every method keeps the
template's models and sampling settings (those entered on the capture) and writes the decoded
frames as PNGs (SaveImage: lossless, one file a frame, as the judge reads them):

  plain      KSampler with the capture's settings, the capture's model, prompts and latent
  numina     the template's own NUMINA graph
  checked_N  NuminaCheckedSampler (N tries) with the template's NUMINA settings and a counter loader
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

SAMPLING_KEYS = ("seed", "steps", "cfg", "sampler_name", "scheduler")
OUTPUT_CLASSES = ("SaveVideo", "CreateVideo", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM", "PreviewImage",
                  "SaveImage", "SaveLatent", "PreviewAny")


class TemplateError(ValueError):
    """The template is not a single-model NUMINA text-to-video graph; the message says what is missing."""


@dataclass(frozen=True)
class Template:
    graph: dict[str, dict[str, Any]]
    capture: str
    infer: str
    refine: str
    sampler: str
    decode: str
    positive: str

    @property
    def settings(self) -> dict[str, Any]:
        return {k: self.graph[self.capture]["inputs"][k] for k in SAMPLING_KEYS}


def load_template(workflow: dict[str, Any], object_info: Optional[dict[str, Any]] = None) -> Template:
    """A workflow (UI format, converted with `object_info`, or API format) as a Template."""
    if "nodes" in workflow and "links" in workflow:
        if object_info is None:
            raise TemplateError("a UI-format workflow needs the server's /object_info to be converted")
        from scripts.workflow_api import ui_to_api

        graph = ui_to_api(workflow, object_info)
    else:
        graph = {str(k): v for k, v in workflow.items()}
    graph = copy.deepcopy(graph)

    def only(kind: str) -> str:
        found = [i for i, n in graph.items() if n["class_type"] == kind]
        if len(found) != 1:
            raise TemplateError(f"the template must hold exactly one {kind} node (it holds {len(found)}): use a "
                                "NUMINA text-to-video workflow such as example_workflows/numina_wan21_t2v_1.3B.json")
        return found[0]

    capture, infer, refine, sampler = (only(k) for k in ("NuminaAttentionCapture", "NuminaLayoutInfer",
                                                          "NuminaLayoutRefine", "NuminaSampler"))
    if graph[sampler]["inputs"].get("low_noise_model") is not None:
        raise TemplateError("two-expert templates (Wan2.2 A14B) are not supported by the runner yet: use a "
                            "single-model workflow")
    decodes = [i for i, n in graph.items() if n["inputs"].get("samples") == [sampler, 0] and "vae" in n["inputs"]]
    if len(decodes) != 1:
        raise TemplateError("the template must decode the NuminaSampler's latent with one VAE decode node")
    positive = graph[capture]["inputs"]["positive"]
    if not isinstance(positive, list) or "text" not in graph[positive[0]]["inputs"]:
        raise TemplateError("the capture's positive prompt must come from a text-encode node with a 'text' widget")
    for node_id in [i for i, n in graph.items() if n["class_type"] in OUTPUT_CLASSES]:
        del graph[node_id]
    return Template(graph, capture, infer, refine, sampler, decodes[0], positive[0])


def count_override(prompt: str, counts: dict[str, int]) -> str:
    """The capture's count_override: "" when the pack's prompt parser reads exactly the gold counts,
    else the gold counts ("cats: 3, dogs: 2"), so NUMINA corrects the nouns the judge checks."""
    from numina_ops.prompt import parse_targets
    from numina_ops.records import NuminaInputError

    try:
        if parse_targets(prompt).as_dict() == counts:
            return ""
    except NuminaInputError:
        pass
    return ", ".join(f"{noun}: {k}" for noun, k in counts.items())


def method_graph(template: Template, method: str, prompt: str, counts: dict[str, int], seed: int,
                 prefix: str, counter: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The API graph of one job.  `counter` is the counter loader node checked_N uses (class_type and
    inputs, e.g. NuminaCounterLoader with a GroundingDINO folder)."""
    g = copy.deepcopy(template.graph)
    g[template.positive]["inputs"]["text"] = prompt
    cap = g[template.capture]["inputs"]
    cap.update(prompt=prompt, count_override=count_override(prompt, counts), seed=int(seed))
    images: list[Any] = [template.decode, 0]
    if method == "plain":
        g["countbench_plain"] = {"class_type": "KSampler", "inputs": {
            "model": g[template.sampler]["inputs"]["model"], **{k: cap[k] for k in SAMPLING_KEYS},
            "positive": cap["positive"], "negative": cap["negative"], "latent_image": cap["latent"], "denoise": 1.0}}
        g[template.decode]["inputs"]["samples"] = ["countbench_plain", 0]
        for node in (template.capture, template.infer, template.refine, template.sampler):
            del g[node]
    elif method == "numina":
        pass
    elif re.fullmatch(r"checked_\d+", method):
        if counter is None:
            raise TemplateError("checked_N needs a counter loader for the server (--server-counter)")
        s = g[template.sampler]["inputs"]
        g["countbench_counter"] = {"class_type": counter["class_type"], "inputs": dict(counter["inputs"])}
        g["countbench_checked"] = {"class_type": "NuminaCheckedSampler", "inputs": {
            "model": s["model"], "capture": [template.capture, 0], "vae": g[template.decode]["inputs"]["vae"],
            "counter": ["countbench_counter", 0], "tries": int(method.split("_")[1]),
            "mode": g[template.infer]["inputs"].get("mode", "auto"),
            **{k: s[k] for k in ("bias_form", "bias", "added_boost", "bias_modifiers") if k in s}}}
        for node in (template.infer, template.refine, template.sampler, template.decode):
            del g[node]
        images = ["countbench_checked", 0]
    else:
        raise TemplateError(f"unknown method {method!r}: plain, numina or checked_N")
    g["countbench_frames"] = {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}
    return g


def cost_node(template: Template, method: str) -> Optional[str]:
    """The node whose ui reports the job's model evaluations (None: plain, whose cost is its steps)."""
    return {"numina": template.sampler}.get(method, "countbench_checked" if method.startswith("checked_") else None)


def parse_counter(text: str) -> Optional[dict[str, Any]]:
    """--server-counter: a GroundingDINO folder name for NuminaCounterLoader ("grounding-dino-tiny"), or
    a JSON node ({"class_type": ..., "inputs": {...}}) for any other counter loader."""
    if not text:
        return None
    if text.lstrip().startswith("{"):
        node = json.loads(text)
        if "class_type" not in node:
            raise TemplateError("--server-counter JSON needs a class_type")
        return {"class_type": node["class_type"], "inputs": node.get("inputs", {})}
    return {"class_type": "NuminaCounterLoader", "inputs": {"model_name": text}}
