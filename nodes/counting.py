"""Running a counter on decoded frames inside ComfyUI: on ComfyUI's torch device, a batch of
frames at a time (the interrupt honoured and the progress bar moved between batches), with room
made the way ComfyUI's own upscale node makes it (`free_memory` for the detector and one batch,
which unloads other models only when the device lacks that room), and the detector moved back to
its offload device afterwards, so the Wan model's memory is left as it was found."""
from __future__ import annotations

from typing import Optional

import torch

import comfy.model_management as mm

from ..numina_ops.judge import CountCheck, ObjectCounter, check_frames, check_image
from ..numina_ops.layout_masks import pixels_per_token, video_frames
from ..numina_ops.records import Capture, Layout, NuminaInputError
from .progress import comfy_progress

DEFAULT_FRAMES_PER_BATCH = 4     # GroundingDINO Swin-T at 480p: about 1.4 GiB of activations a frame in fp32


def targets_record(record) -> Capture | Layout:
    if not isinstance(record, (Capture, Layout)):
        raise NuminaInputError("connect the 'capture' output of NuminaAttentionCapture (or a layout from "
                               "NuminaLayoutInfer / NuminaLayoutRefine) to this input: it knows the nouns and targets")
    return record


def expected_video(record: Capture | Layout) -> tuple[int, int, int]:
    """(frames, height, width) of the video the record's run decodes to (Wan's VAE: 1 + 4 frames per
    further latent frame; a token is 16 x 16 pixels, 32 x 32 on Wan2.2 TI2V 5B)."""
    ppt = pixels_per_token(record.model_family)
    return video_frames(record.grid.frames), record.grid.height * ppt, record.grid.width * ppt


def check_video_frames(frames: torch.Tensor, record: Capture | Layout) -> None:
    """Refuse frames that are not the record's video (another size or frame count)."""
    check_image(frames)
    want = expected_video(record)
    got = (int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2]))
    if got != want:
        raise NuminaInputError(
            f"these frames ({got[0]} frames of {got[2]}x{got[1]}) are not the video of this capture's run "
            f"({want[0]} frames of {want[2]}x{want[1]}): connect VAE Decode of the NUMINA sampler's latent (the "
            "whole video, not resized or trimmed), and the capture or layout of that same run")


def _module(counter: ObjectCounter) -> Optional[torch.nn.Module]:
    model = getattr(counter, "model", None)
    return model if isinstance(model, torch.nn.Module) else None


def run_counter(frames: torch.Tensor, record: Capture | Layout, counter: ObjectCounter) -> CountCheck:
    """The check of one video: ``counter`` on every frame, on ComfyUI's device."""
    if not hasattr(counter, "detect") or not hasattr(counter, "describe"):
        raise NuminaInputError("connect a counter (NuminaCounterLoader's output) to the 'counter' input")
    check_video_frames(frames, record)
    module = _module(counter)
    batch = max(1, int(getattr(counter, "frames_per_batch", DEFAULT_FRAMES_PER_BATCH)))
    nouns = tuple(t.noun for t in record.targets.items)
    progress = comfy_progress()
    if module is None or not nouns:       # a counter without weights (a test judge): where the frames are
        return _in_batches(frames, record, counter, batch, None, progress)
    device, offload = mm.get_torch_device(), mm.unet_offload_device()
    estimate = getattr(counter, "estimated_memory_bytes", None)
    activations = estimate((batch, *frames.shape[1:])) if callable(estimate) else 0
    mm.free_memory(mm.module_size(module) + activations, device)
    try:
        module.to(device)
        return _in_batches(frames, record, counter, batch, device, progress)
    finally:
        module.to(offload)
        mm.soft_empty_cache()


def _in_batches(frames, record, counter, batch, device, progress) -> CountCheck:
    """check_frames over batches of frames, joined: the interrupt is honoured between batches."""
    parts = []
    total = frames.shape[0]
    for start in range(0, total, batch):
        progress(start, total)
        parts.append(check_frames(frames[start:start + batch], record.targets, counter, device=device))
    progress(total, total)
    first = parts[0]
    return CountCheck(nouns=first.nouns, targets=first.targets,
                      counts=tuple(sum((p.counts[n] for p in parts), ()) for n in range(len(first.nouns))),
                      boxes=sum((p.boxes for p in parts), ()), judge=first.judge, frame_size=first.frame_size)
