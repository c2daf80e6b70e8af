"""NuminaCounterLoader: the paper's judge (GroundingDINO through transformers) as a counter the
count check and the checked sampler use.  The model is read from ComfyUI's model folder
`models/grounding-dino/<name>/` (the Hugging Face folder as downloaded); nothing is fetched."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..numina_ops.judge import PAPER_BOX_THRESHOLD, PAPER_TEXT_THRESHOLD
from ..numina_ops.records import NuminaInputError
from .counting import DEFAULT_FRAMES_PER_BATCH
from .records_io import COUNTER
from .schema import search_aliases

FOLDER = "grounding-dino"
# The two models users download (Hugging Face IDEA-Research/<name>); always offered, so a shipped
# workflow validates before the files are there (the node then says how to get them).
KNOWN_MODELS = ("grounding-dino-tiny", "grounding-dino-base")


def register_folder() -> None:
    """models/grounding-dino as a ComfyUI model folder (extra_model_paths.yaml may add more)."""
    default = os.path.join(folder_paths.models_dir, FOLDER)
    if FOLDER not in folder_paths.folder_names_and_paths or default not in folder_paths.get_folder_paths(FOLDER):
        folder_paths.add_model_folder_path(FOLDER, default)


def model_folders() -> dict[str, str]:
    """name -> path of every model folder (one holding a config.json) under the registered paths."""
    found: dict[str, str] = {}
    for root in folder_paths.get_folder_paths(FOLDER):
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isfile(os.path.join(path, "config.json")):
                found.setdefault(name, path)
    return found


def missing_model_message(name: str) -> str:
    target = os.path.join(folder_paths.get_folder_paths(FOLDER)[0], name)
    repo = name if name in KNOWN_MODELS else "grounding-dino-tiny"
    return (f"no GroundingDINO model {name!r} in {target}: download the Hugging Face folder there, e.g. "
            f"`huggingface-cli download IDEA-Research/{repo} --local-dir \"{target}\"` (config.json, "
            "model.safetensors, preprocessor_config.json and the tokenizer files; only model.safetensors is read), "
            "then press R in ComfyUI to refresh the list")


register_folder()


class NuminaCounterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        names = list(dict.fromkeys([*KNOWN_MODELS, *model_folders()]))
        return io.Schema(
            node_id="NuminaCounterLoader",
            display_name="NUMINA Counter Loader (GroundingDINO)",
            category="NUMINA",
            **search_aliases("grounding dino", "object detector", "count judge"),
            description="Loads the paper's judge, GroundingDINO (tiny = the Swin-T model the paper counts with), from "
                        "models/grounding-dino/<name>/, for NuminaCountCheck and NuminaCheckedSampler. It counts a "
                        "noun's boxes in every frame, one text query per noun.",
            inputs=[
                io.Combo.Input("model_name", options=names, default=KNOWN_MODELS[0],
                               tooltip="A folder under models/grounding-dino/ holding a Hugging Face GroundingDINO "
                                       "(IDEA-Research/grounding-dino-tiny or -base)."),
                io.Float.Input("box_threshold", default=PAPER_BOX_THRESHOLD, min=0.01, max=1.0, step=0.01,
                               tooltip="A box counts when its best text score reaches this (the paper: 0.32)."),
                io.Float.Input("text_threshold", default=PAPER_TEXT_THRESHOLD, min=0.01, max=1.0, step=0.01,
                               tooltip="Text tokens scoring this much name the box (the paper: 0.25)."),
                io.Int.Input("frames_per_batch", default=DEFAULT_FRAMES_PER_BATCH, min=1, max=256,
                             tooltip="Frames detected at once: bounds the detector's memory (lower it if the GPU "
                                     "runs out of memory)."),
            ],
            outputs=[COUNTER.Output(display_name="counter")],
        )

    @classmethod
    def execute(cls, model_name, box_threshold, text_threshold, frames_per_batch) -> io.NodeOutput:
        from ..numina_ops.detector import load_grounding_dino

        path = model_folders().get(model_name)
        if path is None:
            raise NuminaInputError(missing_model_message(model_name))
        return io.NodeOutput(load_grounding_dino(path, box_threshold=box_threshold, text_threshold=text_threshold,
                                                 frames_per_batch=frames_per_batch))
