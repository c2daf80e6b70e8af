"""A step-distillation LoRA for a CountWorld model: what lightx2v / "Lightning" LoRAs are to Wan.

    nice .numina_env/venv/bin/python countworld/distill.py --checkpoint countworld_wan21_t2v.safetensors
    nice .numina_env/venv/bin/python countworld/distill.py --checkpoint countworld_wan21_t2v_s1.safetensors

Users of real Wan load such a LoRA with LoraLoaderModelOnly and sample at CFG 1 in 4 (or 8) steps
with a strongly shifted schedule: Lightning's 4 training timesteps are 1000, 937.5, 833.3, 625,
i.e. shift 5 and ComfyUI's "simple" scheduler (ModelSamplingSD3 shift 5, KSampler euler / simple).
The LoRA made here is used the same way.

Recipe (plain trajectory distillation, chosen on the first model only; the second model's LoRA is
made by the same command):

1. Teacher trajectories: the base model (as trained, CFG 1) integrates the flow ODE from seeded
   noise with Euler on a fine grid, `--substeps` steps inside every interval of the 8-step shift-5
   schedule (the 4-step schedule's sigmas are a subset of it), for `--trajectories` training prompts
   (never a held-out or tuning prompt).  The states at the 8-step sigmas are kept.
2. Student: the base model plus a rank-`--rank` LoRA on every Linear of its transformer blocks
   (attention q, k, v, o; feed-forward), base weights frozen.  One training example: a trajectory,
   a schedule (4 or 8 steps) and an interval [s_i, s_i+1] of it; the student's velocity at the
   teacher's state x(s_i) should be the secant (x(s_i+1) - x(s_i)) / (s_i+1 - s_i), so that one
   Euler step of ComfyUI's sampler lands where the teacher's many steps landed.
3. The LoRA is exported in the key form ComfyUI reads for Wan (`diffusion_model.<module>.lora_up /
   lora_down / alpha`, fp16), with its log and curve beside it.

Cost on this machine's 2 cores: the teacher's `trajectories x 8 x substeps` evaluations, then
`--steps` training steps; the defaults take about 40 minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "testing")):
    if p not in sys.path:
        sys.path.insert(0, p)

from countworld import prompts as prompt_sets  # noqa: E402
from countworld import train as trainer  # noqa: E402
from countworld import world  # noqa: E402

# The distilled schedule, as users sample a Lightning LoRA (see the module docstring).
SHIFT = 5.0
STEP_COUNTS = (4, 8)
TEACHER_GRID_STEPS = max(STEP_COUNTS)   # every other step count's sigmas are a subset of this grid's
LORA_NAMES = {"countworld_wan21_t2v.safetensors": "countworld_wan21_t2v_lightx2v_4step_lora.safetensors",
              "countworld_wan21_t2v_s1.safetensors": "countworld_wan21_t2v_s1_lightx2v_4step_lora.safetensors"}


def lora_name(checkpoint: str) -> str:
    """The LoRA file named as users name lightx2v's (base model, then `lightx2v_4step_lora`)."""
    return LORA_NAMES.get(checkpoint, os.path.splitext(checkpoint)[0] + "_lightx2v_4step_lora.safetensors")


def shifted_sigma(t: torch.Tensor | float, shift: float = SHIFT):
    """ComfyUI's flow shift (ModelSamplingDiscreteFlow): sigma = shift t / (1 + (shift - 1) t)."""
    return shift * t / (1 + (shift - 1) * t)


def schedule(steps: int, shift: float = SHIFT) -> torch.Tensor:
    """The sigmas ComfyUI's "simple" scheduler gives at this shift: t = 1, 1 - 1/steps, ..., then 0
    (tests check it against comfy.samplers.calculate_sigmas)."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shifted_sigma(t, shift).float()


# ----------------------------------------------------------------------------- model + LoRA
def load_base(checkpoint_path: str) -> torch.nn.Module:
    """The CountWorld checkpoint as ComfyUI's WanModel in fp32 on the CPU (config from its metadata)."""
    import safetensors
    import safetensors.torch

    with safetensors.safe_open(checkpoint_path, "pt") as f:
        meta = json.loads((f.metadata() or {}).get("countworld", "{}")).get("config", {})
    config = dict(trainer.MODEL_CONFIG)
    for key in ("dim", "ffn_dim", "num_layers", "num_heads"):
        if key in meta:
            config[key] = int(meta[key])
    model = trainer.build_model(0, config)
    state = safetensors.torch.load_file(checkpoint_path)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.requires_grad_(False)
    return model.eval()


class LoRADelta(torch.nn.Module):
    """The LoRA of one Linear as a parametrization of its weight: weight + up @ down.  Every reader of
    `.weight` sees it (newer ComfyUI's Wan feed-forward reads the weight directly, not through the
    module's forward).  `up` starts at zero, so the student starts as the teacher."""

    def __init__(self, out_features: int, in_features: int, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        self.down = torch.nn.Parameter(torch.randn(rank, in_features, generator=generator) / math.sqrt(in_features))
        self.up = torch.nn.Parameter(torch.zeros(out_features, rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.up @ self.down


def add_lora(model: torch.nn.Module, rank: int, seed: int) -> dict[str, LoRADelta]:
    """A LoRA on every Linear inside the transformer blocks; returns {module path: its LoRA}."""
    from torch.nn.utils import parametrize

    g = torch.Generator().manual_seed(seed)
    targets = [(name, m) for name, m in model.named_modules()
               if name.startswith("blocks.") and isinstance(m, torch.nn.Linear)]
    wrapped = {}
    for name, module in targets:
        delta = LoRADelta(module.out_features, module.in_features, rank, g)
        parametrize.register_parametrization(module, "weight", delta)
        wrapped[name] = delta
    return wrapped


def lora_state(wrapped: dict[str, LoRADelta], rank: int) -> dict[str, torch.Tensor]:
    """ComfyUI's Wan LoRA keys (alpha = rank, so the patch is exactly up @ down)."""
    out = {}
    for name, w in wrapped.items():
        key = f"diffusion_model.{name}"
        out[f"{key}.lora_up.weight"] = w.up.detach().to(torch.float16).contiguous()
        out[f"{key}.lora_down.weight"] = w.down.detach().to(torch.float16).contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
    return out


# ----------------------------------------------------------------------------- teacher
def teacher_trajectories(model, encoder, prompts: Sequence[str], seed: int, substeps: int, batch: int,
                         log=print) -> torch.Tensor:
    """[N, K + 1, 16, T, H, W]: the teacher's states at the K-step grid's sigmas (K = TEACHER_GRID_STEPS),
    from noise seeded per trajectory (seed, index)."""
    grid = TEACHER_GRID_STEPS
    t_fine = torch.linspace(1.0, 0.0, grid * substeps + 1, dtype=torch.float64)
    sig = shifted_sigma(t_fine).float()
    shape = (world.LATENT_CHANNELS, world.LATENT_FRAMES, world.LATENT_HEIGHT, world.LATENT_WIDTH)
    out = torch.empty(len(prompts), grid + 1, *shape)
    start = time.time()
    with torch.no_grad():
        for b0 in range(0, len(prompts), batch):
            chunk = prompts[b0:b0 + batch]
            x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + b0 + i))
                             for i in range(len(chunk))])
            context, bias = trainer.packed_context([encoder.rows(p) for p in chunk])
            out[b0:b0 + len(chunk), 0] = x
            for j in range(grid * substeps):
                s = sig[j].expand(len(chunk))
                v = trainer.forward(model, x, s, context, bias)
                x = x + (sig[j + 1] - sig[j]) * v
                if (j + 1) % substeps == 0:
                    out[b0:b0 + len(chunk), (j + 1) // substeps] = x
            done = b0 + len(chunk)
            log(f"teacher: {done}/{len(prompts)} trajectories, {(time.time() - start) / 60:.1f} min")
    return out


def training_prompts(seed: int, count: int) -> list[str]:
    """World prompts as training draws them (held-out and tuning prompts excluded)."""
    excluded = prompt_sets.excluded_from_training()
    rng = np.random.default_rng([seed, 77])
    return [world.sample_video(rng, empty_fraction=0.0, excluded_prompts=excluded).prompt for _ in range(count)]


# ----------------------------------------------------------------------------- training
def segment_batch(trajectories: torch.Tensor, g: torch.Generator, batch: int):
    """x at s_i, s_i and the secant velocity to s_i+1, for random (trajectory, step count, interval)."""
    grid = TEACHER_GRID_STEPS
    sig = schedule(grid)
    n = trajectories.shape[0]
    idx = torch.randint(n, (batch,), generator=g)
    which = torch.randint(len(STEP_COUNTS), (batch,), generator=g)
    xs, ss, vs = [], [], []
    for b in range(batch):
        steps = STEP_COUNTS[which[b]]
        stride = grid // steps
        i = int(torch.randint(steps, (1,), generator=g)) * stride
        a, z = trajectories[idx[b], i], trajectories[idx[b], i + stride]
        xs.append(a)
        ss.append(sig[i])
        vs.append((z - a) / (sig[i + stride] - sig[i]))
    return idx, torch.stack(xs), torch.stack(ss), torch.stack(vs)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=trainer.CHECKPOINT_NAME,
                        help="base model file in countworld/checkpoints (or a path)")
    parser.add_argument("--out", default="", help="LoRA path (default: beside the checkpoint, named as "
                        "users name lightx2v's)")
    parser.add_argument("--trajectories", type=int, default=384)
    parser.add_argument("--substeps", type=int, default=3, help="teacher Euler steps per 8-step interval")
    parser.add_argument("--steps", type=int, default=700, help="LoRA training steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def distill(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    ckpt = args.checkpoint if os.path.sep in args.checkpoint else os.path.join(HERE, "checkpoints", args.checkpoint)
    out = args.out or os.path.join(os.path.dirname(ckpt), lora_name(os.path.basename(ckpt)))
    stem = os.path.splitext(out)[0]
    log_path, plot_path = stem + ".train_log.jsonl", stem + ".training_curve.png"
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    torch.set_num_threads(args.threads)
    try:
        with trainer.training_mode():
            return _distill(args, ckpt, out, log_path, plot_path)
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng_state)


def _distill(args, ckpt, out, log_path, plot_path) -> dict:
    import safetensors.torch

    start = time.time()
    encoder = trainer.PromptEncoder(trainer.load_clip())
    model = load_base(ckpt)
    prompts = training_prompts(args.seed, args.trajectories)
    trajectories = teacher_trajectories(model, encoder, prompts, args.seed, args.substeps, batch=32,
                                        log=lambda m: print(m, flush=True))
    teacher_min = (time.time() - start) / 60
    rows = [encoder.rows(p) for p in prompts]
    wrapped = add_lora(model, args.rank, args.seed)
    params = [p for w in wrapped.values() for p in (w.down, w.up)]
    print(f"LoRA: {len(wrapped)} Linears, rank {args.rank}, {sum(p.numel() for p in params) / 1e6:.2f} M "
          f"parameters; teacher {teacher_min:.1f} min", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    log = open(log_path, "w")
    log.write(f"# checkpoint={os.path.basename(ckpt)} trajectories={args.trajectories} substeps={args.substeps} "
              f"steps={args.steps} batch={args.batch} rank={args.rank} lr={args.lr} seed={args.seed} "
              f"threads={args.threads} shift={SHIFT} step_counts={STEP_COUNTS} teacher_min={teacher_min:.2f}\n")
    warmup, losses = 30, []
    train_start = time.time()
    for step in range(args.steps):
        idx, x, s, v = segment_batch(trajectories, g, args.batch)
        context, bias = trainer.packed_context([rows[int(i)] for i in idx])
        pred = trainer.forward(model, x, s, context, bias)
        loss = F.mse_loss(pred, v)
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        log.write(json.dumps({"step": step + 1, "loss": round(losses[-1], 5),
                              "elapsed_min": round((time.time() - start) / 60, 3)}) + "\n")
        log.flush()
        if (step + 1) % 25 == 0:
            print(f"step {step + 1} loss {np.mean(losses[-25:]):.4f} "
                  f"{(time.time() - train_start) / (step + 1):.2f} s/step", flush=True)
    log.close()
    safetensors.torch.save_file(lora_state(wrapped, args.rank), out + ".tmp", metadata={
        "countworld_distill": json.dumps({"base": os.path.basename(ckpt), "shift": SHIFT,
                                          "step_counts": list(STEP_COUNTS), "rank": args.rank})})
    os.replace(out + ".tmp", out)
    if losses:
        trainer.plot_curve(log_path, plot_path, ylabel="secant-velocity MSE",
                           title="step-distillation LoRA ({minutes:.0f} min CPU in all, {steps} steps)")
    minutes = (time.time() - start) / 60
    print(f"done: teacher {teacher_min:.1f} min, {args.steps} LoRA steps, {minutes:.1f} min in all -> {out}",
          flush=True)
    return {"lora": out, "log": log_path, "plot": plot_path, "losses": losses, "minutes": minutes}


if __name__ == "__main__":
    distill()
