"""Train a tiny Wan 2.1 text-to-video model (ComfyUI's own WanModel) on CountWorld, on the CPU.

    nice -n 10 .numina_env/venv/bin/python countworld/train.py --minutes 55          # the committed run
    .numina_env/venv/bin/python countworld/train.py --steps 3 --out /tmp/cw_smoke  # smoke run

Objective: rectified flow as ComfyUI samples Wan (CONST model sampling): x_s = (1 - s) x0 + s noise,
timestep = 1000 s, target = noise - x0, with s = 3u / (1 + 2u), u ~ U(0, 1) (the shift-3 schedule).
The text context is what ComfyUI's CLIPTextEncode gives through NuminaTinyTextEncoderLoader
([1, 512, 4096], zeros after the end token).  Speed trick (exact, verified at start-up against
ComfyUI's own 512-token forward): the P identical zero-padding positions are represented by a few
copies whose attention logits get + log(P / copies), so cross-attention sees the same softmax.
Seed, steps and loss go to the log; EMA weights are exported as fp16 safetensors.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

from countworld import prompts as prompt_sets  # noqa: E402
from countworld import world  # noqa: E402

TEXT_ENCODER = "numina_tiny_umt5.safetensors"
CHECKPOINT_NAME = "countworld_wan21_t2v.safetensors"
CONTEXT_LEN = 512
MODEL_CONFIG = dict(model_type="t2v", dim=256, ffn_dim=1024, num_layers=4, num_heads=2, in_dim=16,
                    out_dim=16, text_dim=4096, patch_size=(1, 2, 2))
SHIFT = 3.0


# ----------------------------------------------------------------------------- text
class PromptEncoder:
    """Conditioning rows (up to and including the end token) of each prompt, cached.

    Encodes only the non-padding tokens with the loaded ComfyUI CLIP (10 ms instead of 0.5 s);
    `verify` checks this equals the full `encode_from_tokens_scheduled` path."""

    def __init__(self, clip) -> None:
        self.clip = clip
        self.cache: dict[str, torch.Tensor] = {}
        clip.load_model()

    def rows(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            tokens = self.clip.tokenize(text)
            key = next(iter(tokens))
            used = [t for t in tokens[key][0] if t[0] != 0]
            with torch.no_grad():
                out = self.clip.cond_stage_model.encode_token_weights({key: [used]})[0]
            self.cache[text] = out[0].float().clone()
        return self.cache[text]

    def verify(self, texts: list[str]) -> float:
        worst = 0.0
        for text in texts:
            full = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(text))[0][0][0]
            rows = self.rows(text)
            worst = max(worst, (full[: len(rows)] - rows).abs().max().item(), full[len(rows):].abs().max().item())
        self.clip.load_model()
        return worst


def tiny_text_encoder_module():
    """The pack's tiny-umT5 node module: as ComfyUI registered it, or (when the pack as a whole does
    not load, e.g. while other parts are being written) the same file imported on its own."""
    import importlib.util

    import comfy_runtime

    comfy_runtime.bootstrap()
    try:
        return comfy_runtime.pack_module("NuminaTinyTextEncoderLoader")
    except RuntimeError:
        path = os.path.join(ROOT, "nodes", "tiny_text_encoder.py")
        spec = importlib.util.spec_from_file_location("countworld_tiny_text_encoder", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def load_clip():
    module = tiny_text_encoder_module()
    return module.NuminaTinyTextEncoderLoader.execute(TEXT_ENCODER).result[0]


def packed_context(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, C, 4096] context (real rows, then zero rows) and [B, C] logit bias so that the zero rows
    stand for all 512 - n padding positions of ComfyUI's context."""
    width = max(len(r) for r in rows) + 1
    context = torch.zeros(len(rows), width, rows[0].shape[-1])
    bias = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        context[i, : len(r)] = r
        bias[i, len(r):] = math.log((CONTEXT_LEN - len(r)) / (width - len(r)))
    return context, bias


def attention_override(bias: torch.Tensor, context_width: int):
    """ComfyUI `optimized_attention_override`: SDPA, with the padding bias on cross-attention."""

    def attend(func, q, k, v, heads, transformer_options=None, **kwargs):
        b, lq, inner = q.shape
        d = inner // heads
        q4, k4, v4 = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
        mask = bias[:, None, None, :].to(q.dtype) if k.shape[1] == context_width and lq != context_width else None
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, lq, inner)

    return attend


# ----------------------------------------------------------------------------- model
def build_model(seed: int) -> torch.nn.Module:
    """ComfyUI's WanModel with Wan 2.1's initialisation (its op set skips init)."""
    import comfy.ldm.wan.model
    import comfy.ops

    model = comfy.ldm.wan.model.WanModel(operations=comfy.ops.disable_weight_init, **MODEL_CONFIG)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.copy_(torch.ones_like(p) if name.endswith("norm_q.weight") or name.endswith("norm_k.weight")
                        or (("norm" in name) and name.endswith("weight")) else torch.zeros_like(p))
            elif "modulation" in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            elif name.startswith("head.head"):
                p.zero_()
            elif name.startswith("text_embedding") or name.startswith("time_embedding"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            else:
                fan_out, fan_in = p.shape[0], p[0].numel()
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return model


def forward(model, x, sigma, context, bias):
    opts = {"optimized_attention_override": attention_override(bias, context.shape[1])}
    return model(x, sigma * 1000.0, context, transformer_options=opts)


def verify_padding_trick(model, encoder: PromptEncoder, texts: list[str]) -> float:
    """Max |difference| between the packed forward and ComfyUI's own forward on the full
    512-token context with ComfyUI's default attention."""
    if all(p.abs().max() == 0 for p in model.head.head.parameters()):   # zero-initialised head: test a copy
        import copy

        model = copy.deepcopy(model)
        with torch.no_grad():
            for p in model.head.head.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
    rows = [encoder.rows(t) for t in texts]
    context, bias = packed_context(rows)
    full = torch.zeros(len(rows), CONTEXT_LEN, rows[0].shape[-1])
    for i, r in enumerate(rows):
        full[i, : len(r)] = r
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(rows), 16, world.LATENT_FRAMES, world.LATENT_HEIGHT, world.LATENT_WIDTH, generator=g)
    sigma = torch.rand(len(rows), generator=g)
    with torch.no_grad():
        ours = forward(model, x, sigma, context, bias)
        theirs = model(x, sigma * 1000.0, full, transformer_options={})
    return (ours - theirs).abs().max().item() / theirs.abs().max().item()


def export(ema: dict[str, torch.Tensor], path: str) -> None:
    import safetensors.torch

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    safetensors.torch.save_file({k: v.to(torch.float16).contiguous() for k, v in ema.items()}, path + ".tmp",
                                metadata={"countworld": json.dumps({"config": {k: str(v) for k, v in MODEL_CONFIG.items()}})})
    os.replace(path + ".tmp", path)


def plot_curve(log_path: str, png_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in open(log_path) if line.startswith("{")]
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, lw=0.6, alpha=0.4, label="batch loss")
    k = max(1, len(loss) // 40)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    ax.plot(steps[k - 1:], smooth, lw=1.6, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching MSE")
    ax.set_yscale("log")
    ax.set_title(f"CountWorld tiny Wan 2.1 ({rows[-1]['elapsed_min']:.0f} min CPU, {int(steps[-1])} steps)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=55.0, help="wall-time budget for the step loop")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: time only)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "checkpoints"), help="checkpoint folder")
    parser.add_argument("--log", default=os.path.join(HERE, "train_log.jsonl"))
    parser.add_argument("--plot", default=os.path.join(HERE, "training_curve.png"))
    parser.add_argument("--export-every-min", type=float, default=5.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clip = load_clip()
    encoder = PromptEncoder(clip)
    heldout = prompt_sets.excluded_from_training()
    checks = ["", "three red circles drifting on a grey background",
              "two red circles and five blue squares and one green triangle sliding on a grey background"]
    text_diff = encoder.verify(checks)
    model = build_model(args.seed)
    trick_diff = verify_padding_trick(model, encoder, checks)
    print(f"text rows vs ComfyUI encode: max diff {text_diff:.2e}; padding trick vs 512-token forward: "
          f"relative diff {trick_diff:.2e}", flush=True)
    if text_diff > 1e-5 or trick_diff > 1e-4:
        raise SystemExit("shortcut is not exact: refusing to train")

    params = [p for p in model.parameters()]
    print(f"parameters: {sum(p.numel() for p in params) / 1e6:.2f} M", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    warmup = 30
    ckpt = os.path.join(args.out, CHECKPOINT_NAME)
    log = open(args.log, "w")
    log.write(f"# seed={args.seed} batch={args.batch} lr={args.lr} ema={args.ema} minutes={args.minutes} "
              f"steps={args.steps} threads={args.threads} config={MODEL_CONFIG}\n")
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    last_export = start
    step = 0
    while True:
        elapsed = time.time() - start
        if (args.steps and step >= args.steps) or (not args.steps and elapsed > args.minutes * 60):
            break
        videos = world.training_batch(args.seed, step, args.batch, excluded_prompts=heldout)
        x0 = torch.from_numpy(np.stack([v.latent for v in videos]))
        context, bias = packed_context([encoder.rows(v.prompt) for v in videos])
        noise = torch.randn(x0.shape, generator=gen)
        u = torch.rand(args.batch, generator=gen)
        s = SHIFT * u / (1 + (SHIFT - 1) * u)
        sv = s.view(-1, 1, 1, 1, 1)
        xt = (1 - sv) * x0 + sv * noise
        pred = forward(model, xt, s, context, bias)
        loss = F.mse_loss(pred, noise - x0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for k, v in model.state_dict().items():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        step += 1
        now = time.time()
        log.write(json.dumps({"step": step, "loss": round(loss.item(), 5), "grad_norm": round(grad_norm.item(), 4),
                              "elapsed_min": round((now - start) / 60, 3)}) + "\n")
        log.flush()
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f} {(now - start) / step:.2f} s/step", flush=True)
        if now - last_export > args.export_every_min * 60:
            export(ema, ckpt)
            last_export = now
    export(ema, ckpt)
    model.load_state_dict(ema)
    print(f"padding trick on the trained EMA model: relative diff {verify_padding_trick(model, encoder, checks):.2e}",
          flush=True)
    log.close()
    plot_curve(args.log, args.plot)
    print(f"done: {step} steps in {(time.time() - start) / 60:.1f} min; EMA weights -> {ckpt}", flush=True)


if __name__ == "__main__":
    main()
