"""CountWorld evaluation: sample prompts through ComfyUI's real nodes, count, score.

A library for benchmarks (a count-correction method plugs in its own `sample_fn` or a patched
MODEL) plus a CLI for the plain-sampling baseline:

    nice .numina_env/venv/bin/python countworld/evaluate.py --set heldout --seeds 3 \
        --json benchmarks/countworld_baseline.json

Graph per video: UNETLoader -> ModelSamplingSD3 (shift 3) ; NuminaTinyTextEncoderLoader ->
CLIPTextEncode (prompt, and "" as negative) ; EmptyHunyuanLatentVideo (256 x 256, 5 frames) ->
KSampler (euler, simple, CFG 1, 25 steps), node classes called in-process.  CFG 1 was chosen on the
tuning set, never on the held-out set: for the committed model, count accuracy 0.410 at CFG 1 and
0.358 at 1.5 (1 seed); for the first, 20 x 20 world's model 0.27 at 1, 0.10 at 1.5, speckled
overcounts at 2 and 4.
Metric (the published one): per latent frame, the fraction of the prompt's nouns whose count is
exact; mean over frames, then over videos (seeds) and prompts.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from countworld import counter, world
from countworld.prompts import heldout_prompts, tuning_prompts

HERE = os.path.dirname(os.path.abspath(__file__))

CHECKPOINT = "countworld_wan21_t2v.safetensors"
TEXT_ENCODER = "numina_tiny_umt5.safetensors"
DEFAULTS = dict(steps=25, cfg=1.0, shift=3.0, sampler_name="euler", scheduler="simple")


# ----------------------------------------------------------------------------- ComfyUI pipeline
class ComfyPipeline:
    """ComfyUI's own nodes, loaded once: the plain text-to-video path of a Wan 2.1 workflow."""

    def __init__(self, checkpoint: str = CHECKPOINT, shift: float = DEFAULTS["shift"], lora: str = "",
                 lora_strength: float = 1.0) -> None:
        from numina_dev import comfy_runtime

        comfy_runtime.bootstrap()
        import comfy.utils
        import folder_paths
        import nodes

        comfy.utils.PROGRESS_BAR_ENABLED = False
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3

        ckpt_dir = os.path.join(HERE, "checkpoints")
        if os.path.isdir(ckpt_dir):   # the repository's checkpoint first: a copy in models/ may be stale
            folder_paths.add_model_folder_path("diffusion_models", ckpt_dir, is_default=True)
            folder_paths.add_model_folder_path("loras", ckpt_dir, is_default=True)
        self.nodes = nodes
        unet = nodes.UNETLoader().load_unet(checkpoint, "default")[0]
        if lora:   # a step-distillation LoRA, loaded as users load lightx2v's
            unet = nodes.LoraLoaderModelOnly().load_lora_model_only(unet, lora, lora_strength)[0]
        self.model = ModelSamplingSD3().patch(unet, shift)[0]
        from countworld.train import tiny_text_encoder_module

        self.clip = tiny_text_encoder_module().NuminaTinyTextEncoderLoader.execute(TEXT_ENCODER).result[0]
        self._conditioning: dict[str, Any] = {}

    def encode(self, text: str):
        if text not in self._conditioning:
            self._conditioning[text] = self.nodes.CLIPTextEncode().encode(self.clip, text)[0]
        return self._conditioning[text]

    def empty_latent(self, batch: int = 1) -> dict:
        from comfy_extras.nodes_hunyuan import EmptyHunyuanLatentVideo

        return EmptyHunyuanLatentVideo.execute(world.VIDEO_WIDTH, world.VIDEO_HEIGHT, world.VIDEO_LENGTH,
                                               batch).result[0]

    def sample(self, prompt: str, seed: int, steps: int = DEFAULTS["steps"], cfg: float = DEFAULTS["cfg"],
               model: Any = None, negative: str = "") -> torch.Tensor:
        """KSampler output (raw latent [1, 16, 2, 32, 32]) for one prompt and seed; `model` may be a
        patched clone of self.model (e.g. with a count-correction method attached)."""
        out = self.nodes.KSampler().sample(model if model is not None else self.model, seed, steps, cfg,
                                           DEFAULTS["sampler_name"], DEFAULTS["scheduler"], self.encode(prompt),
                                           self.encode(negative), self.empty_latent())[0]
        return out["samples"]


# ----------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class VideoResult:
    prompt: str
    seed: int
    targets: tuple[tuple[str, int], ...]          # (noun, requested count)
    counts: dict[str, list[int]]                  # noun -> count per latent frame
    seconds: float
    evaluations: int = 0                          # model evaluations (Wan forward calls) it cost; 0: not counted

    @property
    def frame_scores(self) -> list[float]:
        """Per frame: fraction of the prompt's nouns counted exactly."""
        frames = len(next(iter(self.counts.values())))
        return [float(np.mean([self.counts[n][t] == k for n, k in self.targets])) for t in range(frames)]

    @property
    def score(self) -> float:
        return float(np.mean(self.frame_scores))

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "VideoResult":
        """A result as a benchmark report stores it (`asdict`, targets as JSON lists)."""
        return cls(**{**record, "targets": tuple(tuple(t) for t in record["targets"])})

    def temporal_consistency(self) -> float:
        """Mean over the prompt's nouns of the fraction of frames equal to that noun's modal count."""
        values = []
        for noun, _ in self.targets:
            series = self.counts[noun]
            values.append(Counter(series).most_common(1)[0][1] / len(series))
        return float(np.mean(values))


def score_counts(prompt: str, seed: int, counts: dict[str, np.ndarray], seconds: float = 0.0,
                 evaluations: int = 0) -> VideoResult:
    targets = tuple((t.noun, t.count) for t in world.parse_prompt(prompt))
    if not targets:
        raise ValueError(f"prompt {prompt!r} names no CountWorld target (e.g. 'three red circles')")
    return VideoResult(prompt, seed, targets, {n: [int(c) for c in v] for n, v in counts.items()}, seconds,
                       int(evaluations))


def bootstrap_interval(per_prompt: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of `per_prompt` values, resampling prompts."""
    rng = np.random.default_rng(seed)
    means = per_prompt[rng.integers(0, len(per_prompt), size=(resamples, len(per_prompt)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def prompt_mean_interval(differences: Iterable[tuple[str, float]], resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float, float, int]:
    """(prompt, difference) per video -> the mean over prompts of their mean difference, its 95 %
    bootstrap interval (`bootstrap_interval`) and the number of prompts; NaN differences are left
    out, and (nan, nan, nan, 0) when none is left."""
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for prompt, difference in differences:
        if not np.isnan(difference):
            by_prompt[prompt].append(difference)
    values = np.array([np.mean(v) for v in by_prompt.values()])
    if not len(values):
        return float("nan"), float("nan"), float("nan"), 0
    low, high = bootstrap_interval(values, resamples, seed)
    return float(values.mean()), low, high, len(values)


def summarise(results: Sequence[VideoResult]) -> dict[str, Any]:
    """The published metric and its breakdowns (by requested count, by nouns per prompt)."""
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_prompt[r.prompt].append(r.score)
    exact_by_count: dict[int, list[float]] = defaultdict(list)
    mean_count_by_target: dict[int, list[float]] = defaultdict(list)
    by_nouns: dict[int, list[float]] = defaultdict(list)
    for r in results:
        by_nouns[len(r.targets)].append(r.score)
        for noun, k in r.targets:
            exact_by_count[k].extend(float(c == k) for c in r.counts[noun])
            mean_count_by_target[k].extend(float(c) for c in r.counts[noun])
    return {
        "videos": len(results),
        "prompts": len(by_prompt),
        "count_accuracy": float(np.mean([np.mean(v) for v in by_prompt.values()])),
        "exact_by_target_count": {k: round(float(np.mean(v)), 4) for k, v in sorted(exact_by_count.items())},
        "mean_count_by_target_count": {k: round(float(np.mean(v)), 3) for k, v in sorted(mean_count_by_target.items())},
        "noun_frames_by_target_count": {k: len(v) for k, v in sorted(exact_by_count.items())},
        "accuracy_by_nouns_per_prompt": {k: round(float(np.mean(v)), 4) for k, v in sorted(by_nouns.items())},
        "temporal_consistency": float(np.mean([r.temporal_consistency() for r in results])),
        "seconds_per_video": float(np.mean([r.seconds for r in results])),
        "evaluations_per_video": float(np.mean([r.evaluations for r in results])),
    }


def evaluate(prompts: Sequence[str], seeds: Sequence[int],
             sample_fn: Callable[[str, int], torch.Tensor], log: Optional[Callable[[str], None]] = None
             ) -> list[VideoResult]:
    """Sample every (prompt, seed) with sample_fn (-> raw KSampler latent [1, 16, T, H, W]) and count."""
    results = []
    for i, prompt in enumerate(prompts):
        for seed in seeds:
            start = time.time()
            samples = sample_fn(prompt, seed)
            seconds = time.time() - start
            counts = counter.count_samples(samples)[0]
            results.append(score_counts(prompt, seed, counts, seconds))
        if log:
            last = results[-len(seeds):]
            log(f"[{i + 1}/{len(prompts)}] {prompt!r}: " + " ".join(
                str({n: r.counts[n] for n, _ in r.targets}) for r in last))
    return results


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"count accuracy (published metric): {summary['count_accuracy']:.3f} over {summary['prompts']} prompts, "
             f"{summary['videos']} videos",
             f"temporal consistency (frames at the modal count): {summary['temporal_consistency']:.3f}",
             f"wall time per video: {summary['seconds_per_video']:.2f} s",
             "target count : " + " ".join(f"{k:>5}" for k in summary["exact_by_target_count"]),
             "exact        : " + " ".join(f"{v:5.2f}" for v in summary["exact_by_target_count"].values()),
             "mean counted : " + " ".join(f"{v:5.2f}" for v in summary["mean_count_by_target_count"].values()),
             "noun-frames  : " + " ".join(f"{v:5d}" for v in summary["noun_frames_by_target_count"].values()),
             "by nouns per prompt: " + str(summary["accuracy_by_nouns_per_prompt"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("heldout", "tuning"), default="heldout")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per prompt")
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts (smoke runs)")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--cfg", type=float, default=DEFAULTS["cfg"])
    parser.add_argument("--checkpoint", default=CHECKPOINT)
    parser.add_argument("--shift", type=float, default=DEFAULTS["shift"],
                        help="ModelSamplingSD3 shift (5 with a step-distillation LoRA, as users set lightx2v's)")
    parser.add_argument("--lora", default="", help="a step-distillation LoRA in countworld/checkpoints "
                        "(countworld/distill.py), loaded with LoraLoaderModelOnly")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="", help="write summary and per-video results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    prompts = heldout_prompts() if args.set == "heldout" else tuning_prompts()
    if args.limit:
        prompts = prompts[: args.limit]
    pipeline = ComfyPipeline(args.checkpoint, shift=args.shift, lora=args.lora)
    start = time.time()
    results = evaluate(prompts, list(range(args.seeds)),
                       lambda p, s: pipeline.sample(p, s, args.steps, args.cfg), log=lambda m: print(m, flush=True))
    summary = summarise(results)
    summary.update(set=args.set, seeds=args.seeds, steps=args.steps, cfg=args.cfg, checkpoint=args.checkpoint,
                   shift=args.shift, lora=args.lora,
                   total_minutes=round((time.time() - start) / 60, 2))
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "videos": [asdict(r) for r in results]}, f, indent=1)


if __name__ == "__main__":
    main()
