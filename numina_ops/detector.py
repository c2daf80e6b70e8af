"""The paper's judge: GroundingDINO through ``transformers``, as an :class:`~numina_ops.judge.ObjectCounter`.

The authors' ``evaluation/eval_counting.py`` runs GroundingDINO Swin-T OGC on every frame with one
caption ``"<noun> ."`` per noun (lower-cased, as GroundingDINO's own ``preprocess_caption`` does),
box threshold 0.32 and text threshold 0.25, and counts every box of the caption.  Here the same
model comes as the Hugging Face conversion (``IDEA-Research/grounding-dino-tiny``; ``-base`` also
loads), read from a local folder only: ``model.safetensors``, never a pickle, never remote code.

Choices the paper leaves open:

* **Frames to pixels**: IMAGE floats in [0, 1] are rounded to uint8 (what a saved video frame
  holds, which is what the authors' script reads) and handed to the processor as HWC arrays.
* **Boxes** are clipped to the frame: the model's (centre, size) boxes can reach past the border,
  and a box in pixels of the frame is what a consumer draws.  Clipping never changes a count.
* **Batches**: ``frames_per_batch`` frames per forward, one forward per noun and batch (all
  frames of a video have one size, so batching pads nothing and changes no box).
"""
from __future__ import annotations

import inspect
import json
import math
import os
from typing import Optional, Sequence

import numpy as np
import torch

from .judge import PAPER_BOX_THRESHOLD, PAPER_TEXT_THRESHOLD, Box
from .records import NuminaInputError

DOWNLOAD_HINT = "huggingface-cli download IDEA-Research/grounding-dino-tiny --local-dir {folder}"
# Peak activations of one forward grow with the pixels of the resized image (shortest edge 800,
# longest 1333 for the real judge).  Measured, Swin-T GroundingDINO in fp32 on the CPU, one image,
# one caption: 0.43 GiB at 400 x 667, 1.35 GiB at 800 x 1333, i.e. about 0.12 GiB + 310 elements
# per pixel; both rounded up here, so the estimate is an upper bound, not a prediction.
ACTIVATION_ELEMENTS_PER_PIXEL = 384
_ELEMENTS_FIXED = 64 * 2**20   # text encoder, queries, post-processing: independent of the image size


def _check_threshold(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise NuminaInputError(f"{name} must be a number in (0, 1] (the paper's judge uses "
                               f"{PAPER_BOX_THRESHOLD} for boxes, {PAPER_TEXT_THRESHOLD} for text), got {value!r}")
    return float(value)


def _check_folder(folder: str) -> None:
    """Refuse, with the fix, a folder that is not a downloaded Hugging Face GroundingDINO."""
    get = DOWNLOAD_HINT.format(folder=folder)
    if not os.path.isdir(folder):
        raise NuminaInputError(f"GroundingDINO folder '{folder}' does not exist; download the judge into it: {get}")
    have = set(os.listdir(folder))
    missing = []
    if "config.json" not in have:
        missing.append("config.json (the model config)")
    if not {"model.safetensors", "model.safetensors.index.json"} & have:
        if {"pytorch_model.bin", "pytorch_model.bin.index.json"} & have:
            raise NuminaInputError(
                f"GroundingDINO folder '{folder}' has only pytorch_model.bin; only model.safetensors is read (a "
                f"pickle file can run code when loaded). Get the safetensors weights: "
                f"huggingface-cli download IDEA-Research/grounding-dino-tiny model.safetensors --local-dir {folder}")
        missing.append("model.safetensors (the weights)")
    if not {"preprocessor_config.json", "processor_config.json"} & have:
        missing.append("preprocessor_config.json (the image processor)")
    if not {"tokenizer.json", "vocab.txt"} & have:
        missing.append("tokenizer.json or vocab.txt (the text tokenizer)")
    if missing:
        raise NuminaInputError(f"GroundingDINO folder '{folder}' lacks {', '.join(missing)}; download the whole "
                               f"model folder: {get}")
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            model_type = json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise NuminaInputError(f"cannot read '{folder}/config.json' ({e}); download the judge again: {get}") from e
    if model_type != "grounding-dino":
        raise NuminaInputError(f"'{folder}' holds a '{model_type}' model, not GroundingDINO (model_type "
                               f"'grounding-dino'); download the judge: {get}")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """"cuda" means the current CUDA device: resolve it before comparing with "cuda:0"."""
    def resolved(d: torch.device) -> tuple[str, Optional[int]]:
        if d.type == "cuda" and d.index is None and torch.cuda.is_available():
            return d.type, torch.cuda.current_device()
        return d.type, d.index
    (ta, ia), (tb, ib) = resolved(a), resolved(b)
    return ta == tb and (ia is None or ib is None or ia == ib)


def frames_to_uint8(frames: torch.Tensor) -> list[np.ndarray]:
    """IMAGE [F, H, W, 3] floats in [0, 1] -> F uint8 HWC arrays (what a saved frame holds)."""
    pixels = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return list(pixels)


class GroundingDinoCounter:
    """GroundingDINO with the paper's caption and thresholds; counts every box of a noun's caption."""

    def __init__(self, model: torch.nn.Module, processor, name: str, box_threshold: float = PAPER_BOX_THRESHOLD,
                 text_threshold: float = PAPER_TEXT_THRESHOLD, frames_per_batch: int = 8):
        self.model = model
        self.processor = processor
        self.name = name
        self.box_threshold = _check_threshold("box_threshold", box_threshold)
        self.text_threshold = _check_threshold("text_threshold", text_threshold)
        if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise NuminaInputError(f"frames_per_batch must be a whole number >= 1 (8 is a good default), got "
                                   f"{frames_per_batch!r}")
        self.frames_per_batch = frames_per_batch
        # transformers renamed the box threshold `box_threshold` -> `threshold`
        params = inspect.signature(processor.post_process_grounded_object_detection).parameters
        self._threshold_arg = "threshold" if "threshold" in params else "box_threshold"

    def describe(self) -> str:
        return (f"GroundingDINO {self.name}, box threshold {self.box_threshold:g}, "
                f"text threshold {self.text_threshold:g}")

    @staticmethod
    def caption(noun: str) -> str:
        """The authors' caption: the noun alone, lower-cased, closed with " ."."""
        return f"{noun.strip().lower()} ."

    def estimated_memory_bytes(self, frames_shape: Sequence[int]) -> int:
        """Rough upper bound, in bytes, of the activations of one batch of frames [F, H, W, 3] (what
        the ComfyUI adapter asks model management to free): ``min(F, frames_per_batch)`` resized
        frames x (``ACTIVATION_ELEMENTS_PER_PIXEL`` + 3 input) elements per pixel + a fixed part, in
        the model's dtype.  About 1.6 GB per frame of Wan 480p (769 x 1333 resized) in fp32."""
        frames, height, width = (int(s) for s in tuple(frames_shape)[:3])
        h, w = _resized_size(self.processor.image_processor, height, width)
        batch = max(1, min(frames, self.frames_per_batch))
        element = next(self.model.parameters()).element_size()
        return element * (batch * h * w * (ACTIVATION_ELEMENTS_PER_PIXEL + 3) + _ELEMENTS_FIXED)

    def detect(self, frames: torch.Tensor, nouns: Sequence[str],
               device: Optional[torch.device] = None) -> list[list[list[Box]]]:
        """boxes[frame][noun] in pixels of ``frames`` (IMAGE [F, H, W, 3] in [0, 1]).

        Runs where the model is; a ``device`` other than that moves the model there first and
        leaves it there (the caller, e.g. ComfyUI's model management, owns where it lives).
        """
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise NuminaInputError(f"expected decoded frames (IMAGE [frames, height, width, 3]), got {shape}")
        if isinstance(nouns, str) or any(not isinstance(n, str) or not n.strip() for n in nouns):
            raise NuminaInputError(f"nouns must be a list of non-empty words (e.g. ['apples', 'dogs']), got {nouns!r}")
        count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
        boxes: list[list[list[Box]]] = [[[] for _ in nouns] for _ in range(count)]
        if not nouns or count == 0:
            return boxes

        weight = next(self.model.parameters())
        if device is not None and not _same_device(torch.device(device), weight.device):
            self.model.to(device)
            weight = next(self.model.parameters())
        texts = [self.processor.tokenizer(self.caption(n), return_tensors="pt", return_token_type_ids=True,
                                          return_attention_mask=True) for n in nouns]
        with torch.inference_mode():
            for start in range(0, count, self.frames_per_batch):
                batch = frames_to_uint8(frames[start:start + self.frames_per_batch])
                pixels = self.processor.image_processor(images=batch, return_tensors="pt")
                pixel_values = pixels["pixel_values"].to(device=weight.device, dtype=weight.dtype)
                pixel_mask = pixels["pixel_mask"].to(weight.device)
                sizes = [(height, width)] * len(batch)
                for n, text in enumerate(texts):
                    ids = {k: v.to(weight.device).expand(len(batch), -1)
                           for k, v in text.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                    outputs = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask, **ids)
                    results = self.processor.post_process_grounded_object_detection(
                        outputs, ids["input_ids"], text_threshold=self.text_threshold, target_sizes=sizes,
                        **{self._threshold_arg: self.box_threshold})
                    for f, result in enumerate(results):
                        boxes[start + f][n] = _to_boxes(result["boxes"], result["scores"], height, width)
        return boxes


def _to_boxes(xyxy: torch.Tensor, scores: torch.Tensor, height: int, width: int) -> list[Box]:
    xyxy = xyxy.detach().float().cpu()
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    return [Box(*(float(v) for v in b), score=float(s)) for b, s in zip(xyxy.tolist(), scores.detach().float().cpu())]


def _resized_size(image_processor, height: int, width: int) -> tuple[int, int]:
    """The (height, width) the processor resizes a frame to: shortest edge up to ``shortest_edge``
    unless the longest would pass ``longest_edge`` (DETR-style resize)."""
    size = getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
    short, long = get("shortest_edge", None), get("longest_edge", None)
    if not short:
        h, w = get("height", None), get("width", None)
        return (int(h), int(w)) if h and w else (height, width)
    scale = short / min(height, width)
    if long:
        scale = min(scale, long / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def load_grounding_dino(folder: str, box_threshold: float = PAPER_BOX_THRESHOLD,
                        text_threshold: float = PAPER_TEXT_THRESHOLD, frames_per_batch: int = 8) -> GroundingDinoCounter:
    """GroundingDINO from a local Hugging Face folder (``IDEA-Research/grounding-dino-tiny`` as
    downloaded): safetensors only, no remote code, no network; on the CPU in fp32, eval mode."""
    folder = os.fspath(folder)
    _check_threshold("box_threshold", box_threshold)
    _check_threshold("text_threshold", text_threshold)
    _check_folder(folder)
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

    try:
        model = GroundingDinoForObjectDetection.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        processor = GroundingDinoProcessor.from_pretrained(folder, local_files_only=True)
    except OSError as e:
        raise NuminaInputError(f"could not read GroundingDINO from '{folder}' ({e}); download it again: "
                               f"{DOWNLOAD_HINT.format(folder=folder)}") from e
    model = model.to(device="cpu", dtype=torch.float32).eval()
    name = os.path.basename(os.path.normpath(folder))
    return GroundingDinoCounter(model, processor, name, box_threshold=box_threshold, text_threshold=text_threshold,
                                frames_per_batch=frames_per_batch)
