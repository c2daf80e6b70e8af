"""The count check on a GPU: the paper's judge (GroundingDINO Swin-T shapes, random weights built
here) on a whole Wan video while a Wan model is loaded, through the pack's own adapter
(nodes/counting.py, what NuminaCountCheck and NuminaCheckedSampler run).

It measures seconds for the video, the detector's peak memory above what was allocated before,
and whether the Wan model's memory is left as it was found (the model still loaded by ComfyUI,
the same bytes allocated after the check as before, the detector back on its offload device).

    python benchmarks/gpu_detector_check.py --comfyui .gpu_bundle/ComfyUI          # a CUDA GPU: 1.3B, 81 x 480p
    .numina_env/venv/bin/python benchmarks/gpu_detector_check.py --tiny --device cpu   # the CPU dry run

Writes a JSON to --json (default $OUT/gpu_detector_check.json when $OUT is set).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (HERE, ROOT, os.path.join(ROOT, "testing")):
    if p not in sys.path:
        sys.path.insert(0, p)

from gpu_check import MODELS, TINY_MODELS, Comfy, Device, MiB, random_wan_state_dict, wan_state_dict_shapes  # noqa: E402

PROMPT = "three red apples and two dogs on a table"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", ""))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny Wan and detector, 5 small frames (dry run)")
    parser.add_argument("--frames-per-batch", type=int, default=4)
    parser.add_argument("--json", default=os.path.join(os.environ["OUT"], "gpu_detector_check.json")
                        if os.environ.get("OUT") else "")
    args = parser.parse_args()
    if not args.comfyui:
        from numina_dev import comfy_runtime
        args.comfyui = comfy_runtime.comfyui_path()
    dev = Device(args.device)
    runtime = Comfy(args.comfyui, dev)
    mm = runtime.mm
    import comfy.sd

    spec = {**MODELS["1.3b"], **(TINY_MODELS["1.3b"] if args.tiny else {})}
    dtype = torch.float16 if dev.cuda else torch.float32
    wan = comfy.sd.load_diffusion_model_state_dict(
        random_wan_state_dict(wan_state_dict_shapes(spec), torch.device("cpu"), dtype))
    mm.load_models_gpu([wan])
    before = dev.allocated()
    loaded_before = [m.model for m in mm.current_loaded_models]

    from numina_dev.tiny_grounding_dino import build_tiny_grounding_dino
    detector = runtime._pack_module("numina_ops.detector")
    with tempfile.TemporaryDirectory(prefix="numina_gpu_dino_") as folder:
        build_tiny_grounding_dino(folder, real_shapes=not args.tiny)
        counter = detector.load_grounding_dino(folder, frames_per_batch=args.frames_per_batch)
    records = runtime._pack_module("numina_ops.records")
    targets = runtime._pack_module("numina_ops.prompt").parse_targets(PROMPT)
    frames_n = 1 + 4 * ((spec["length"] - 1) // 4)
    grid = records.TokenGrid((frames_n - 1) // 4 + 1, spec["height"] // 16, spec["width"] // 16)
    layout = records.Layout(grid=grid, targets=targets, nouns=(), model_family="wan21")
    frames = torch.rand(frames_n, spec["height"], spec["width"], 3, generator=torch.Generator().manual_seed(0))
    run_counter = runtime._pack_module("nodes.counting").run_counter

    base = dev.reset_peak()            # no warm-up: the first check is what a user pays
    started = time.perf_counter()
    check = run_counter(frames, layout, counter)
    dev.sync()
    seconds = time.perf_counter() - started
    peak = dev.peak()
    after = dev.allocated()
    still_loaded = [m for m in mm.current_loaded_models if m.model is wan]
    if not loaded_before:
        print("gpu_detector_check: note: ComfyUI lists no loaded model on this device (nothing to keep)")
    result = {
        "device": torch.cuda.get_device_name(0) if dev.cuda else "cpu", "tiny": args.tiny,
        "video": f"{frames_n} frames of {spec['width']}x{spec['height']}", "nouns": list(check.nouns),
        "frames_per_batch": args.frames_per_batch, "seconds": round(seconds, 2),
        "seconds_per_frame": round(seconds / frames_n, 4),
        "detector_peak_mib_above_before": None if peak is None else round((peak - base) / MiB),
        "wan_allocated_mib_before": None if before is None else round(before / MiB),
        "allocated_mib_after": None if after is None else round(after / MiB),
        "wan_memory_as_found": (before == after) if dev.cuda else None,
        "wan_loaded_before": any(m is wan for m in loaded_before),
        "wan_still_loaded": bool(still_loaded),
        "detector_back_on": str(next(counter.model.parameters()).device),
        "boxes": sum(len(b) for f in check.boxes for b in f),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
