"""NUMINA GPU check: the pack on real-shape Wan models, through ComfyUI's own loader and sampler.

One command for maintainers (and for anyone with a CUDA card and a ComfyUI):

    scripts/gpu_check.sh                       # bundle (.gpu_bundle/) or $COMFYUI_PATH
    python benchmarks/gpu_check.py --models 1.3b --steps 4 --json out.json   # with ComfyUI importable
    python benchmarks/gpu_check.py --tiny --device cpu                      # the dry run (tiny shapes)

What it does, each section timed, each failure caught, printed with its traceback, recorded and
followed by the next section (a crash of the pack on CUDA is a result):

1. Micro-benchmarks at Wan2.1-1.3B 480p shapes (L 32,760 video tokens, 12 heads x 128, context
   512) and Wan2.1-14B 720p shapes (L 75,600, 40 heads x 128):
   - one guided cross-attention call (`numina_ops.modulation.guided_cross_attention`, plan from
     `build_bias_plan` on a layout with ~8% of the rows biased: removed, added beside an instance,
     added into an empty frame) per form against one plain SDPA call, bf16 and fp16, best of N
     with CUDA events; each form's max abs error against an fp32 reference computed independently
     in float32 from the same inputs (the README's bias rules), and whether the rows without bias
     are bit-identical to plain attention (torch.equal);
   - the same call through the pack's attention override as the Wan model makes it (a
     cond + uncond batch through ComfyUI's `optimized_attention` with the patched MODEL's
     transformer_options), against the plain `optimized_attention` call;
   - the capture reads (`numina_ops.capture.read_self_attention` / `read_cross_attention`, one
     cond row) at 1.3B 480p, 14B 480p and 14B 720p (21 x 45 x 80 tokens) shapes: time, extra peak
     memory, and their time as a % of the reference steps measured for the model.
2. Per model (Wan2.1 T2V 1.3B at 832x480x81, Wan2.2 TI2V 5B at 1280x704x121, Wan2.1 T2V 14B at
   832x480x81): random weights of real shape built on the device (normal x 0.02, norms at 1), loaded
   with `comfy.sd.load_diffusion_model_state_dict` (ComfyUI's detection, dtype and sampler), then
   euler, CFG 5, `--steps` steps, side by side in one process: the plain pass, the capture
   (NuminaAttentionCapture), layout + refinement, and a guided pass per bias form
   (NuminaCrossAttnGuide then the same sampler call); per-step times with torch.cuda.synchronize,
   guided / plain ratios, `max_memory_allocated` peak per phase (reset between phases).
   Random weights read arbitrary counts: when the refined layout needs no edit, the capture is
   redone with `count_override` = the count read + 2 so the guide has work; if it still needs none,
   the output says so loudly and the guided passes use a synthetic layout (labelled as such).

Results: readable tables (at the end, and per section as they come) and JSON at `--json`
(default $OUT/gpu_check.json when $OUT is set, else benchmarks/results/gpu_check.json), rewritten after every
section so a timeout still leaves partial results.  `--budget-s` skips the sections that would
not fit in the time left.

The pack is used only through its public entry points: the node classes' `execute`, and
`numina_ops.capture.read_self_attention` / `read_cross_attention`,
`numina_ops.modulation.build_bias_plan` / `guided_cross_attention` / `strength` (plus the
`numina_ops.records` constructors for the synthetic layouts).  ComfyUI comes from $COMFYUI_PATH
(or `--comfyui`); the pack is loaded from this repository with ComfyUI's own custom-node loader.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import inspect
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Optional

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 2 ** 20
GiB = 2 ** 30

PROMPT = "three red apples on a table"    # --prompt; words of the tiny umT5's vocabulary
NEGATIVE = ""
NOUN = "apples"
SEED = 0
CFG = 5.0
SAMPLER, SCHEDULER = "euler", "simple"
TEXT_ENCODER_FILE = "numina_tiny_umt5.safetensors"

# Real shapes.  Heads: ComfyUI's detection sets num_heads = dim // 128, checked below.
# prior_step_s: plain seconds per step on an H200 in fp16 (GPU.md, 2026-11-28), used only to plan
# the budget until the model's own plain pass has been measured; prior_load_s: build + load + first
# transfer to the GPU, a guess.
MODELS: dict[str, dict[str, Any]] = {
    "1.3b": dict(label="Wan2.1 T2V 1.3B", config="WAN21_T2V", family_hint="wan21", dim=1536, ffn=8960,
                 layers=30, heads=12, channels=16, stride=8, width=832, height=480, length=81, steps=8,
                 prior_step_s=1.2, prior_load_s=15.0),
    "5b": dict(label="Wan2.2 TI2V 5B", config="WAN22_T2V", family_hint="wan22_ti2v", dim=3072, ffn=14336,
               layers=30, heads=24, channels=48, stride=16, width=1280, height=704, length=121, steps=4,
               prior_step_s=2.0, prior_load_s=30.0),
    "14b": dict(label="Wan2.1 T2V 14B", config="WAN21_T2V", family_hint="wan21", dim=5120, ffn=13824,
                layers=40, heads=40, channels=16, stride=8, width=832, height=480, length=81, steps=4,
                prior_step_s=6.3, prior_load_s=60.0),
}
# --tiny: the same code paths at shapes a CPU runs in seconds.
TINY_MODELS: dict[str, dict[str, Any]] = {
    "1.3b": dict(dim=256, ffn=512, layers=2, heads=2, width=128, height=128, length=5, prior_step_s=0.2, prior_load_s=2.0),
    "5b": dict(dim=256, ffn=512, layers=2, heads=2, width=256, height=256, length=5, prior_step_s=0.3, prior_load_s=2.0),
    "14b": dict(dim=384, ffn=768, layers=3, heads=3, width=128, height=96, length=9, prior_step_s=0.3, prior_load_s=2.0),
}

# Micro-benchmark shapes: (frames, height, width) tokens, heads, head dim, context.
ATTN_SHAPES = {
    "1.3B 480p": dict(grid=(21, 30, 52), heads=12, head_dim=128, context=512),
    "14B 720p": dict(grid=(21, 45, 80), heads=40, head_dim=128, context=512),
}
TINY_ATTN_SHAPES = {
    "1.3B 480p": dict(grid=(2, 8, 8), heads=2, head_dim=64, context=64),
    "14B 720p": dict(grid=(3, 10, 12), heads=3, head_dim=64, context=64),
}
# Capture reads: shape, and the model whose measured step time it is compared with.
CAPTURE_SHAPES = {
    "1.3B 480p": dict(grid=(21, 30, 52), heads=12, head_dim=128, context=512, model="1.3b", tokens_ratio=1.0),
    "14B 480p": dict(grid=(21, 30, 52), heads=40, head_dim=128, context=512, model="14b", tokens_ratio=1.0),
    "14B 720p": dict(grid=(21, 45, 80), heads=40, head_dim=128, context=512, model="14b", tokens_ratio=75600 / 32760),
}
TINY_CAPTURE_SHAPES = {
    "1.3B 480p": dict(grid=(2, 8, 8), heads=2, head_dim=64, context=64, model="1.3b", tokens_ratio=1.0),
    "14B 480p": dict(grid=(3, 6, 8), heads=3, head_dim=64, context=64, model="14b", tokens_ratio=1.0),
    "14B 720p": dict(grid=(3, 10, 12), heads=3, head_dim=64, context=64, model="14b", tokens_ratio=120 / 48),
}
BIASED_FRACTION = 0.08
OVERRIDE_NOTE = ("the override left the biased rows unbiased when called outside a model forward (this pack "
                 "version takes the step / strength from its own per-forward wrapper): its time here is only the "
                 "pass-through cost; the guided passes measure the real cost")
DELTA_STEP = (0, 50)   # strength at step 0 of 50: the strongest published bias (1.75)


# =============================================================================== small helpers

def now() -> float:
    return time.perf_counter()


def fmt_s(x: Optional[float]) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def fmt_ms(x: Optional[float]) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}")


def fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def mib(x: Optional[float]) -> str:
    """' +N MiB' (extra peak memory), nothing where it is not measured (the CPU)."""
    return "" if x is None else f" +{x:.0f}MiB"


def fmt_e(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1e}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"   # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def live_row(text: str, first: bool) -> None:
    """Print a one-row table as it comes: with its header for the first row, else the row alone."""
    say(text if first else text.splitlines()[-1])


def banner(text: str) -> None:
    say("\n" + "=" * 100 + f"\n{text}\n" + "=" * 100)


def loud(text: str) -> None:
    say("\n" + "!" * 100 + f"\n!!! {text}\n" + "!" * 100 + "\n")


class Device:
    """Synchronisation, timing and peak memory on the chosen device (CUDA or the CPU)."""

    def __init__(self, name: str) -> None:
        self.torch_device = torch.device(name)
        self.cuda = self.torch_device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.torch_device)

    def reset_peak(self) -> int:
        """Reset the peak counter; returns the bytes allocated now (the phase's baseline)."""
        if not self.cuda:
            return 0
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.torch_device)
        return torch.cuda.memory_allocated(self.torch_device)

    def peak(self) -> Optional[int]:
        if not self.cuda:
            return None
        self.sync()
        return torch.cuda.max_memory_allocated(self.torch_device)

    def allocated(self) -> Optional[int]:
        return torch.cuda.memory_allocated(self.torch_device) if self.cuda else None

    def best_of(self, fn: Callable[[], Any], n: int, warmup: int = 1) -> tuple[float, Any]:
        """Best time in ms over n calls (CUDA events on the GPU), after `warmup` calls."""
        out = None
        for _ in range(warmup):
            out = fn()
        self.sync()
        best = math.inf
        for _ in range(n):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = fn()
                end.record()
                end.synchronize()
                best = min(best, start.elapsed_time(end))
            else:
                t0 = now()
                out = fn()
                best = min(best, (now() - t0) * 1000)
        return best, out

    def extra_peak(self, fn: Callable[[], Any]) -> tuple[Any, Optional[float]]:
        """Run fn once; extra peak memory over what was allocated before, in MiB."""
        base = self.reset_peak()
        out = fn()
        peak = self.peak()
        return out, (None if peak is None else (peak - base) / MiB)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


class Budget:
    def __init__(self, seconds: float) -> None:
        self.t0 = now()
        self.seconds = seconds

    def elapsed(self) -> float:
        return now() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, estimate_s: float) -> bool:
        return estimate_s <= self.left()


class PackLog(logging.Handler):
    """Collects what the pack logs (logger "numina": e.g. how many cross-attention calls a guided
    run biased) so each pass can record it."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        logger = logging.getLogger("numina")
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.levelname}: {record.getMessage()}")
        except Exception:
            pass

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


PACK_LOG: Optional[PackLog] = None


def pack_log() -> list[str]:
    return PACK_LOG.take() if PACK_LOG is not None else []


class Recorder:
    """Results in one JSON document, rewritten after every section."""

    def __init__(self, path: str, meta: dict) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "sections": [], "micro": {}, "models": {}}
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self.flush()

    def flush(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.data, fh, indent=1, default=_json_default)
        os.replace(tmp, self.path)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 64 else f"tensor{tuple(value.shape)}"
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


class Runner:
    """Runs named sections: times them, catches and records failures, honours the budget."""

    def __init__(self, recorder: Recorder, budget: Budget) -> None:
        self.recorder = recorder
        self.budget = budget

    def section(self, name: str, estimate_s: float, fn: Callable[[], Any], record: Optional[dict] = None) -> Any:
        entry: dict[str, Any] = {"name": name, "estimate_s": round(estimate_s, 1)}
        self.recorder.data["sections"].append(entry)
        left = self.budget.left()
        if not self.budget.allows(estimate_s):
            entry.update(status="skipped", why=f"budget: about {estimate_s:.0f} s needed, {left:.0f} s left")
            say(f"--- {name}: SKIPPED (budget: about {estimate_s:.0f} s needed, {left:.0f} s left)")
            if record is not None:
                record["status"] = "skipped (budget)"
            self.recorder.flush()
            return None
        say(f"--- {name} (estimate {estimate_s:.0f} s, {left:.0f} s of budget left)")
        t0 = now()
        try:
            value = fn()
            entry["status"] = "ok"
            if record is not None:
                record.setdefault("status", "ok")
            return value
        except Exception as error:  # a failure is a result: record it and go on
            tb = traceback.format_exc()
            entry.update(status="error", error=f"{type(error).__name__}: {error}", traceback=tb)
            if record is not None:
                record["status"] = "error"
                record["error"] = f"{type(error).__name__}: {error}"
                record["traceback"] = tb
            say(f"!!! {name} FAILED: {type(error).__name__}: {error}\n{tb}")
            return None
        finally:
            entry["elapsed_s"] = round(now() - t0, 3)
            say(f"--- {name}: {entry.get('status', '?')} in {entry['elapsed_s']:.1f} s "
                f"(total {self.budget.elapsed():.0f} s)")
            self.recorder.flush()


# =============================================================================== ComfyUI and the pack

class Comfy:
    """ComfyUI imported in-process (the way main.py and the tests do), the pack loaded by
    ComfyUI's own custom-node loader from this repository."""

    def __init__(self, comfyui: str, device: Device) -> None:
        self.path = os.path.abspath(comfyui)
        if not os.path.exists(os.path.join(self.path, "comfy", "model_management.py")):
            raise RuntimeError(f"{self.path} is not a ComfyUI folder (no comfy/model_management.py); "
                               "set COMFYUI_PATH or --comfyui")
        if self.path not in sys.path:
            sys.path.insert(0, self.path)
        import comfy.options
        comfy.options.enable_args_parsing(False)
        import comfy.cli_args
        comfy.cli_args.args.cpu = not device.cuda
        comfy.cli_args.args.disable_api_nodes = True
        import utils.extra_config  # noqa: F401  (before nodes: nodes.py reorders sys.path)
        import comfy.model_management as mm
        import comfy.utils
        comfy.utils.PROGRESS_BAR_ENABLED = False     # no progress bars in the log
        import nodes
        self.mm = mm
        self.nodes = nodes
        init_apis = getattr(nodes, "init_public_apis", None)
        if init_apis is not None:
            asyncio.run(init_apis())
        before = set(nodes.NODE_CLASS_MAPPINGS)
        ok = asyncio.run(nodes.load_custom_node(ROOT, module_parent="custom_nodes"))
        # the testing pack: NuminaTinyTextEncoderLoader (the pack users install does not have it)
        ok = asyncio.run(nodes.load_custom_node(os.path.join(ROOT, "testing", "numina_testing"),
                                                module_parent="custom_nodes")) and ok
        needed = ["NuminaAttentionCapture", "NuminaLayoutInfer", "NuminaLayoutRefine", "NuminaCrossAttnGuide",
                  "NuminaTinyTextEncoderLoader"]
        missing = [n for n in needed if n not in nodes.NODE_CLASS_MAPPINGS]
        if not ok or missing:
            raise RuntimeError(f"the NUMINA pack or its testing pack did not load from {ROOT} (missing nodes {missing}); "
                               "see the log above")
        self.new_nodes = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
        self.node = {n: nodes.NODE_CLASS_MAPPINGS[n] for n in needed}
        module = inspect.getmodule(self.node["NuminaCrossAttnGuide"]).__name__
        self.pack = module.rsplit(".nodes.", 1)[0]
        self.capture_ops = self._pack_module("numina_ops.capture")
        self.modulation = self._pack_module("numina_ops.modulation")
        self.records = self._pack_module("numina_ops.records")
        self.patch = self._pack_module("nodes.attention_patch")
        try:
            import comfyui_version
            self.version = comfyui_version.__version__
        except Exception:
            self.version = "unknown"
        self.torch_device = str(mm.get_torch_device())

    def _pack_module(self, name: str):
        """The pack's own module (the copy its nodes use: records must be the same classes)."""
        import importlib
        full = f"{self.pack}.{name}"
        return sys.modules.get(full) or importlib.import_module(full)

    # -- text ----------------------------------------------------------------------------------
    def tiny_clip(self):
        """The repo's tiny umT5 test text encoder: the file from models/text_encoders when there,
        else built here into a temporary folder (deterministic, about 1-2 s)."""
        import folder_paths
        loader = self.node["NuminaTinyTextEncoderLoader"]
        if TEXT_ENCODER_FILE not in folder_paths.get_filename_list("text_encoders"):
            say(f"{TEXT_ENCODER_FILE} not in models/text_encoders: building it (scripts/make_fixtures.py's recipe)")
            sys.path[:0] = [ROOT, os.path.join(ROOT, "testing")]   # any python, not only the venv
            from scripts import make_fixtures
            import safetensors.torch
            state = inspect.getmodule(loader).init_tiny_state_dict(make_fixtures.train_vocabulary())
            folder = tempfile.mkdtemp(prefix="numina_gpu_check_")
            safetensors.torch.save_file(state, os.path.join(folder, TEXT_ENCODER_FILE))
            folder_paths.add_model_folder_path("text_encoders", folder)
        return loader.execute(TEXT_ENCODER_FILE).result[0]

    def encode(self, clip, text: str):
        return self.nodes.CLIPTextEncode().encode(clip, text)[0]

    # -- models ----------------------------------------------------------------------------------
    def unload_all(self) -> None:
        self.mm.unload_all_models()
        self.mm.soft_empty_cache()


# =============================================================================== random Wan weights

def wan_state_dict_shapes(spec: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every key and shape of ComfyUI's own WanModel for this config (built on the meta device)."""
    import comfy.ldm.wan.model as wan_model
    import comfy.ops
    with torch.device("meta"):
        model = wan_model.WanModel(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=spec["channels"],
                                   dim=spec["dim"], ffn_dim=spec["ffn"], freq_dim=256, text_dim=4096,
                                   out_dim=spec["channels"], num_heads=spec["heads"], num_layers=spec["layers"],
                                   window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6,
                                   operations=comfy.ops.disable_weight_init)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def check_detection_keys(spec: dict, shapes: dict) -> list[str]:
    """The keys comfy/model_detection.py reads for Wan, with the shapes that give the intended
    config (dim, out_dim, ffn_dim, in_dim, block count, t2v: no img_emb); problems as text."""
    d, c = spec["dim"], spec["channels"]
    expect = {
        "head.modulation": (1, 2, d),                        # dim = shape[-1]; Wan 2.1 marker key
        "head.head.weight": (c * 4, d),                      # out_dim = shape[0] // 4 (48 -> WAN22_T2V)
        "blocks.0.ffn.0.weight": (spec["ffn"], d),           # ffn_dim
        "patch_embedding.weight": (d, c, 1, 2, 2),           # in_dim = shape[1]
        "text_embedding.0.weight": (d, 4096),
        "blocks.0.self_attn.q.weight": (d, d),
        "blocks.0.cross_attn.k.weight": (d, d),
        "blocks.0.modulation": (1, 6, d),
    }
    problems = [f"{k}: {shapes.get(k, (None,))[0]} != {v}" for k, v in expect.items() if shapes.get(k, (None,))[0] != v]
    blocks = {k.split(".")[1] for k in shapes if k.startswith("blocks.")}
    if len(blocks) != spec["layers"]:
        problems.append(f"{len(blocks)} blocks, expected {spec['layers']}")
    if d // 128 != spec["heads"]:
        problems.append(f"detection sets heads = dim // 128 = {d // 128}, the spec says {spec['heads']}")
    if any(k.startswith("img_emb.") for k in shapes):
        problems.append("img_emb.* present: would be detected as i2v")
    return problems


def random_wan_state_dict(shapes: dict, device: torch.device, dtype: torch.dtype, seed: int = 0) -> dict:
    """Random weights made on the device: normal x 0.02 (modulations too), norm weights 1, biases 0."""
    gen = torch.Generator(device=device).manual_seed(seed)
    sd = {}
    for name, (shape, _) in shapes.items():
        if name.endswith(".bias"):
            sd[name] = torch.zeros(shape, device=device, dtype=dtype)
        elif len(shape) == 1 and ("norm" in name):
            sd[name] = torch.ones(shape, device=device, dtype=dtype)
        else:
            sd[name] = torch.randn(shape, device=device, dtype=dtype, generator=gen).mul_(0.02)
    return sd


# =============================================================================== synthetic layouts

def synthetic_labels(grid: tuple[int, int, int], fraction: float = BIASED_FRACTION) -> torch.Tensor:
    """[F, H, W] labels with about `fraction` of the tokens biased: per frame a removed instance
    (-1) and an added one (100) of equal size; odd frames also hold an existing instance (1), so
    the added one is 'matched' there and 'boosted' (empty frame) in even frames."""
    f, h, w = grid
    side = max(1, round(math.sqrt(fraction * h * w / 2)))
    side = min(side, max(1, (h - 2) // 2), max(1, (w - 2) // 2))
    labels = torch.zeros(f, h, w, dtype=torch.int32)
    labels[:, 1:1 + side, 1:1 + side] = -1                              # removed
    labels[:, h - 1 - side:h - 1, 1:1 + side] = 100                     # added
    labels[1::2, 1:1 + side, w - 1 - side:w - 1] = 1                    # existing (odd frames)
    return labels


def synthetic_layout(comfy: Comfy, grid: tuple[int, int, int], family: str, columns=(2, 3),
                     sigmas: Optional[torch.Tensor] = None):
    R = comfy.records
    labels = synthetic_labels(grid)
    tg = R.TokenGrid(*grid)
    targets = R.Targets(PROMPT, (R.CountTarget(NOUN, 3, (PROMPT.index(NOUN), PROMPT.index(NOUN) + len(NOUN))),))
    counts = tuple(int(((labels[i] == 1).any()).item()) + 1 for i in range(grid[0]))
    noun = R.NounLayout(NOUN, 3, tuple(columns), labels, counts=counts)
    meta = {} if sigmas is None else {"sigmas": sigmas}
    return R.Layout(tg, targets, (noun,), refined=True, model_family=family, meta=meta), labels


def reference_fp32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, labels: torch.Tensor,
                   columns: tuple[int, ...], delta: float, chunk: int = 8192) -> torch.Tensor:
    """Guided cross-attention of one row [1, L, C] in float32, written from the README's rules
    (independent of the pack's code): removed -10 delta, added into an empty frame +0.8 delta,
    added beside an instance: head-mean logit set to delta * m_ref (m_ref: mean scaled logit over
    heads, the frame's smallest instance's pixels and the noun's tokens), on the noun's columns."""
    f, h, w = labels.shape
    n = h * w
    L, C = q.shape[1], q.shape[2]
    d = C // heads
    scale = d ** -0.5
    qf = q[0].float().reshape(L, heads, d).transpose(0, 1)           # [h, L, d]
    kf = k[0].float().reshape(-1, heads, d).transpose(0, 1)          # [h, ctx, d]
    vf = v[0].float().reshape(-1, heads, d).transpose(0, 1)
    cols = torch.tensor(columns, device=q.device)
    flat = labels.reshape(f, n).to(q.device)
    bias = torch.zeros(L, len(columns), device=q.device, dtype=torch.float32)
    kc = kf[:, cols]                                                   # [h, T, d]
    for i in range(f):
        frame = flat[i]
        off = i * n
        removed = torch.nonzero(frame == -1).flatten() + off
        bias[removed] = -10.0 * delta
        added = torch.nonzero(frame >= 100).flatten() + off
        if added.numel() == 0:
            continue
        existing = frame[(frame >= 1) & (frame < 100)]
        if existing.numel() == 0:
            bias[added] = 0.8 * delta
            continue
        ids, sizes = torch.unique(existing, return_counts=True)
        ref = int(ids[int(torch.argmin(sizes))])
        ref_rows = torch.nonzero(frame == ref).flatten() + off
        m_ref = ((qf[:, ref_rows] @ kc.transpose(-1, -2)) * scale).mean()
        head_mean = ((qf[:, added] @ kc.transpose(-1, -2)) * scale).mean(dim=0)   # [r, T]
        bias[added] = delta * m_ref - head_mean
    out = torch.empty(heads, L, d, device=q.device, dtype=torch.float32)
    for r0 in range(0, L, chunk):
        r1 = min(L, r0 + chunk)
        logits = (qf[:, r0:r1] @ kf.transpose(-1, -2)) * scale                     # [h, r, ctx]
        logits[:, :, cols] += bias[r0:r1][None]
        out[:, r0:r1] = torch.softmax(logits, dim=-1) @ vf
    return out.transpose(0, 1).reshape(1, L, C)


def attention_inputs(shape: dict, dtype: torch.dtype, device: torch.device, batch: int = 1, seed: int = 0):
    """q [B, L, C] and text k, v [B, ctx, C] like Wan's (q, k RMS-normed: unit scale; the text's
    zero padding after the prompt gives identical keys and values)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    f, h, w = shape["grid"]
    C = shape["heads"] * shape["head_dim"]
    q = torch.randn(batch, f * h * w, C, device=device, dtype=dtype, generator=gen)
    k = torch.randn(batch, shape["context"], C, device=device, dtype=dtype, generator=gen)
    v = torch.randn(batch, shape["context"], C, device=device, dtype=dtype, generator=gen)
    pad = min(20, shape["context"] - 1)
    k[:, pad:] = k[:, pad:pad + 1]
    v[:, pad:] = v[:, pad:pad + 1]
    return q, k, v


# =============================================================================== micro-benchmarks

BIAS_RULE = {"rule": "calibrated"}    # set from --bias-rule in main()

def micro_guided_attention(comfy: Comfy, dev: Device, shapes: dict, dtypes: list[torch.dtype], repeats: int,
                           rows: list) -> None:
    """One guided call per form vs one plain SDPA call, one cond row; errors vs fp32; bit-identity."""
    M = comfy.modulation
    F = torch.nn.functional
    delta = M.strength(*DELTA_STEP)
    for name, shape in shapes.items():
        layout, labels = synthetic_layout(comfy, shape["grid"], "wan21")
        plan = M.build_bias_plan(layout, rule=BIAS_RULE["rule"])
        L = layout.grid.tokens
        biased = plan.rows.to(dev.torch_device)
        unbiased = torch.ones(L, dtype=torch.bool, device=dev.torch_device)
        unbiased[biased] = False
        heads = shape["heads"]
        for dtype in dtypes:
            row: dict[str, Any] = {"shape": name, "dtype": str(dtype).replace("torch.", ""), "tokens": L,
                                   "heads": heads, "biased_fraction": round(biased.numel() / L, 4), "delta": delta}
            rows.append(row)
            try:
                q, k, v = attention_inputs(shape, dtype, dev.torch_device)
                split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)   # noqa: E731

                def plain():
                    o = F.scaled_dot_product_attention(split(q), split(k), split(v))
                    return o.transpose(1, 2).reshape(q.shape)

                row["plain_ms"], plain_out = dev.best_of(plain, repeats)
                _, row["plain_extra_peak_mib"] = dev.extra_peak(plain)
                ref = reference_fp32(q, k, v, heads, labels, (2, 3), delta)
                plain_ref = reference_fp32(q, k, v, heads, torch.zeros_like(labels), (2, 3), 0.0)
                row["plain_max_err_vs_fp32"] = float((plain_out.float() - plain_ref).abs().max())
                for form in M.FORMS:
                    try:
                        prepared = M.prepare_plan(plan, q.device)      # once per run, as the guide does
                        call = lambda form=form: M.guided_cross_attention(q, k, v, heads, prepared, delta, form=form)  # noqa: E731
                        ms, out = dev.best_of(call, repeats)
                        _, extra = dev.extra_peak(call)
                        err = (out.float() - ref).abs()
                        row[form] = {
                            "ms": ms, "x_plain": ms / row["plain_ms"], "extra_peak_mib": extra,
                            "max_err_vs_fp32": float(err.max()),
                            "max_err_biased_rows": float(err[:, biased].max()) if biased.numel() else 0.0,
                            "unbiased_rows_equal_plain": bool(torch.equal(out[:, unbiased], plain_out[:, unbiased])),
                            "unbiased_max_diff": float((out[:, unbiased].float() - plain_out[:, unbiased].float()).abs().max()),
                            "finite": bool(torch.isfinite(out).all()),
                        }
                    except Exception as error:
                        row[form] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
                        say(f"!!! guided_cross_attention form={form} {name} {dtype} FAILED: {error}\n{row[form]['traceback']}")
                del q, k, v, plain_out, ref, plain_ref
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {error}"
                row["traceback"] = traceback.format_exc()
                say(f"!!! micro {name} {dtype} FAILED: {error}\n{row['traceback']}")
            dev.free()
            live_row(format_guided_rows([row]), len(rows) == 1)


def micro_override(comfy: Comfy, dev: Device, shapes: dict, dtypes: list[torch.dtype], repeats: int,
                   guide_model, rows: list) -> None:
    """The patched MODEL's attention override, called as Wan calls it (ComfyUI's optimized_attention,
    a [uncond, cond] batch, text cross-attention of block 0 at step 0 of 50), against the plain call."""
    import comfy.ldm.wan.model as wan_model
    attention = wan_model.optimized_attention
    guide = comfy.node["NuminaCrossAttnGuide"]
    schedule = torch.linspace(1.0, 0.0, DELTA_STEP[1] + 1, device=dev.torch_device)   # on the device, as in sampling
    for name, shape in shapes.items():
        layout, labels = synthetic_layout(comfy, shape["grid"], "wan21")
        L = layout.grid.tokens
        plan = comfy.modulation.build_bias_plan(layout)
        unbiased = torch.ones(L, dtype=torch.bool, device=dev.torch_device)
        unbiased[plan.rows.to(dev.torch_device)] = False
        heads = shape["heads"]
        for dtype in dtypes:
            row: dict[str, Any] = {"shape": name, "dtype": str(dtype).replace("torch.", ""), "tokens": L,
                                   "heads": heads, "attention": getattr(attention, "__name__", str(attention))}
            rows.append(row)
            try:
                q, k, v = attention_inputs(shape, dtype, dev.torch_device, batch=2)
                base = {"cond_or_uncond": [1, 0], "sigmas": schedule[DELTA_STEP[0]:DELTA_STEP[0] + 1],
                        "sample_sigmas": schedule, "block_index": 0}
                plain = lambda: attention(q, k, v, heads=heads, transformer_options=dict(base))   # noqa: E731
                row["plain_ms"], plain_out = dev.best_of(plain, repeats)
                ref = reference_fp32(q[1:], k[1:], v[1:], heads, labels, (2, 3), comfy.modulation.strength(*DELTA_STEP))
                for form in ("dense", "sparse", "fast", "auto"):
                    try:
                        patched, report = guide.execute(guide_model, layout, form).result
                        options = override_options(comfy, patched, base, layout.grid, k.shape[1])
                        call = lambda options=options: attention(q, k, v, heads=heads, transformer_options=options)  # noqa: E731
                        ms, out = dev.best_of(call, repeats)
                        _, extra = dev.extra_peak(call)
                        acted = not torch.equal(out[1][~unbiased], plain_out[1][~unbiased])
                        row[form] = {
                            "ms": ms, "x_plain": ms / row["plain_ms"], "extra_peak_mib": extra,
                            "report": report, "biasing": "biasing" in report, "acted": acted,
                            "uncond_row_equal_plain": bool(torch.equal(out[0], plain_out[0])),
                            "unbiased_cond_rows_equal_plain": bool(torch.equal(out[1][unbiased], plain_out[1][unbiased])),
                            "max_err_vs_fp32": float((out[1:].float() - ref).abs().max()),
                            "finite": bool(torch.isfinite(out).all()),
                        }
                    except Exception as error:
                        row[form] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
                        say(f"!!! override form={form} {name} {dtype} FAILED: {error}\n{row[form]['traceback']}")
                pack_log()
                if any(isinstance(row.get(f), dict) and row[f].get("acted") is False for f in ("dense", "sparse", "fast")):
                    row["note"] = OVERRIDE_NOTE
                    if not any(r.get("note") for r in rows[:-1]):
                        say("NOTE: " + row["note"])
                del q, k, v, plain_out, ref
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {error}"
                row["traceback"] = traceback.format_exc()
                say(f"!!! override {name} {dtype} FAILED: {error}\n{row['traceback']}")
            dev.free()
            live_row(format_override_rows([row]), len(rows) == 1)


def override_options(comfy: Comfy, patched, base: dict, grid, text_tokens: int) -> dict:
    """The transformer_options one attention call of a guided forward sees: what the pack's
    per-forward wrapper puts there (its chained override and the forward's context)."""
    patch = comfy.patch
    session = patch.session_of(patched)
    step, steps = DELTA_STEP
    forward = patch.ForwardContext(grid=grid, text_tokens=text_tokens, image_tokens=0, video_offset=0,
                                   cond=patch.cond_slices(base["cond_or_uncond"], 2), step=step, steps=steps,
                                   strength=session.strength_at(step, steps))
    options = dict(base)
    options[patch.FORWARD_KEY] = forward
    options["optimized_attention_override"] = session._chain(None)
    return options


def micro_capture_reads(comfy: Comfy, dev: Device, shapes: dict, dtype: torch.dtype, rows: list) -> None:
    """read_self_attention and read_cross_attention on one cond row: time, extra peak memory."""
    C = comfy.capture_ops
    # warm the kernels once at a small shape so the first timed read is not a cold start
    try:
        warm = dict(grid=(2, 4, 4), heads=2, head_dim=64, context=16)
        q, k, v = attention_inputs(warm, dtype, dev.torch_device)
        grid = comfy.records.TokenGrid(*warm["grid"])
        C.read_self_attention(q, q, 2, grid)
        C.read_cross_attention(q, k, 2, grid, {NOUN: (2,)})
    except Exception:
        pass
    for name, shape in shapes.items():
        row: dict[str, Any] = {"shape": name, "dtype": str(dtype).replace("torch.", ""),
                               "grid": list(shape["grid"]), "heads": shape["heads"], "model": shape["model"],
                               "tokens_ratio": shape["tokens_ratio"]}
        rows.append(row)
        grid = comfy.records.TokenGrid(*shape["grid"])
        try:
            q, k, v = attention_inputs(shape, dtype, dev.torch_device)
            kself = torch.randn_like(q)
            for kind, fn in (("self", lambda: C.read_self_attention(q, kself, shape["heads"], grid)),
                             ("cross", lambda: C.read_cross_attention(q, k, shape["heads"], grid, {NOUN: (2, 3)}))):
                try:
                    dev.sync()
                    t0 = now()
                    _, extra = dev.extra_peak(fn)
                    dev.sync()
                    row[kind] = {"s": now() - t0, "extra_peak_mib": extra}
                except Exception as error:
                    row[kind] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
                    say(f"!!! read_{kind}_attention {name} FAILED: {error}\n{row[kind]['traceback']}")
            if dev.cuda:        # the seeded sketch: the GPU must pick the CPU's heads (two frames, float32 inputs)
                try:
                    frames = [0, 1]
                    on_gpu = C.read_self_attention(q, kself, shape["heads"], grid, frames=frames).chosen_heads[frames]
                    on_cpu = C.read_self_attention(q.float().cpu(), kself.float().cpu(), shape["heads"], grid,
                                                   frames=frames).chosen_heads[frames]
                    row["same_heads_as_cpu"] = bool(torch.equal(on_gpu.cpu(), on_cpu))
                except Exception as error:
                    row["same_heads_as_cpu"] = f"error: {type(error).__name__}: {error}"
            del q, k, v, kself
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"
            row["traceback"] = traceback.format_exc()
        dev.free()
        live_row(format_capture_rows([row], {}), len(rows) == 1)


def tiny_wan_for_override(dev: Device, dtype: torch.dtype):
    """A small Wan2.1 MODEL (wan21 family): the guide node needs one to return the patched MODEL
    whose attention override the micro-benchmark calls (the override uses the call's heads)."""
    import comfy.sd
    spec = dict(MODELS["1.3b"], **TINY_MODELS["1.3b"])
    sd = random_wan_state_dict(wan_state_dict_shapes(spec), dev.torch_device, dtype)
    model = comfy.sd.load_diffusion_model_state_dict(sd)
    del sd
    return model


# =============================================================================== dtypes and offloading

MATRIX = [("fp16", "normal"), ("bf16", "normal"), ("fp8_e4m3fn", "normal"), ("fp16", "lowvram"), ("fp16", "novram")]
MATRIX_SIZE = dict(width=480, height=272, length=17, steps=4)       # small, so five loads fit a few seconds each
TINY_MATRIX_SIZE = dict(width=128, height=128, length=5, steps=3)


def dtype_offload_matrix(runtime: Comfy, dev: Device, args, clip, rows: list) -> None:
    """Both phases through the nodes on the 1.3B architecture with fp16, bf16 and fp8 weights
    (computing in fp16 / bf16) and with ComfyUI's offloading (--lowvram, --novram: the same
    vram_state those flags set), each: capture, layout, refine, guide, a guided sampling run."""
    import comfy.sample
    import comfy.sd
    mm = runtime.mm
    spec = dict(MODELS["1.3b"], **(TINY_MODELS["1.3b"] if args.tiny else {}))
    spec.update(TINY_MATRIX_SIZE if args.tiny else MATRIX_SIZE)
    weights = random_wan_state_dict(wan_state_dict_shapes(spec), dev.torch_device,
                                    torch.float16 if dev.cuda else torch.float32)
    positive, negative = runtime.encode(clip, args.prompt), runtime.encode(clip, NEGATIVE)
    frames = (spec["length"] - 1) // 4 + 1
    latent = {"samples": torch.zeros(1, 16, frames, spec["height"] // 8, spec["width"] // 8,
                                     device=mm.intermediate_device())}
    nodes_ = runtime.node
    for weight_dtype, vram in MATRIX:
        row: dict[str, Any] = {"weights": weight_dtype, "vram": vram}
        rows.append(row)
        before = mm.vram_state
        try:
            options = {} if weight_dtype == "fp16" else {
                "dtype": {"bf16": torch.bfloat16, "fp8_e4m3fn": torch.float8_e4m3fn}[weight_dtype]}
            model = comfy.sd.load_diffusion_model_state_dict(dict(weights), model_options=options)
            row["unet_dtype"] = str(model.model.get_dtype())
            row["compute_dtype"] = str(model.model.manual_cast_dtype or model.model.get_dtype())
            mm.vram_state = {"normal": before, "lowvram": mm.VRAMState.LOW_VRAM, "novram": mm.VRAMState.NO_VRAM}[vram]
            t0 = now()
            capture, _, _ = nodes_["NuminaAttentionCapture"].execute(
                model, clip, positive, negative, latent, SEED, spec["steps"], CFG, SAMPLER, SCHEDULER, args.prompt,
                "", -1, -1).result
            layout = nodes_["NuminaLayoutInfer"].execute(capture, args.layout_mode).result[0]
            refined = nodes_["NuminaLayoutRefine"].execute(layout).result[0]
            if refined.nouns and not refined.needs_guidance:
                override = f"{refined.nouns[0].noun}: {max(refined.nouns[0].counts) + 2}"
                capture, _, _ = nodes_["NuminaAttentionCapture"].execute(
                    model, clip, positive, negative, latent, SEED, spec["steps"], CFG, SAMPLER, SCHEDULER,
                    args.prompt, override, -1, -1).result
                refined = nodes_["NuminaLayoutRefine"].execute(
                    nodes_["NuminaLayoutInfer"].execute(capture, args.layout_mode).result[0]).result[0]
            row["capture_s"] = now() - t0
            row["read_counts"] = [list(n.counts) for n in layout.nouns]
            guided, report = nodes_["NuminaCrossAttnGuide"].execute(model, refined, "auto").result
            row["guide_report"] = report
            latent_image = comfy.sample.fix_empty_latent_channels(guided, latent["samples"])
            noise = comfy.sample.prepare_noise(latent_image, SEED, None)
            pack_log()
            t0 = now()
            samples = comfy.sample.sample(guided, noise, spec["steps"], CFG, SAMPLER, SCHEDULER, positive, negative,
                                          latent_image, denoise=1.0, disable_pbar=True, seed=SEED)
            dev.sync()
            row["guided_s"] = now() - t0
            row["pack_log"] = pack_log()
            row["finite"] = bool(torch.isfinite(samples).all())
            row["ok"] = row["finite"] and any("biased" in line and "no cross" not in line for line in row["pack_log"])
            del model, guided, samples
        except Exception as error:
            row["ok"] = False
            row["error"] = f"{type(error).__name__}: {error}"
            row["traceback"] = traceback.format_exc()
            say(f"!!! matrix {weight_dtype} {vram} FAILED: {error}\n{row['traceback']}")
        finally:
            mm.vram_state = before
            runtime.unload_all()
            dev.free()
        say(f"matrix | {weight_dtype:10s} | {vram:7s} | {'ok' if row.get('ok') else 'FAILED'} | "
            f"{row.get('compute_dtype', '?')} | {(row.get('pack_log') or [row.get('error', '')])[-1]}")
    del weights
    dev.free()


# =============================================================================== models

class ModelRun:
    def __init__(self, comfy: Comfy, dev: Device, runner: Runner, key: str, spec: dict, args, clip,
                 record: dict) -> None:
        self.comfy, self.dev, self.runner, self.key, self.spec, self.args = comfy, dev, runner, key, spec, args
        self.steps = spec["steps"]
        self.clip = clip
        self.record = record
        self.model = None
        self.step_s = spec["prior_step_s"]       # replaced by the measured plain s/step
        self.outputs: dict[str, torch.Tensor] = {}
        self.refined = None
        self.capture_record = None
        self.capture_sigmas = None

    # -- helpers ---------------------------------------------------------------------------------
    def latent(self) -> dict:
        s = self.spec
        shape = [1, s["channels"], (s["length"] - 1) // 4 + 1, s["height"] // s["stride"], s["width"] // s["stride"]]
        return {"samples": torch.zeros(shape, device=self.comfy.mm.intermediate_device())}

    def sample(self, model, steps: int) -> dict:
        """What nodes.KSampler does (common_ksampler), with a per-step timing callback."""
        import comfy.sample
        latent = self.latent_dict
        latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        noise = comfy.sample.prepare_noise(latent_image, SEED, None)
        marks: list[float] = []

        def callback(step, x0, x, total_steps):
            self.dev.sync()
            marks.append(now())

        base = self.dev.reset_peak()
        self.dev.sync()
        t0 = now()
        samples = comfy.sample.sample(model, noise, steps, CFG, SAMPLER, SCHEDULER, self.positive, self.negative,
                                      latent_image, denoise=1.0, callback=callback, disable_pbar=True, seed=SEED)
        self.dev.sync()
        total = now() - t0
        peak = self.dev.peak()
        step_times = [b - a for a, b in zip([t0] + marks[:-1], marks)]
        return {"samples": samples, "total_s": total, "step_s": step_times,
                "median_step_s": statistics.median(step_times) if step_times else None,
                "peak_gib": None if peak is None else peak / GiB,
                "extra_peak_gib": None if peak is None else (peak - base) / GiB,
                "finite": bool(torch.isfinite(samples).all()),
                "samples_std": float(samples.float().std())}

    @staticmethod
    def public(result: dict) -> dict:
        return {k: v for k, v in result.items() if k != "samples"}

    # -- phases ----------------------------------------------------------------------------------
    def run(self) -> None:
        r, s, steps = self.runner, self.spec, self.steps
        label = f"{s['label']} {s['width']}x{s['height']}x{s['length']}"
        banner(f"model {self.key}: {label}")
        self.record.update(label=label, steps=steps, cfg=CFG, sampler=SAMPLER, scheduler=SCHEDULER, seed=SEED,
                           prompt=self.args.prompt, spec={k: v for k, v in s.items() if not k.startswith("prior")})
        # whole model must at least load and run a plain pass
        need = s["prior_load_s"] + (steps + 1) * s["prior_step_s"]
        if not r.budget.allows(need):
            self.record["status"] = "skipped (budget)"
            say(f"--- model {self.key}: SKIPPED (budget: about {need:.0f} s for load + plain pass, "
                f"{r.budget.left():.0f} s left)")
            return
        if r.section(f"{self.key}: build random weights + load through ComfyUI", s["prior_load_s"] * 0.6,
                     self.load, self.record.setdefault("load", {})) is None:
            return
        if r.section(f"{self.key}: text conditioning", 5, self.text, self.record.setdefault("text", {})) is None:
            return
        if r.section(f"{self.key}: warm-up (1 step; moves the weights to the device)",
                     s["prior_load_s"] * 0.4 + 2 * s["prior_step_s"], self.warmup,
                     self.record.setdefault("warmup", {})) is None:
            return
        if r.section(f"{self.key}: plain pass ({steps} steps)", steps * self.step_s * 1.1 + 2, self.plain,
                     self.record.setdefault("plain", {})) is None:
            return
        ref_steps = max(0, min(steps - 1, round(steps * 20 / 50))) + 1
        captured = r.section(f"{self.key}: capture (NuminaAttentionCapture)",
                             ref_steps * self.step_s * 1.2 + 5, lambda: self.capture(""),
                             self.record.setdefault("capture", {}))
        layout_record = self.record.setdefault("layout", {})
        if captured is not None:
            r.section(f"{self.key}: layout + refine", 10, self.layout, layout_record)
        if self.refined is not None and not self.refined.needs_guidance and self.refined.nouns:
            read = layout_record.get("read_counts") or [0]
            override = f"{self.refined.nouns[0].noun}: {max(read) + 2}"
            say(f"the refined layout needs no edit (read {read}); capturing again with count_override '{override}'")
            if r.section(f"{self.key}: capture again with count_override '{override}'",
                         ref_steps * self.step_s * 1.2 + 5, lambda: self.capture(override),
                         self.record.setdefault("capture_override", {})) is not None:
                r.section(f"{self.key}: layout + refine (override)", 10, self.layout,
                          self.record.setdefault("layout_override", {}))
        layout = self.refined
        if layout is None or not layout.needs_guidance:
            why = ("the capture failed" if layout is None else
                   "the refined layout still needs no guidance after the override")
            loud(f"{self.key}: {why}: the guide has nothing to bias on the real layout. The guided passes below use "
                 f"a SYNTHETIC layout (~{BIASED_FRACTION:.0%} of the rows biased) so their cost is still measured.")
            self.record["guided_layout"] = f"synthetic ({why})"
            try:
                family = self.family()
                layout, _ = synthetic_layout(self.comfy, self.grid(), family, sigmas=self.capture_sigmas)
            except Exception as error:
                self.record["guided_layout_error"] = f"{type(error).__name__}: {error}"
                say(f"!!! could not build the synthetic layout: {error}\n{traceback.format_exc()}")
                return
        else:
            self.record["guided_layout"] = "refined (from the capture)"
        try:
            plan = self.comfy.modulation.build_bias_plan(layout)
            self.record["biased_rows_fraction"] = round(plan.rows.numel() / layout.grid.tokens, 4)
        except Exception as error:
            self.record["biased_rows_fraction"] = f"error: {error}"
        guided = self.record.setdefault("guided", {})
        measured: dict[str, str] = {}
        for form in self.args.forms:
            entry = guided.setdefault(form, {})
            r.section(f"{self.key}: guided pass, bias_form {form}", steps * self.step_s * 1.3 + 3,
                      lambda form=form, entry=entry: self.guided(form, layout, entry, measured), entry)
        self.compare_forms()

    def family(self) -> str:
        """The model family the guide expects (the capture's when there is one)."""
        if self.record.get("capture", {}).get("model_family"):
            return self.record["capture"]["model_family"]
        return self.spec["family_hint"]

    def grid(self) -> tuple[int, int, int]:
        s = self.spec
        return ((s["length"] - 1) // 4 + 1, s["height"] // s["stride"] // 2, s["width"] // s["stride"] // 2)

    def load(self) -> None:
        import comfy.sd
        rec = self.record["load"]
        shapes = wan_state_dict_shapes(self.spec)
        problems = check_detection_keys(self.spec, shapes)
        rec["detection_key_problems"] = problems
        if problems:
            loud(f"{self.key}: state-dict shapes would not give the intended config: {problems}")
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.args.weight_dtype]
        t0 = now()
        sd = random_wan_state_dict(shapes, self.dev.torch_device, dtype)
        self.dev.sync()
        rec["build_s"] = now() - t0
        rec["parameters"] = sum(v.numel() for v in sd.values())
        rec["weights_gib"] = sum(v.numel() * v.element_size() for v in sd.values()) / GiB
        t0 = now()
        model = comfy.sd.load_diffusion_model_state_dict(sd)
        del sd
        self.dev.free()
        rec["load_s"] = now() - t0
        if model is None:
            raise RuntimeError("ComfyUI did not detect the state dict as a model")
        dm = model.model.diffusion_model
        rec.update(config=type(model.model.model_config).__name__, unet_dtype=str(model.model.get_dtype()),
                   manual_cast_dtype=str(model.model.manual_cast_dtype),
                   detected=dict(dim=dm.dim, ffn_dim=dm.ffn_dim, num_layers=len(dm.blocks), num_heads=dm.num_heads,
                                 in_dim=dm.in_dim, out_dim=dm.out_dim,
                                 latent_channels=model.model.latent_format.latent_channels),
                   load_device=str(model.load_device), offload_device=str(model.offload_device))
        want = dict(dim=self.spec["dim"], ffn_dim=self.spec["ffn"], num_layers=self.spec["layers"],
                    num_heads=self.spec["heads"], in_dim=self.spec["channels"], out_dim=self.spec["channels"],
                    latent_channels=self.spec["channels"])
        wrong = {k: (rec["detected"][k], v) for k, v in want.items() if rec["detected"][k] != v}
        if rec["config"] != self.spec["config"] or wrong:
            loud(f"{self.key}: ComfyUI detected {rec['config']} {rec['detected']}, expected {self.spec['config']} {want}")
            rec["detection_mismatch"] = {"config": (rec["config"], self.spec["config"]), **wrong}
        say(f"{self.key}: {rec['parameters'] / 1e6:,.0f} M parameters ({rec['weights_gib']:.1f} GiB as {self.args.weight_dtype}) "
            f"built in {rec['build_s']:.1f} s; ComfyUI detected {rec['config']} {rec['detected']}, "
            f"dtype {rec['unet_dtype']}, loaded in {rec['load_s']:.1f} s")
        self.model = model
        return True

    def text(self) -> bool:
        rec = self.record["text"]
        t0 = now()
        self.positive = self.comfy.encode(self.clip, self.args.prompt)
        self.negative = self.comfy.encode(self.clip, NEGATIVE)
        rec["s"] = now() - t0
        rec["positive_shape"] = list(self.positive[0][0].shape)
        self.latent_dict = self.latent()
        rec["latent_shape"] = list(self.latent_dict["samples"].shape)
        say(f"{self.key}: conditioning {rec['positive_shape']}, latent {rec['latent_shape']}, "
            f"token grid {'x'.join(map(str, self.grid()))} = {math.prod(self.grid())} tokens")
        return True

    def warmup(self) -> bool:
        rec = self.record["warmup"]
        t0 = now()
        out = self.sample(self.model, 1)
        rec.update(s=now() - t0, peak_gib=out["peak_gib"], finite=out["finite"])
        say(f"{self.key} warm-up: {fmt_s(rec['s'])} s (1 step, weights to {self.comfy.torch_device}), "
            f"peak {fmt_s(out['peak_gib'])} GiB")
        return True

    def plain(self) -> bool:
        out = self.sample(self.model, self.steps)
        self.outputs["plain"] = out["samples"]
        self.record["plain"].update(self.public(out))
        steady = out["step_s"][1:] or out["step_s"]
        self.step_s = statistics.median(steady)
        self.record["plain"]["s_per_step"] = self.step_s
        if not out["finite"]:
            loud(f"{self.key}: the plain pass produced non-finite values (random weights too large?)")
        say(f"{self.key} plain: {fmt_s(out['total_s'])} s, steps {[round(t, 3) for t in out['step_s']]}, "
            f"peak {fmt_s(out['peak_gib'])} GiB")
        return True

    def capture(self, override: str) -> bool:
        key = "capture" if not override else "capture_override"
        rec = self.record[key]
        node = self.comfy.node["NuminaAttentionCapture"]
        steps = self.steps
        pack_log()
        base = self.dev.reset_peak()
        self.dev.sync()
        t0 = now()
        capture, reference, report = node.execute(self.model, self.clip, self.positive, self.negative, self.latent_dict,
                                                  SEED, steps, CFG, SAMPLER, SCHEDULER, self.args.prompt, override,
                                                  -1, -1).result
        self.dev.sync()
        elapsed = now() - t0
        peak = self.dev.peak()
        ref_steps = capture.step_index + 1
        rec.update(s=elapsed, override=override, report=report, pack_log=pack_log(), step_index=capture.step_index,
                   block_index=capture.block_index, total_blocks=capture.total_blocks, steps_run=ref_steps,
                   model_family=capture.model_family, nouns=[n.noun for n in capture.nouns],
                   peak_gib=None if peak is None else peak / GiB,
                   extra_peak_gib=None if peak is None else (peak - base) / GiB,
                   plain_steps_s=ref_steps * self.step_s,
                   read_overhead_s=elapsed - ref_steps * self.step_s,
                   x_plain_steps=elapsed / (ref_steps * self.step_s))
        plain_peak = self.record.get("plain", {}).get("peak_gib")
        if plain_peak and rec["peak_gib"]:
            rec["peak_x_plain"] = rec["peak_gib"] / plain_peak
        self.capture_record = capture
        self.capture_sigmas = capture.meta.get("sigmas") if isinstance(capture.meta, dict) else None
        say(f"{self.key} capture: {fmt_s(elapsed)} s for steps 0..{capture.step_index} of {steps} "
            f"(plain would be {fmt_s(ref_steps * self.step_s)} s), peak {fmt_s(rec['peak_gib'])} GiB\n  {report}")
        return True

    def layout(self) -> bool:
        capture = self.capture_record
        key = "layout_override" if capture is not None and self.record.get("capture_override", {}).get("s") else "layout"
        rec = self.record[key]
        t0 = now()
        layout, _, counts_text = self.comfy.node["NuminaLayoutInfer"].execute(capture, self.args.layout_mode).result
        rec["infer_s"] = now() - t0
        t0 = now()
        refined, _, refined_text = self.comfy.node["NuminaLayoutRefine"].execute(layout).result
        rec["refine_s"] = now() - t0
        rec["mode"] = self.args.layout_mode
        rec["read_counts"] = list(layout.nouns[0].counts) if layout.nouns else []
        rec["targets"] = {n.noun: n.target for n in refined.nouns}
        rec["refined_counts"] = list(refined.nouns[0].counts) if refined.nouns else []
        rec["notes"] = [note for n in refined.nouns for note in n.notes][:10]
        rec["needs_guidance"] = bool(refined.needs_guidance)
        rec["counts_text"] = refined_text
        self.refined = refined
        say(f"{self.key} layout ({self.args.layout_mode}): read {rec['read_counts']}, target {rec['targets']}, "
            f"refined {rec['refined_counts']}, needs guidance: {rec['needs_guidance']} "
            f"(infer {fmt_s(rec['infer_s'])} s, refine {fmt_s(rec['refine_s'])} s)")
        return True

    def guided(self, form: str, layout, entry: dict, measured: dict) -> bool:
        guide = self.comfy.node["NuminaCrossAttnGuide"]
        pack_log()
        patched, report = guide.execute(self.model, layout, form).result
        entry["report"] = report
        entry["biasing"] = "biasing" in report
        if not entry["biasing"]:
            loud(f"{self.key} bias_form {form}: the guide is NOT biasing ({report!r}); the pass below equals the plain run")
        resolved = form
        for candidate in ("dense", "sparse", "fast"):
            if f"with the {candidate} form" in report:
                resolved = candidate
        entry["resolved_form"] = resolved
        if form == "auto" and resolved in measured and not self.args.measure_auto:
            entry["same_as"] = resolved
            say(f"{self.key} auto -> {resolved}: already measured, not sampled again (--measure-auto to force)")
            return True
        out = self.sample(patched, self.steps)
        del patched
        self.outputs[form] = out["samples"]
        entry.update(self.public(out))
        entry["pack_log"] = pack_log()
        if any("no cross-attention call was biased" in line for line in entry["pack_log"]):
            loud(f"{self.key} bias_form {form}: the pack reports that NO cross-attention call was biased: {entry['pack_log']}")
        plain = self.record.get("plain", {})
        if plain.get("total_s"):
            entry["x_plain_total"] = out["total_s"] / plain["total_s"]
            steady_plain = plain["step_s"][1:] or plain["step_s"]
            steady = out["step_s"][1:] or out["step_s"]
            entry["x_plain_steps"] = sum(steady) / sum(steady_plain)
            entry["step_x_plain"] = [round(a / b, 3) for a, b in zip(out["step_s"], plain["step_s"])]
        if plain.get("peak_gib") and out["peak_gib"]:
            entry["peak_x_plain"] = out["peak_gib"] / plain["peak_gib"]
        if "plain" in self.outputs:
            entry["max_abs_diff_vs_plain"] = float((out["samples"].float() - self.outputs["plain"].float()).abs().max())
        measured[resolved] = form
        try:
            M = self.comfy.modulation
            entry["active_steps"] = [i for i in range(self.steps) if M.strength(i, self.steps) > 0]
        except Exception:
            pass
        say(f"{self.key} guided {form}: {fmt_s(out['total_s'])} s (x{fmt_ratio(entry.get('x_plain_total'))} plain), "
            f"steps {[round(t, 3) for t in out['step_s']]}, peak {fmt_s(out['peak_gib'])} GiB "
            f"(x{fmt_ratio(entry.get('peak_x_plain'))}), max|guided - plain| {fmt_e(entry.get('max_abs_diff_vs_plain'))}"
            f"\n  {report}" + "".join(f"\n  log: {line}" for line in entry["pack_log"]))
        return True

    def compare_forms(self) -> None:
        forms = [f for f in ("dense", "sparse", "fast") if f in self.outputs]
        diffs = {}
        for i, a in enumerate(forms):
            for b in forms[i + 1:]:
                diffs[f"{a}-{b}"] = float((self.outputs[a].float() - self.outputs[b].float()).abs().max())
        self.record["final_latent_max_diff_between_forms"] = diffs
        self.runner.recorder.flush()

    def close(self, last: bool = False) -> None:
        """Free the model.  Dropping every reference lets ComfyUI forget it without copying the
        weights back to the CPU (unload_all_models would); that is the fallback."""
        self.outputs.clear()
        self.model = None
        self.capture_record = None
        self.refined = None
        self.positive = self.negative = None
        if last:
            return
        t0 = now()
        try:
            gc.collect()
            mm = self.comfy.mm
            for name in ("cleanup_models_gc", "cleanup_models"):
                if hasattr(mm, name):
                    getattr(mm, name)()
            mm.soft_empty_cache()
            self.dev.free()
            left = self.dev.allocated()
            if left is not None and left > GiB:
                self.comfy.unload_all()
                self.dev.free()
            self.record["released"] = {"s": now() - t0, "allocated_before_gib": None if left is None else left / GiB,
                                       "allocated_after_gib": None if self.dev.allocated() is None else self.dev.allocated() / GiB}
        except Exception as error:
            self.record["released"] = {"error": f"{type(error).__name__}: {error}"}


# =============================================================================== report

def format_guided_rows(rows: list) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["shape"], r["dtype"], "ERROR", r["error"][:60], "", "", "", ""])
            continue
        cells = [r["shape"], r["dtype"], fmt_ms(r.get("plain_ms")), fmt_e(r.get("plain_max_err_vs_fp32"))]
        for form in ("dense", "sparse", "fast"):
            f = r.get(form, {})
            if "error" in f:
                cells.append("ERROR " + f["error"][:40])
            elif f:
                cells.append(f"{fmt_ms(f['ms'])} ({f['x_plain']:.1f}x) err {fmt_e(f['max_err_vs_fp32'])}"
                             f"{mib(f['extra_peak_mib'])} unbiased=={'yes' if f['unbiased_rows_equal_plain'] else 'NO'}")
            else:
                cells.append("-")
        out.append(cells)
    return table(["shape", "dtype", "plain SDPA ms", "plain err", "dense ms (x plain)", "sparse", "fast"], out)


def format_override_rows(rows: list) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["shape"], r["dtype"], "ERROR " + r["error"][:60], "", "", "", ""])
            continue
        cells = [r["shape"], r["dtype"], fmt_ms(r.get("plain_ms"))]
        for form in ("dense", "sparse", "fast", "auto"):
            f = r.get(form, {})
            if "error" in f:
                cells.append("ERROR " + f["error"][:40])
            elif f:
                flags = (f"uncond=={'yes' if f['uncond_row_equal_plain'] else 'NO'} "
                         f"cond-unbiased=={'yes' if f['unbiased_cond_rows_equal_plain'] else 'NO'}")
                acted = "" if f.get("acted", True) else " NOT ACTING"
                cells.append(f"{fmt_ms(f['ms'])} ({f['x_plain']:.2f}x) err {fmt_e(f['max_err_vs_fp32'])}"
                             f"{mib(f['extra_peak_mib'])} {flags}{acted}")
            else:
                cells.append("-")
        out.append(cells)
    return table(["shape", "dtype", "plain call ms", "dense (x plain)", "sparse", "fast", "auto"], out)


def capture_step_reference(row: dict, models: dict) -> tuple[Optional[float], Optional[float], str]:
    """(seconds of one plain step, seconds of the measured run's reference steps, note) for the
    model a capture-read shape belongs to; 720p is estimated from the 480p step (half linear in
    tokens, half quadratic)."""
    m = models.get(row["model"], {})
    step = m.get("plain", {}).get("s_per_step")
    if not step:
        return None, None, "model not measured"
    ratio = row.get("tokens_ratio", 1.0)
    note = "measured"
    if ratio != 1.0:
        step = step * (0.5 * ratio + 0.5 * ratio ** 2)
        note = f"estimated from the 480p step (x{0.5 * ratio + 0.5 * ratio ** 2:.2f})"
    ref_steps = m.get("capture", {}).get("steps_run")
    return step, (step * ref_steps if ref_steps else None), note


def format_capture_rows(rows: list, models: dict) -> str:
    out = []
    for r in rows:
        step, ref, note = capture_step_reference(r, models)
        cells = [r["shape"], f"{'x'.join(map(str, r['grid']))} x {r['heads']}h"]
        total = 0.0
        for kind in ("self", "cross"):
            f = r.get(kind, {})
            if "error" in f:
                cells.append("ERROR " + f["error"][:50])
            elif f:
                total += f["s"]
                cells.append(f"{fmt_s(f['s'])} s{mib(f['extra_peak_mib'])}")
            else:
                cells.append("-")
        if step and total:
            cells.append(f"{100 * total / step:.1f}% of a step" + (f", {100 * total / ref:.1f}% of the reference steps" if ref else "")
                         + f" ({note})")
        else:
            cells.append(note if not step else "-")
        same = r.get("same_heads_as_cpu", "-")
        cells.append("yes" if same is True else "NO" if same is False else str(same)[:40])
        out.append(cells)
    return table(["shape", "grid x heads", "read_self_attention", "read_cross_attention", "reads vs model steps",
                  "heads = CPU's"], out)


def summary(rec: Recorder, budget: Budget) -> str:
    d = rec.data
    parts = ["\n" + "#" * 100, "NUMINA GPU CHECK: SUMMARY", "#" * 100]
    m = d["meta"]
    parts.append(f"{m.get('device_name')} | torch {m.get('torch')} | ComfyUI {m.get('comfyui_version')} | "
                 f"pack {m.get('pack_commit')} | attention {m.get('comfy_attention')} | {m.get('mode')} | "
                 f"total {budget.elapsed():.0f} s")
    models = d["models"]
    if models:
        rows = []
        for key, r in models.items():
            load = r.get("load", {})
            plain = r.get("plain", {})
            cap = r.get("capture_override") if r.get("capture_override", {}).get("s") else r.get("capture", {})
            forms = []
            for form, g in r.get("guided", {}).items():
                if g.get("same_as"):
                    forms.append(f"{form}=>{g['same_as']}")
                elif "x_plain_total" in g:
                    forms.append(f"{form} {g['x_plain_total']:.3f}" + ("" if g.get("biasing") else " (NOT biasing)"))
                elif g.get("status"):
                    forms.append(f"{form} {g['status'].split(' ')[0].upper()}")
            peaks = [f"{form} {g['peak_x_plain']:.3f}" for form, g in r.get("guided", {}).items() if "peak_x_plain" in g]
            cap_text = "-"
            if cap and cap.get("s"):
                cap_text = (f"{fmt_s(cap['s'])} s (steps 0..{cap['step_index']}, x{cap['x_plain_steps']:.2f} plain steps, "
                            f"peak {fmt_s(cap.get('peak_gib'))} GiB)")
            elif cap and cap.get("status"):
                cap_text = cap["status"].upper() + (": " + cap.get("error", "")[:70] if cap.get("error") else "")
            rows.append([key, f"{load.get('config', '-')} {load.get('unet_dtype', '').replace('torch.', '')}",
                         fmt_s(plain.get("s_per_step")), fmt_s(plain.get("total_s")),
                         fmt_s(plain.get("peak_gib")), cap_text, ", ".join(forms) or r.get("status", "-"),
                         ", ".join(peaks) or "-", r.get("guided_layout", "-"),
                         str(r.get("biased_rows_fraction", "-"))])
        parts.append("\nModels (euler, CFG 5; guided/plain = whole pass time; peaks = max_memory_allocated, reset per phase):")
        parts.append(table(["model", "detected", "plain s/step", "plain s", "plain peak GiB", "capture",
                            "guided/plain time", "guided/plain peak", "guided layout", "rows biased"], rows))
        for key, r in models.items():
            lay = r.get("layout_override") if r.get("layout_override", {}).get("infer_s") is not None else r.get("layout", {})
            if lay:
                diffs = {k: float(f"{v:.2e}") for k, v in r.get("final_latent_max_diff_between_forms", {}).items()}
                parts.append(f"  {key}: read {lay.get('read_counts')} target {lay.get('targets')} refined "
                             f"{lay.get('refined_counts')} needs guidance {lay.get('needs_guidance')}; "
                             f"final latents, max diff between forms {diffs}")
            steps = [f"plain {[round(t, 3) for t in r.get('plain', {}).get('step_s', [])]}"]
            for form, g in r.get("guided", {}).items():
                if g.get("step_s"):
                    steps.append(f"{form} {[round(t, 3) for t in g['step_s']]} (steps after the first: "
                                 f"x{g.get('x_plain_steps', float('nan')):.3f})"
                                 + (f" log: {'; '.join(g['pack_log'])[:160]}" if g.get("pack_log") else ""))
            if r.get("plain", {}).get("step_s"):
                parts.append(f"  {key} s per step: " + "; ".join(steps))
    micro = d["micro"]
    if micro.get("guided_attention"):
        parts.append("\nOne guided cross-attention call vs one plain SDPA call (one cond row, "
                     f"~{BIASED_FRACTION:.0%} rows biased, best of N; err = max abs vs fp32 reference; "
                     "unbiased== : rows without bias torch.equal to plain):")
        parts.append(format_guided_rows(micro["guided_attention"]))
    if micro.get("override"):
        parts.append("\nThrough the patched MODEL's attention override as Wan calls it (uncond + cond batch) vs the plain call:")
        if all(r.get("note") == OVERRIDE_NOTE for r in micro["override"]):
            parts.append("  not measurable: " + OVERRIDE_NOTE + " (details in the JSON)")
        else:
            parts.append(format_override_rows(micro["override"]))
    if micro.get("capture_reads"):
        parts.append("\nCapture reads (one cond row), extra peak memory, vs the model's measured plain steps:")
        parts.append(format_capture_rows(micro["capture_reads"], models))
    errors = [s for s in d["sections"] if s.get("status") == "error"]
    skipped = [s for s in d["sections"] if s.get("status") == "skipped"]
    groups: dict[str, float] = {}
    for s in d["sections"]:
        group = s["name"].split(":")[0] if s["name"].split(":")[0] in models else s["name"].split(" (")[0]
        groups[group] = groups.get(group, 0.0) + s.get("elapsed_s", 0.0)
    if d.get("matrix"):
        parts.append("\nBoth phases by weight dtype and offloading (1.3B architecture, small video; guided run's report):")
        parts.append(table(["weights", "vram", "compute", "result", "report"],
                           [[r["weights"], r["vram"], r.get("compute_dtype", "?"), "ok" if r.get("ok") else "FAILED",
                             (r.get("pack_log") or [r.get("error", "")])[-1][:90]] for r in d["matrix"]]))
    parts.append("\nTime by section (s): " + ", ".join(f"{g} {t:.1f}" for g, t in groups.items())
                 + f"; total {budget.elapsed():.0f} s of the {budget.seconds:.0f} s budget")
    if errors:
        parts.append(f"\nERRORS ({len(errors)}; tracebacks above and in the JSON):")
        parts += [f"  - {s['name']}: {s['error'][:300]}" for s in errors]
    if skipped:
        parts.append(f"SKIPPED for the budget: {', '.join(s['name'] for s in skipped)}")
    return "\n".join(parts)


# =============================================================================== main

def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except Exception:
        return "unknown"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="1.3b,5b,14b",
                   help="comma-separated, in order: 1.3b (Wan2.1 T2V 832x480x81), 5b (Wan2.2 TI2V 1280x704x121), "
                        "14b (Wan2.1 T2V 832x480x81); 'none' for micro-benchmarks only")
    p.add_argument("--tiny", action="store_true", help="tiny shapes everywhere (the CPU dry run)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--json", default=None,
                   help="results file (default $OUT/gpu_check.json, else benchmarks/results/gpu_check.json)")
    p.add_argument("--comfyui", default=None, help="ComfyUI folder (default $COMFYUI_PATH)")
    p.add_argument("--steps", default=None,
                   help="sampling steps of every pass: N for all models, or one per model in --models order "
                        "(default: 1.3b 8, 5b 4, 14b 4)")
    p.add_argument("--forms", default="dense,sparse,fast,auto", help="bias forms for the guided passes")
    p.add_argument("--bias-rule", default="calibrated", choices=("calibrated", "published"),
                   help="bias rule of the one-call micro-benchmark (the guided passes use the node's default)")
    p.add_argument("--measure-auto", action="store_true",
                   help="sample 'auto' even when it resolves to a form already measured")
    p.add_argument("--prompt", default=PROMPT, help=f"prompt of the model runs (default {PROMPT!r})")
    p.add_argument("--layout-mode", default="default", choices=["default", "faithful", "cross"])
    p.add_argument("--weight-dtype", default=None, choices=["fp16", "bf16", "fp32"],
                   help="dtype of the random weights handed to ComfyUI (default fp16 on CUDA, fp32 on the CPU)")
    p.add_argument("--budget-s", type=float, default=390.0,
                   help="wall-time budget in seconds: sections that would not fit are skipped (default 390)")
    p.add_argument("--repeats", type=int, default=None, help="best-of-N for the micro-benchmarks (default 10, tiny 3)")
    p.add_argument("--skip-micro", action="store_true", help="models only")
    p.add_argument("--skip-matrix", action="store_true", help="skip the dtype / offloading matrix")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    args.forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    bad = [f for f in args.forms if f not in ("dense", "sparse", "fast", "auto")]
    if bad:
        p.error(f"unknown forms {bad}")
    args.models = [] if args.models.strip() == "none" else [m.strip().lower() for m in args.models.split(",") if m.strip()]
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown models {bad}; choose from {list(MODELS)}")
    if args.steps is not None:
        try:
            counts = [int(x) for x in str(args.steps).split(",")]
        except ValueError:
            p.error(f"--steps {args.steps!r}: a whole number or one per model")
        if len(counts) not in (1, len(args.models)) or min(counts) < 2:
            p.error(f"--steps {args.steps!r}: one count >= 2, or one per model ({len(args.models)})")
        args.model_steps = {m: counts[0] if len(counts) == 1 else counts[i] for i, m in enumerate(args.models)}
    else:
        args.model_steps = {m: MODELS[m]["steps"] for m in args.models}
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cpu" and not args.tiny and args.models:
        p.error("real-shape models on the CPU would take hours: use --tiny for the CPU dry run (or a CUDA device)")
    if args.weight_dtype is None:
        args.weight_dtype = "fp16" if args.device.startswith("cuda") else "fp32"
    if args.repeats is None:
        args.repeats = 3 if args.tiny else 10
    if args.json is None:
        args.json = (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT")
                     else os.path.join(ROOT, "benchmarks", "results", "gpu_check.json"))
    return args


def main(argv=None) -> int:
    global PACK_LOG
    args = parse_args(argv)
    BIAS_RULE["rule"] = args.bias_rule
    budget = Budget(args.budget_s)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        say("ERROR: --device cuda but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use --device cpu --tiny for the dry run")
        return 2
    dev = Device(args.device)
    comfyui = args.comfyui or os.environ.get("COMFYUI_PATH")
    if not comfyui:
        say("ERROR: no ComfyUI: set COMFYUI_PATH (or --comfyui), or run scripts/gpu_check.sh with the bundle")
        return 2
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": args.device, "device_name": torch.cuda.get_device_name(dev.torch_device) if dev.cuda else platform.processor() or "cpu",
        "pack_commit": git_commit(), "mode": "tiny" if args.tiny else "real shapes",
        "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        "args": {k: v for k, v in vars(args).items()},
    }
    if dev.cuda:
        props = torch.cuda.get_device_properties(dev.torch_device)
        meta["device_memory_gib"] = props.total_memory / GiB
    rec = Recorder(args.json, meta)
    runner = Runner(rec, budget)

    def on_term(signum, frame):   # killed by a timeout: leave the summary of what was measured
        try:
            rec.data["killed_by_signal"] = signum
            rec.data["summary"] = summary(rec, budget)
            rec.flush()
            say(f"\n!!! stopped by signal {signum}; partial results:" + rec.data["summary"])
        finally:
            os._exit(128 + signum)
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_term)
    banner(f"NUMINA GPU check: {meta['device_name']} | torch {meta['torch']} | models {args.models or 'none'} | "
           f"{meta['mode']} | budget {args.budget_s:.0f} s | JSON -> {os.path.abspath(args.json)}")

    comfy = runner.section("import ComfyUI and load the pack", 0, lambda: Comfy(comfyui, dev))  # always
    if comfy is None:
        say(summary(rec, budget))
        return 1
    import comfy.ldm.wan.model as wan_model
    meta.update(comfyui=comfy.path, comfyui_version=comfy.version, comfy_device=comfy.torch_device, pack_module=comfy.pack,
                comfy_attention=getattr(wan_model.optimized_attention, "__name__", "?"),
                vram_state=str(getattr(comfy.mm, "vram_state", "?")))
    PACK_LOG = PackLog()
    say(f"ComfyUI {comfy.version} at {comfy.path}; device {comfy.torch_device}; attention "
        f"{meta['comfy_attention']}; vram state {meta['vram_state']}; pack loaded as {comfy.pack!r}")
    rec.flush()

    attn_shapes = TINY_ATTN_SHAPES if args.tiny else ATTN_SHAPES
    capture_shapes = TINY_CAPTURE_SHAPES if args.tiny else CAPTURE_SHAPES
    dtypes = [torch.bfloat16, torch.float16] if dev.cuda else [torch.float32, torch.bfloat16]
    if not args.skip_micro:
        micro = rec.data["micro"]
        micro["guided_attention"] = []
        runner.section("micro: one guided cross-attention call vs plain SDPA", 45 if not args.tiny else 5,
                       lambda: micro_guided_attention(comfy, dev, attn_shapes, dtypes, args.repeats, micro["guided_attention"]))
        micro["override"] = []

        def override():
            model = tiny_wan_for_override(dev, torch.float16 if dev.cuda else torch.float32)
            micro_override(comfy, dev, attn_shapes, dtypes, args.repeats, model, micro["override"])
        runner.section("micro: through the pack's attention override (as Wan calls it)", 40 if not args.tiny else 5, override)
        micro["capture_reads"] = []
        runner.section("micro: capture reads (read_self_attention / read_cross_attention)", 25 if not args.tiny else 5,
                       lambda: micro_capture_reads(comfy, dev, capture_shapes, torch.float16 if dev.cuda else torch.float32,
                                                   micro["capture_reads"]))
        dev.free()

    clip = None
    if args.models or not args.skip_matrix:
        clip = runner.section("tiny umT5 text encoder (NuminaTinyTextEncoderLoader)", 5, comfy.tiny_clip)
    if clip is not None and not args.skip_matrix:
        rec.data["matrix"] = []
        runner.section("matrix: fp16 / bf16 / fp8 weights, normal / lowvram / novram (1.3B, small video)",
                       60 if not args.tiny else 10,
                       lambda: dtype_offload_matrix(comfy, dev, args, clip, rec.data["matrix"]))
        rec.flush()
    for key in args.models:
        spec = dict(MODELS[key], **(TINY_MODELS[key] if args.tiny else {}), steps=args.model_steps[key])
        record = rec.data["models"].setdefault(key, {})
        if clip is None:
            record["status"] = "skipped: no text encoder"
            continue
        run = ModelRun(comfy, dev, runner, key, spec, args, clip, record)
        try:
            run.run()
        except Exception as error:  # anything outside a section
            record["status"] = "error"
            record["error"] = f"{type(error).__name__}: {error}"
            record["traceback"] = traceback.format_exc()
            say(f"!!! model {key} FAILED: {error}\n{record['traceback']}")
        finally:
            run.close(last=key == args.models[-1])
            del run
            rec.data["summary"] = summary(rec, budget)     # partial summary in the JSON after every model
            rec.flush()
    text = summary(rec, budget)
    rec.data["summary"] = text
    rec.flush()
    say(text)
    say(f"\nJSON: {os.path.abspath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
