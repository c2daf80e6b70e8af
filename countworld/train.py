"""Train a tiny Wan 2.1 text-to-video model (ComfyUI's own WanModel) on CountWorld: on the CPU
(the default, bit-reproducible) or on a CUDA GPU (`--device cuda`).

    nice -n 10 .numina_env/venv/bin/python countworld/train.py --minutes 55          # the committed run
    .numina_env/venv/bin/python countworld/train.py --steps 3 --out /tmp/cw_smoke  # smoke run
    python countworld/train.py --device cuda --minutes 2.5 --batch 64 --dim 384 --layers 6 --seed 1 \
        --out countworld/checkpoints/countworld_wan21_t2v_d384_l6_s1.safetensors  # a second model on a GPU

Objective: rectified flow as ComfyUI samples Wan (CONST model sampling): x_s = (1 - s) x0 + s noise,
timestep = 1000 s, target = noise - x0, with s = 3u / (1 + 2u), u ~ U(0, 1) (the shift-3 schedule).
The text context is what ComfyUI's CLIPTextEncode gives through NuminaTinyTextEncoderLoader
([1, 512, 4096], zeros after the end token).  Speed trick (exact, verified at start-up against
ComfyUI's own 512-token forward): the P identical zero-padding positions are represented by a few
copies whose attention logits get + log(P / copies), so cross-attention sees the same softmax.
Seed, steps and loss go to the log; EMA weights are exported as fp16 safetensors.

Devices: the model is built and initialised on the CPU (same weights on every device), then moved;
noise comes from a generator on the training device, the batches of step k are world.training_batch
(seed, k) whatever the device or worker count.  On the CPU nothing changes from the first version
(same seed: same losses, same checkpoint).  On CUDA: bf16 autocast (`--precision auto`; loss, optimiser
and EMA stay fp32) with TF32 for the remaining fp32 matmuls, deterministic kernels (turn off with
`--nondeterministic`), and `--workers` processes that render and text-encode the batches ahead
(default: all CPU cores but two).  The padding-trick check always runs on the CPU in fp32.
Architecture: `--dim` (a multiple of 128: ComfyUI's loader reads heads = dim / 128), `--ffn-dim`
(default 4 x dim), `--layers`; `--out` takes a folder or a .safetensors path.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "testing")):   # also without the venv's numina_dev.pth (a GPU machine)
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
HEAD_DIM = 128          # ComfyUI's Wan 2.1 detection sets num_heads = dim // 128
COMMITTED_CHECKPOINT = os.path.join(HERE, "checkpoints", CHECKPOINT_NAME)


def model_config(dim: int = MODEL_CONFIG["dim"], layers: int = MODEL_CONFIG["num_layers"],
                 ffn_dim: Optional[int] = None) -> dict:
    """MODEL_CONFIG with another width / depth; heads follow dim as ComfyUI's loader assumes."""
    if dim % HEAD_DIM:
        raise ValueError(f"dim {dim} is not a multiple of {HEAD_DIM}: ComfyUI would load the checkpoint "
                         f"with num_heads = dim // {HEAD_DIM}, which must divide dim")
    return dict(MODEL_CONFIG, dim=dim, ffn_dim=ffn_dim or 4 * dim, num_layers=layers, num_heads=dim // HEAD_DIM)


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
            self.cache[text] = out[0].float().cpu().clone()     # CPU rows, whatever device the encoder ran on
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

    from numina_dev import comfy_runtime

    comfy_runtime.bootstrap()
    try:
        return comfy_runtime.pack_module("NuminaTinyTextEncoderLoader")
    except RuntimeError:
        path = os.path.join(ROOT, "testing", "numina_testing", "tiny_text_encoder.py")
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
def build_model(seed: int, config: Optional[dict] = None) -> torch.nn.Module:
    """ComfyUI's WanModel with Wan 2.1's initialisation (its op set skips init), on the CPU."""
    import comfy.ldm.wan.model
    import comfy.ops

    model = comfy.ldm.wan.model.WanModel(operations=comfy.ops.disable_weight_init, **(config or MODEL_CONFIG))
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


def _probe(model, encoder: PromptEncoder, texts: list[str]):
    """The model (a copy with a random head while the head is still zero: it would output zeros) and
    fixed CPU inputs for the start-up checks: x, sigma, packed context and bias, full 512-token context."""
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
    return model, x, sigma, context, bias, full


def verify_padding_trick(model, encoder: PromptEncoder, texts: list[str]) -> float:
    """Max |difference| between the packed forward and ComfyUI's own forward on the full
    512-token context with ComfyUI's default attention (relative to the output's max; CPU, fp32)."""
    model, x, sigma, context, bias, full = _probe(model, encoder, texts)
    with torch.no_grad():
        ours = forward(model, x, sigma, context, bias)
        theirs = model(x, sigma * 1000.0, full, transformer_options={})
    return (ours - theirs).abs().max().item() / theirs.abs().max().item()


def autocast(device: torch.device, precision: str):
    """The training forward's autocast: bf16 when asked, else none (fp32, or TF32 matmuls on CUDA)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_forward_diff(model, encoder: PromptEncoder, texts: list[str], device: torch.device,
                        precision: str) -> float:
    """Relative max difference between the packed forward on `device` at `precision` and the same
    forward on the CPU in fp32 (the precision check of a GPU / bf16 run)."""
    import copy

    model, x, sigma, context, bias, _ = _probe(model, encoder, texts)
    with torch.no_grad():
        reference = forward(model, x, sigma, context, bias)
        on_device = copy.deepcopy(model).to(device)
        with autocast(device, precision):
            out = forward(on_device, *(t.to(device) for t in (x, sigma, context, bias)))
    return ((out.float().cpu() - reference).abs().max() / reference.abs().max()).item()


def export(ema: dict[str, torch.Tensor], path: str, config: Optional[dict] = None) -> None:
    """fp16 safetensors (from any device), the model config in the metadata; written atomically."""
    import safetensors.torch

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tensors = {k: v.detach().to(device="cpu", dtype=torch.float16).contiguous() for k, v in ema.items()}
    safetensors.torch.save_file(tensors, path + ".tmp", metadata={
        "countworld": json.dumps({"config": {k: str(v) for k, v in (config or MODEL_CONFIG).items()}})})
    os.replace(path + ".tmp", path)


def plot_curve(log_path: str, png_path: str, device: str = "cpu", ylabel: str = "flow-matching MSE",
               title: str = "CountWorld tiny Wan 2.1 ({minutes:.0f} min {device}, {steps} steps)") -> None:
    """The loss curve of a training log (batch losses and their running mean, log scale)."""
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
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.set_title(title.format(minutes=rows[-1]["elapsed_min"], device=device.upper(), steps=int(steps[-1])))
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- data
class TrainingBatches(torch.utils.data.Dataset):
    """Item k: step k's batch, world.training_batch(seed, k), as CPU tensors (x0 [B, 16, 2, 32, 32],
    packed context, bias).  A function of (seed, k) only, so any number of loader workers yields the
    same batches, in step order.  `context_dtype` bfloat16 (bf16 runs) halves what workers pass over
    shared memory and is exact there: the context's only use is the text-embedding Linear, whose
    input autocast casts to bf16 anyway."""

    def __init__(self, seed: int, batch: int, excluded: frozenset, encoder: Optional[PromptEncoder] = None,
                 context_dtype: torch.dtype = torch.float32):
        self.seed, self.batch, self.excluded, self.encoder = seed, batch, excluded, encoder
        self.context_dtype = context_dtype

    def __getstate__(self):   # spawn / forkserver workers load their own text encoder
        return dict(self.__dict__, encoder=None)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.encoder is None:
            self.encoder = PromptEncoder(load_clip())
        videos = world.training_batch(self.seed, step, self.batch, excluded_prompts=self.excluded)
        x0 = torch.from_numpy(np.stack([v.latent for v in videos]))
        context, bias = packed_context([self.encoder.rows(v.prompt) for v in videos])
        return x0, context.to(self.context_dtype), bias


class _Steps(torch.utils.data.Sampler):
    """0, 1, 2, ... (the loop stops on steps or wall time)."""

    def __init__(self) -> None:
        pass

    def __iter__(self):
        return itertools.count()


def batch_stream(source: TrainingBatches, workers: int, pin_memory: bool, seed: int):
    """Step-ordered batches: in this process (workers = 0, the CPU default), or rendered and
    text-encoded ahead by `workers` forked processes (a GPU is not left waiting for the CPU)."""
    if workers <= 0:
        return (source[step] for step in itertools.count())
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(source, batch_size=None, sampler=_Steps(), num_workers=workers,
                                         pin_memory=pin_memory, prefetch_factor=2, multiprocessing_context=context,
                                         generator=torch.Generator().manual_seed(seed))
    return iter(loader)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=55.0, help="wall-time budget for the step loop")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: time only; "
                        "with --steps the run is repeatable exactly and --minutes is ignored)")
    parser.add_argument("--seed", type=int, default=1234, help="data, initialisation and noise")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the main process")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="cpu (default), cuda, or auto (cuda when available)")
    parser.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16"), default="auto",
                        help="auto: fp32 on the CPU; bf16 autocast (+ TF32) on CUDA")
    parser.add_argument("--workers", type=int, default=-1, help="batch-making processes (-1: 0 on the CPU, "
                        "all cores but two on CUDA)")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="CUDA: allow non-deterministic kernels (faster; reruns then differ in the last bits)")
    parser.add_argument("--dim", type=int, default=MODEL_CONFIG["dim"], help="model width (a multiple of 128; "
                        "heads = dim / 128 as ComfyUI loads it)")
    parser.add_argument("--layers", type=int, default=MODEL_CONFIG["num_layers"], help="transformer blocks")
    parser.add_argument("--ffn-dim", type=int, default=None, help="default 4 x dim")
    parser.add_argument("--out", default=os.path.join(HERE, "checkpoints"),
                        help=f"checkpoint: a folder (file {CHECKPOINT_NAME}) or a .safetensors path")
    parser.add_argument("--log", default=None, help="default: countworld/train_log.jsonl for the committed "
                        "checkpoint, else <checkpoint stem>.train_log.jsonl beside the checkpoint")
    parser.add_argument("--plot", default=None, help="default: as --log, training_curve.png")
    parser.add_argument("--export-every-min", type=float, default=5.0)
    return parser.parse_args(argv)


def resolve_paths(args: argparse.Namespace) -> tuple[str, str, str]:
    """Checkpoint, log and curve paths: a checkpoint other than the committed one never overwrites the
    committed log and curve."""
    ckpt = args.out if args.out.endswith(".safetensors") else os.path.join(args.out, CHECKPOINT_NAME)
    if os.path.abspath(ckpt) == COMMITTED_CHECKPOINT:
        log, plot = os.path.join(HERE, "train_log.jsonl"), os.path.join(HERE, "training_curve.png")
    else:
        stem = os.path.splitext(ckpt)[0]
        log, plot = stem + ".train_log.jsonl", stem + ".training_curve.png"
    return ckpt, args.log or log, args.plot or plot


def resolve_device(args: argparse.Namespace) -> tuple[torch.device, str, int]:
    """(device, precision, workers) from the options; CUDA set up for speed and reproducibility."""
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device (is this a CPU build of torch?)")
        if not args.nondeterministic:    # before the first cuBLAS handle
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
    precision = args.precision
    if precision == "auto":
        precision = "fp32" if device.type == "cpu" else ("bf16" if torch.cuda.is_bf16_supported() else "tf32")
    if precision == "tf32" and device.type != "cuda":
        raise SystemExit("--precision tf32 is for CUDA")
    if device.type == "cuda" and precision in ("tf32", "bf16"):
        torch.set_float32_matmul_precision("high")     # TF32 for the matmuls autocast leaves in fp32
        torch.backends.cudnn.allow_tf32 = True
    workers = args.workers
    if workers < 0:
        workers = 0 if device.type == "cpu" else max(1, (os.cpu_count() or 1) - 2)
    return device, precision, workers


def train(argv: Optional[Sequence[str]] = None) -> dict:
    """One training run (the CLI; tests call it in-process).  Returns the paths, steps and losses."""
    args = parse_args(argv)
    ckpt, log_path, plot_path = resolve_paths(args)
    config = model_config(args.dim, args.layers, args.ffn_dim)
    device, precision, workers = resolve_device(args)
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    try:
        with training_mode():
            return _train(args, config, device, precision, workers, ckpt, log_path, plot_path)
    finally:    # in-process callers (tests) get their thread count and global RNG back
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng_state)


@contextlib.contextmanager
def training_mode():
    """ComfyUI's training switch, on while we train (as comfy_extras/nodes_train.py sets it).  Newer
    ComfyUI (0.33) routes Wan's RoPE through comfy_kitchen.apply_rope1, which has no backward, unless
    comfy.model_management.in_training is set; 0.3.75 has no such flag and nothing changes there."""
    from numina_dev import comfy_runtime

    comfy_runtime.bootstrap()   # the CLI has not imported ComfyUI yet (load_clip would do it next)
    import comfy.model_management as mm

    if not hasattr(mm, "in_training"):
        yield
        return
    before = mm.in_training
    mm.in_training = True
    try:
        yield
    finally:
        mm.in_training = before


def _train(args, config, device, precision, workers, ckpt, log_path, plot_path) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clip = load_clip()
    encoder = PromptEncoder(clip)
    heldout = prompt_sets.excluded_from_training()
    checks = ["", "three red circles drifting on a grey background",
              "two red circles and five blue squares and one green triangle sliding on a grey background"]
    text_diff = encoder.verify(checks)
    model = build_model(args.seed, config)
    trick_diff = verify_padding_trick(model, encoder, checks)
    print(f"text rows vs ComfyUI encode: max diff {text_diff:.2e}; padding trick vs 512-token forward: "
          f"relative diff {trick_diff:.2e}", flush=True)
    if text_diff > 1e-5 or trick_diff > 1e-4:
        raise SystemExit("shortcut is not exact: refusing to train")
    if device.type != "cpu" or precision != "fp32":
        device_diff = device_forward_diff(model, encoder, checks, device, precision)
        print(f"forward on {device} in {precision} vs CPU fp32: relative diff {device_diff:.2e}", flush=True)
        if not device_diff < 0.1:
            raise SystemExit(f"the {device} / {precision} forward is far from the CPU fp32 one: refusing to train")

    # workers fork before the model goes to the device (a forked child never touches CUDA)
    source = TrainingBatches(args.seed, args.batch, heldout, encoder,
                             torch.bfloat16 if precision == "bf16" else torch.float32)
    batches = batch_stream(source, workers, pin_memory=device.type == "cuda", seed=args.seed)
    model.to(device)
    params = [p for p in model.parameters()]
    print(f"parameters: {sum(p.numel() for p in params) / 1e6:.2f} M; config {config}; device {device}, "
          f"precision {precision}, {workers} batch workers", flush=True)
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01, **fused)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema_values = list(ema.values())
    live_values = [v for k, v in model.state_dict().items()]     # share storage with the parameters
    warmup = 30
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    log = open(log_path, "w")
    log.write(f"# seed={args.seed} batch={args.batch} lr={args.lr} ema={args.ema} minutes={args.minutes} "
              f"steps={args.steps} threads={args.threads} config={config}"
              + ("" if device.type == "cpu" and precision == "fp32" and workers == 0 else
                 f" device={device} precision={precision} workers={workers}"
                 + (f" deterministic={not args.nondeterministic}" if device.type == "cuda" else ""))
              + "\n")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    non_blocking = device.type == "cuda"
    start = time.time()
    last_export = start
    waited = 0.0
    losses = []
    step = 0
    while True:
        elapsed = time.time() - start
        if (args.steps and step >= args.steps) or (not args.steps and elapsed > args.minutes * 60):
            break
        t_wait = time.time()
        x0, context, bias = (t.to(device, non_blocking=non_blocking) for t in next(batches))
        waited += time.time() - t_wait
        noise = torch.randn(x0.shape, generator=gen, device=device)
        u = torch.rand(args.batch, generator=gen, device=device)
        s = SHIFT * u / (1 + (SHIFT - 1) * u)
        sv = s.view(-1, 1, 1, 1, 1)
        xt = (1 - sv) * x0 + sv * noise
        with autocast(device, precision):
            pred = forward(model, xt, s, context, bias)
        loss = F.mse_loss(pred.float(), noise - x0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            torch._foreach_mul_(ema_values, decay)
            torch._foreach_add_(ema_values, live_values, alpha=1 - decay)
        step += 1
        now = time.time()
        losses.append(loss.item())
        log.write(json.dumps({"step": step, "loss": round(losses[-1], 5), "grad_norm": round(grad_norm.item(), 4),
                              "elapsed_min": round((now - start) / 60, 3)}) + "\n")
        log.flush()
        if step % 20 == 0:
            print(f"step {step} loss {losses[-1]:.4f} {(now - start) / step:.2f} s/step"
                  + (f", {100 * waited / (now - start):.0f}% waiting for batches" if device.type != "cpu" else ""),
                  flush=True)
        if now - last_export > args.export_every_min * 60:
            export(ema, ckpt, config)
            last_export = now
    del batches     # stops the workers
    export(ema, ckpt, config)
    model.load_state_dict(ema)
    model.to("cpu")
    print(f"padding trick on the trained EMA model: relative diff {verify_padding_trick(model, encoder, checks):.2e}",
          flush=True)
    log.close()
    if step:
        os.makedirs(os.path.dirname(os.path.abspath(plot_path)), exist_ok=True)
        plot_curve(log_path, plot_path, device.type)
    minutes = (time.time() - start) / 60
    print(f"done: {step} steps in {minutes:.1f} min; EMA weights -> {ckpt}", flush=True)
    return {"checkpoint": ckpt, "log": log_path, "plot": plot_path, "steps": step, "losses": losses,
            "minutes": minutes, "device": str(device), "precision": precision, "workers": workers, "config": config}


def main() -> None:
    train()


if __name__ == "__main__":
    main()
