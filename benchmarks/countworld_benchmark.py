"""CountWorld benchmark: does NUMINA give more videos with the right number of objects, and at what cost?

One run compares, on the CountWorld prompts (countworld/prompts.py, held-out by default) and the
same seeds, for one CountWorld model (--checkpoint; the second model chose nothing):
  plain              KSampler on the model
  numina             the pack's nodes in a graph run by ComfyUI's executor: Capture -> LayoutInfer ->
                     LayoutRefine -> NuminaSampler, every NUMINA setting at the node's default
                     (PRESETS["defaults"]; a test checks they are the nodes' defaults); nothing is
                     chosen for the model
  numina_published   the same graph with the published behaviour (PRESETS["published"]: published
                     step and block, that block's cross-attention, faithful readout, published
                     fixed-offset bias in the dense form)
  numina_tuned       (on request) the settings chosen for the committed model on its tuning prompts
                     before the defaults could choose for themselves (countworld/settings.py)
  best_of_N          N plain seeds (seed, seed + 1000, ...), the video the counter scores best: an
                     ORACLE no user has (the counter is the benchmark's judge), N = 2, 3, 4
  numina_best_of_2   NUMINA on seeds seed and seed + 1000, the counter's pick (also an oracle)
  checked_N          the run that checks itself (NuminaCheckedSampler) with at most N tries (seeds seed,
                     seed + 1, ...), judged on the decoded frames by the CountWorld frame counter (a
                     near-perfect judge here, not the latent counter the metric uses); N = 2, 3
  checked_erring_N   the same with a judge that adds or misses one object in 20 % of noun-frames
                     (seeded): what a detector's mistakes cost
  The tries of checked_2 are the first two of checked_3 (the node is deterministic and stops at the
  first try with every count right; tests/comfy/test_count_check.py checks the prefix), so one run
  of the node with 3 tries gives both: checked_2 is the best of its first two tries.
Cost is counted in model evaluations (Wan forward calls, one per step at CFG 1): plain N, a NUMINA
run its reference pass's evaluations (A + 1 with the capture's approach_steps A < k, else k + 1; k
the reference step) plus the rest of the run when the counts read are right (NuminaSampler
finishes the reference pass) or plus N when it guides.  Reports the published metric (per frame, fraction of nouns
counted exactly; mean over frames, then over prompts) and the same counting only objects of the
asked colour, the gain over plain with a 95 % bootstrap interval over prompts, exact-count rate by
target count, evaluations and seconds per video, and how often the layout NUMINA reads at the
reference step equals the counter's count of the plain run's final frames.

    .numina_env/venv/bin/python benchmarks/countworld_benchmark.py --seeds 2 --jobs 2 \
        --json benchmarks/results/countworld.json --plot benchmarks/results/countworld.png
    .numina_env/venv/bin/python benchmarks/countworld_benchmark.py --seeds 2 --jobs 2 \
        --checkpoint countworld_wan21_t2v_s1.safetensors \
        --json benchmarks/results/countworld_s1.json --plot benchmarks/results/countworld_s1.png

--jobs N splits the prompts over N worker processes (one per core).  --set tuning --numina
'key=value,...' is how settings were tried (countworld/settings.py lists every value tried).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from typing import Any, Optional

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "testing")):   # also without the venv's numina_dev.pth (a GPU machine)
    if p not in sys.path:
        sys.path.insert(0, p)

from countworld import counter, evaluate, quality, world  # noqa: E402
from countworld.prompts import heldout_prompts, tuning_prompts  # noqa: E402
from countworld.settings import NUMINA_SETTINGS, reference_step_for  # noqa: E402

# Settings of the NUMINA methods, by node input.  "defaults" are the nodes' own defaults (what a user
# who drops the nodes in gets, and what the shipped workflows use; tests/countworld checks that they
# are); "published" is the paper's behaviour; "tuned" the settings chosen for the committed model on
# its tuning prompts before the defaults could choose for themselves (countworld/settings.py).
PRESETS: dict[str, dict[str, Any]] = {
    "defaults": dict(mode="auto", reference_step=-1, block=-1, cross_attention_blocks="all", bias="calibrated",
                     bias_form="auto", added_boost=0.0, bias_modifiers=True, approach_steps=2),
    "published": dict(mode="faithful", reference_step=-1, block=-1, cross_attention_blocks="capture block",
                      bias="published", bias_form="dense", added_boost=0.0, bias_modifiers=False, approach_steps=0),
    "tuned": dict(mode=NUMINA_SETTINGS["mode"], reference_step=None, block=NUMINA_SETTINGS["block"], approach_steps=0,
                  cross_attention_blocks="capture block", bias="published", bias_form="auto",
                  added_boost=NUMINA_SETTINGS["added_boost"], bias_modifiers=NUMINA_SETTINGS["bias_modifiers"]),
}
# method -> preset; "numina" takes --numina overrides (tuning experiments)
NUMINA_METHODS = {"numina": "defaults", "numina_published": "published", "numina_tuned": "tuned"}
SECOND_MODEL = "countworld_wan21_t2v_s1.safetensors"   # trained with another seed; chooses nothing
METHODS = ("plain", "numina", "numina_published", "best_of_2", "best_of_3", "best_of_4", "numina_best_of_2")
CHECKED_METHODS = ("checked_2", "checked_3", "checked_erring_2", "checked_erring_3")
JUDGE_ERROR_RATE = 0.2      # the erring judge: one object added or missed in this share of noun-frames


def numina_graph(prompt: str, seed: int, steps: int, cfg: float, prefix: str, settings: dict[str, Any],
                 checkpoint: str = evaluate.CHECKPOINT, shift: float = evaluate.DEFAULTS["shift"],
                 lora: str = "") -> dict[str, Any]:
    """API-format graph: Capture -> LayoutInfer -> LayoutRefine -> NuminaSampler (which finishes the
    reference pass when the counts read are right, and runs the guided pass otherwise); with `lora`, a
    step-distillation LoRA through LoraLoaderModelOnly as users load lightx2v's."""
    sampling = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": evaluate.DEFAULTS["sampler_name"],
                "scheduler": evaluate.DEFAULTS["scheduler"]}
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": checkpoint, "weight_dtype": "default"}},
        "2": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": shift}},
        "3": {"class_type": "NuminaTinyTextEncoderLoader", "inputs": {"text_encoder": evaluate.TEXT_ENCODER}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["3", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["3", 0]}},
        "6": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": world.VIDEO_WIDTH, "height": world.VIDEO_HEIGHT, "length": world.VIDEO_LENGTH,
                         "batch_size": 1}},
        "7": {"class_type": "NuminaAttentionCapture",
              "inputs": {"model": ["2", 0], "clip": ["3", 0], "positive": ["4", 0], "negative": ["5", 0],
                         "latent": ["6", 0], **sampling, "prompt": prompt, "count_override": "",
                         "reference_step": settings["reference_step"], "block": settings["block"],
                         "cross_attention_blocks": settings["cross_attention_blocks"],
                         "approach_steps": settings["approach_steps"]}},
        "8": {"class_type": "NuminaLayoutInfer", "inputs": {"capture": ["7", 0], "mode": settings["mode"]}},
        "9": {"class_type": "NuminaLayoutRefine", "inputs": {"layout": ["8", 0]}},
        "10": {"class_type": "NuminaSampler", "inputs": {"model": ["2", 0], "capture": ["7", 0], "layout": ["9", 0],
                                                         "bias_form": settings["bias_form"], "bias": settings["bias"],
                                                         "added_boost": settings["added_boost"],
                                                         "bias_modifiers": bool(settings["bias_modifiers"])}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": prefix}},
    }
    if lora:
        graph["15"] = {"class_type": "LoraLoaderModelOnly",
                       "inputs": {"model": ["1", 0], "lora_name": lora, "strength_model": 1.0}}
        graph["2"]["inputs"]["model"] = ["15", 0]
    return graph


def checked_graph(prompt: str, seed: int, steps: int, cfg: float, settings: dict[str, Any], tries: int,
                  error_rate: float, checkpoint: str = evaluate.CHECKPOINT, shift: float = evaluate.DEFAULTS["shift"],
                  lora: str = "") -> dict[str, Any]:
    """API-format graph: Capture -> NuminaCheckedSampler (decode: the CountWorld VAE's code
    pictures; judge: the CountWorld frame counter, erring at ``error_rate``)."""
    graph = numina_graph(prompt, seed, steps, cfg, "unused", settings, checkpoint, shift, lora)
    for node in ("8", "9", "10", "11"):
        del graph[node]
    graph["12"] = {"class_type": "NuminaCountWorldVAE", "inputs": {"upscale": 8}}
    graph["13"] = {"class_type": "NuminaCountWorldCounterLoader",
                   "inputs": {"error_rate": error_rate, "error_seed": seed}}
    graph["14"] = {"class_type": "NuminaCheckedSampler",
                   "inputs": {"model": ["2", 0], "capture": ["7", 0], "vae": ["12", 0], "counter": ["13", 0],
                              "tries": tries, "mode": settings["mode"], "bias_form": settings["bias_form"],
                              "bias": settings["bias"], "added_boost": settings["added_boost"],
                              "bias_modifiers": bool(settings["bias_modifiers"])}}
    return graph


def checked_prefix(run: Any, tries: int) -> tuple[torch.Tensor, int]:
    """What the checked sampler with at most ``tries`` tries returns, from a run with as many or
    more: its first tries (it stops at the first all-right try, so they are the same), the best
    score kept, their model evaluations summed."""
    from numina_ops.judge import best_try

    first = run.tries[:tries]
    return first[best_try([t.check.score for t in first])].samples, sum(t.evaluations for t in first)


class EvaluationCounter:
    """Counts Wan forward calls in this process: the cost of a method in model evaluations (at CFG 1
    one per step; the counter needs no cooperation from the method)."""

    def __init__(self) -> None:
        import comfy.ldm.wan.model as wan

        self.calls = 0
        original = wan.WanModel.forward

        def counted(model, *args, **kwargs):
            self.calls += 1
            return original(model, *args, **kwargs)
        wan.WanModel.forward = counted

    def __enter__(self) -> "EvaluationCounter":
        self.start = self.calls
        return self

    def __exit__(self, *exc) -> None:
        self.used = self.calls - self.start


class Runner:
    def __init__(self, steps: int, cfg: float, checkpoint: str, shift: float = evaluate.DEFAULTS["shift"],
                 lora: str = "") -> None:
        from numina_dev import comfy_runtime

        self.pipeline = evaluate.ComfyPipeline(checkpoint=checkpoint, shift=shift, lora=lora)
        comfy_runtime.load_custom_nodes()
        import folder_paths

        self.comfy_runtime = comfy_runtime
        # the pack's package as ComfyUI's loader named it (its numina_ops modules live under it)
        self.pack_package = comfy_runtime.pack_module("NuminaLayoutRefine").__package__.rsplit(".", 1)[0]
        self.folder_paths = folder_paths
        self.out_dir = tempfile.mkdtemp(prefix="numina_countworld_")
        folder_paths.set_output_directory(self.out_dir)
        self.steps, self.cfg, self.checkpoint, self.shift, self.lora = steps, cfg, checkpoint, shift, lora
        self.layout_reads: list[dict[str, Any]] = []
        self.evaluations = EvaluationCounter()

    def set_constants(self, overrides: dict[str, Any]) -> None:
        """Set the CONSTANTS among `overrides` in the pack ComfyUI loaded (tuning experiments)."""
        for key, value in overrides.items():
            if key in CONSTANTS:
                module, name, _ = CONSTANTS[key]
                setattr(sys.modules[self.pack_package + ".numina_ops." + module], name, value)

    def plain(self, prompt: str, seed: int) -> torch.Tensor:
        return self.pipeline.sample(prompt, seed, self.steps, self.cfg)

    def numina(self, prompt: str, seed: int, settings: dict[str, Any], record: bool = False) -> torch.Tensor:
        import safetensors.torch

        prefix = f"bench/numina_{seed}"
        executor, server = self.comfy_runtime.execute_graph(
            numina_graph(prompt, seed, self.steps, self.cfg, prefix, settings, self.checkpoint, self.shift, self.lora))
        if not executor.success:
            raise RuntimeError(f"NUMINA graph failed for {prompt!r}: {self.comfy_runtime.execution_error(server)}")
        saved = executor.history_result["outputs"]["11"]["latents"][0]
        path = os.path.join(self.out_dir, saved["subfolder"], saved["filename"])
        latent = safetensors.torch.load_file(path)["latent_tensor"]
        os.remove(path)
        if record:
            self._remember_layout(prompt, seed, executor)
        return latent

    def checked(self, prompt: str, seed: int, settings: dict[str, Any], tries: int, error_rate: float) -> Any:
        """Every try of NuminaCheckedSampler (its `tries` output, a CheckedRun) run in a graph."""
        executor, server = self.comfy_runtime.execute_graph(
            checked_graph(prompt, seed, self.steps, self.cfg, settings, tries, error_rate, self.checkpoint,
                          self.shift, self.lora))
        if not executor.success:
            raise RuntimeError(f"checked graph failed for {prompt!r}: {self.comfy_runtime.execution_error(server)}")
        outputs = self.comfy_runtime.cached_outputs(executor, "14")
        run, latent = outputs[4][0], outputs[1][0]
        kept, _ = checked_prefix(run, tries)
        if not torch.equal(kept, latent["samples"].cpu()):
            raise RuntimeError("the checked sampler's output is not the best of its own tries")
        return run

    def _remember_layout(self, prompt: str, seed: int, executor: Any) -> None:
        """The layout NUMINA read at the reference step (before refinement), per noun per frame."""
        outputs = self.comfy_runtime.cached_outputs(executor, "8")  # get() is a coroutine on 0.33
        if outputs is None:
            return
        layout = outputs[0][0]
        self.layout_reads.append({"prompt": prompt, "seed": seed,
                                  "read": {n.noun: list(n.counts) for n in layout.nouns},
                                  "target": {n.noun: n.target for n in layout.nouns},
                                  "notes": {n.noun: list(n.notes) for n in layout.nouns}})


def best_of(candidates: list[tuple[torch.Tensor, int]], prompt: str, seed: int) -> tuple[torch.Tensor, int]:
    """The candidate the counter scores best (an oracle: no user has the counter), and the summed
    cost of drawing all of them."""
    scores = [evaluate.score_counts(prompt, seed, counter.count_samples(s)[0]).score for s, _ in candidates]
    return candidates[int(np.argmax(scores))][0], sum(c for _, c in candidates)


def layout_read_accuracy(reads: list[dict[str, Any]], plain: dict[tuple[str, int], evaluate.VideoResult]) -> dict:
    """Per target count: how often the layout's count at the reference step equals the counter's
    count of the plain run's final frame (same prompt, seed, frame)."""
    hits: dict[int, list[float]] = defaultdict(list)
    for r in reads:
        video = plain.get((r["prompt"], r["seed"]))
        if video is None:
            continue
        for noun, counts in r["read"].items():
            final = video.counts.get(world.plural_noun(noun))
            if final is None:
                continue
            for f, c in enumerate(counts[: len(final)]):
                hits[r["target"][noun]].append(float(c == final[f]))
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())}


def plot(summaries: dict[str, dict], in_colour: dict[str, dict], path: str, title: str) -> None:
    """Left: accuracy against cost in model evaluations per video; right: exact counts by target K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, s in summaries.items():
        marker = ("s" if name.startswith("numina") else "D" if name.startswith("checked") else
                  "o" if name == "plain" else "^")
        left.scatter(s["evaluations_per_video"], s["count_accuracy"], marker=marker, s=50)
        left.scatter(s["evaluations_per_video"], in_colour[name]["count_accuracy"], marker=marker, s=25,
                     facecolors="none", edgecolors="grey")
        left.annotate(name + (" (oracle)" if "best_of" in name else ""), (s["evaluations_per_video"], s["count_accuracy"]),
                      fontsize=7, xytext=(4, 4), textcoords="offset points")
    left.set_xlabel("model evaluations per video")
    left.set_ylabel("count accuracy")
    left.set_title("accuracy against cost (filled: published metric; open: in the asked colour)", fontsize=9)
    counts = sorted({int(k) for s in summaries.values() for k in s["exact_by_target_count"]})
    shown = [m for m in summaries if m in ("plain", "numina", "numina_published", "best_of_2", "checked_2")]
    width = 0.8 / max(len(shown), 1)
    for i, name in enumerate(shown):
        s = summaries[name]
        values = [s["exact_by_target_count"].get(k, s["exact_by_target_count"].get(str(k), 0.0)) for k in counts]
        right.bar([c + (i - (len(shown) - 1) / 2) * width for c in counts], values, width,
                  label=f"{name} ({s['count_accuracy']:.2f})")
    right.set_xlabel("target count")
    right.set_ylabel("exact-count rate (noun-frames)")
    right.set_xticks(counts)
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    right.set_title("exact counts by target count", fontsize=10)
    fig.suptitle(f"CountWorld: {title}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_title(checkpoint: str, prompt_set: str, steps: int, lora: str) -> str:
    return f"{checkpoint}, {prompt_set} prompts, {steps} steps" + (f" with {lora}" if lora else "")


def method_settings(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The node inputs of a NUMINA method: its preset, and for "numina" the --numina overrides."""
    settings = dict(PRESETS[NUMINA_METHODS[method]])
    if settings["reference_step"] is None:
        settings["reference_step"] = reference_step_for(args.steps)
    if method == "numina":
        settings.update({k: v for k, v in args.numina_overrides.items() if k in PRESETS["defaults"]})
    return settings


def run_share(args: argparse.Namespace, methods: list[str], prompts: list[str]) -> dict[str, Any]:
    """Every method on every (prompt, seed) of this share, in one process.  Best-of-N draws plain
    seeds seed, seed + 1000, ... (the first is the plain run); NUMINA inside best-of-2 adds a NUMINA
    run from seed + 1000 to the "numina" run.  Each result carries its cost in model evaluations."""
    seeds = list(range(args.seeds))
    runner = Runner(args.steps, args.cfg, args.checkpoint, args.shift, args.lora)
    runner.set_constants(args.numina_overrides)     # tuning experiments: every NUMINA method of this run
    results: dict[str, list[evaluate.VideoResult]] = {m: [] for m in methods}
    in_colour: dict[str, list[evaluate.VideoResult]] = {m: [] for m in methods}
    looks: dict[str, list[dict[str, float]]] = {m: [] for m in methods}      # countworld/quality.py, per video
    draws_needed = max([int(m[len("best_of_"):]) for m in methods if m.startswith("best_of_")] + [1])
    ran = ["plain"] + [m for m in NUMINA_METHODS if m in methods or (m == "numina" and "numina_best_of_2" in methods)]
    loops = {}       # judge error rate -> the most tries any method asks of it (the others read off its tries)
    for prefix, rate in (("checked_erring_", JUDGE_ERROR_RATE), ("checked_", 0.0)):
        tries = [int(m[len(prefix):]) for m in methods if m.startswith(prefix) and m[len(prefix):].isdigit()]
        if tries:
            loops[rate] = max(tries)

    def timed(fn) -> tuple[torch.Tensor, int, float]:
        t0 = time.time()
        with runner.evaluations as used:
            samples = fn()
        return samples, used.used, time.time() - t0

    for i, prompt in enumerate(prompts):
        colours = {t.noun: t.colour for t in world.parse_prompt(prompt)}
        for seed in seeds:
            made: dict[str, tuple[torch.Tensor, int, float]] = {}
            for method in ran:
                if method == "plain":
                    made[method] = timed(lambda: runner.plain(prompt, seed))
                else:
                    made[method] = timed(lambda: runner.numina(prompt, seed, method_settings(args, method),
                                                              record=method == "numina"))
            draws = [made["plain"]] + [timed(lambda: runner.plain(prompt, seed + 1000 * d)) for d in range(1, draws_needed)]
            checked = {}
            for rate, tries in loops.items():
                t0 = time.time()
                run = runner.checked(prompt, seed, method_settings(args, "numina"), tries, rate)
                checked[rate] = (run, time.time() - t0)
            for method in methods:
                if method.startswith("best_of_"):
                    n = int(method[len("best_of_"):])
                    samples, cost = best_of([(s, c) for s, c, _ in draws[:n]], prompt, seed)
                    seconds = sum(t for _, _, t in draws[:n])
                elif method == "numina_best_of_2":
                    second = timed(lambda: runner.numina(prompt, seed + 1000, method_settings(args, "numina")))
                    samples, cost = best_of([made["numina"][:2], second[:2]], prompt, seed)
                    seconds = made["numina"][2] + second[2]
                elif method.startswith("checked_"):
                    run, seconds = checked[JUDGE_ERROR_RATE if method.startswith("checked_erring_") else 0.0]
                    tries = int(method.rsplit("_", 1)[1])
                    samples, cost = checked_prefix(run, tries)
                    seconds *= cost / max(1, run.evaluations)      # its share of the run's time
                else:
                    samples, cost, seconds = made[method]
                normalised = counter.to_model_space(samples)[0]
                results[method].append(evaluate.score_counts(prompt, seed, counter.count_latent(normalised),
                                                              seconds, cost))
                strict = counter.count_latent_in_colour(normalised, colours)
                in_colour[method].append(evaluate.score_counts(prompt, seed, strict, seconds, cost))
                looks[method].append(asdict(quality.video_quality(normalised, prompt)))
        line = " | ".join(f"{m} {np.mean([r.score for r in results[m][-len(seeds):]]):.2f}" for m in methods)
        print(f"[{i + 1}/{len(prompts)}] {prompt!r}: {line}", flush=True)
    return {"videos": {m: [asdict(r) for r in rs] for m, rs in results.items()},
            "videos_in_colour": {m: [asdict(r) for r in rs] for m, rs in in_colour.items()},
            "quality": looks, "layout_reads": runner.layout_reads}


def bootstrap_gain(method: list[evaluate.VideoResult], baseline: list[evaluate.VideoResult],
                   resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean gain of `method` over `baseline` in the published metric (per prompt: mean over seeds),
    with a 95 % percentile interval from resampling prompts (the same videos paired)."""
    for a, b in zip(method, baseline):
        if (a.prompt, a.seed) != (b.prompt, b.seed):
            raise ValueError("bootstrap_gain needs the two methods' videos in the same order")
    gain, low, high, prompts = evaluate.prompt_mean_interval(
        ((a.prompt, a.score - b.score) for a, b in zip(method, baseline)), resamples, seed)
    return {"gain": round(gain, 4), "low": round(low, 4), "high": round(high, 4), "prompts": prompts}


def run_workers(args: argparse.Namespace, jobs: int) -> list[dict[str, Any]]:
    """The same command as `jobs` worker processes, each on every jobs-th prompt."""
    import subprocess

    folder = tempfile.mkdtemp(prefix="numina_countworld_jobs_")
    argv = [a for a in sys.argv[1:]]
    procs, outputs = [], []
    for j in range(jobs):
        out = os.path.join(folder, f"share{j}.json")
        outputs.append(out)
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv,
                                       "--share", f"{j}/{jobs}", "--json", out, "--plot", ""]))
    failed = [j for j, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise SystemExit(f"benchmark worker(s) {failed} failed; see their output above")
    parts = []
    for out in outputs:
        with open(out) as f:
            parts.append(json.load(f))
    return parts


def best_of_at_cost(summaries: dict[str, dict], cost: float, key: str = "count_accuracy") -> Optional[float]:
    """Best-of-N's accuracy at a given mean cost in model evaluations, on its measured curve (plain
    = best-of-1, best_of_2, ...): between two measured N it is the mixture that draws N or N + 1
    samples with the probabilities that make the mean cost equal (linear in cost); None when the
    cost is outside the measured curve."""
    curve = sorted((s["evaluations_per_video"], s[key]) for name, s in summaries.items()
                   if name == "plain" or (name.startswith("best_of_") and name[len("best_of_"):].isdigit()))
    for (c0, a0), (c1, a1) in zip(curve, curve[1:]):
        if c0 <= cost <= c1:
            return a0 + (a1 - a0) * (cost - c0) / (c1 - c0) if c1 > c0 else max(a0, a1)
    return None


# --numina keys that set a constant of the pack's numina_ops for a tuning experiment: module, name, type
CONSTANTS = {
    "calibrated_gain": ("modulation", "CALIBRATED_GAIN", float),
    "bias_end": ("modulation", "BIAS_END", float),
    "refine_template": ("refine", "TEMPLATE", str),
    "added_gap": ("refine", "ADDED_GAP", int),
    "typical_quantile": ("refine", "TYPICAL_QUANTILE", float),
    "typical_scale": ("refine", "TYPICAL_SCALE", float),
    "track_neighbours": ("refine", "TRACK_NEIGHBOURS", lambda v: v.lower() in ("1", "true", "yes")),
}


def parse_overrides(text: str) -> dict[str, Any]:
    """"bias=published,added_boost=15" -> node inputs of the "numina" method (types from the presets)."""
    out: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, _, value = item.partition("=")
        if key in CONSTANTS:                  # a constant of numina_ops, not a node input
            out[key] = CONSTANTS[key][2](value)
            continue
        if key not in PRESETS["defaults"]:
            raise SystemExit(f"--numina: unknown setting {key!r}; known: {sorted(PRESETS['defaults']) + sorted(CONSTANTS)}")
        kind = type(PRESETS["defaults"][key])
        out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("heldout", "tuning"), default="heldout")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts (CI slice)")
    parser.add_argument("--steps", type=int, default=evaluate.DEFAULTS["steps"])
    # CFG 1 chosen on the tuning prompts (plain accuracy 0.410 at CFG 1, 0.358 at 1.5; see
    # countworld/evaluate.py); the held-out prompts were not used.
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--checkpoint", default=evaluate.CHECKPOINT,
                        help="CountWorld model in countworld/checkpoints (the second, held-out model: "
                             f"{SECOND_MODEL})")
    parser.add_argument("--shift", type=float, default=evaluate.DEFAULTS["shift"],
                        help="ModelSamplingSD3 shift (3: the models' own; 5 with a step-distillation LoRA)")
    parser.add_argument("--lora", default="", help="a step-distillation LoRA in countworld/checkpoints, loaded with "
                        "LoraLoaderModelOnly ('auto': the one countworld/distill.py makes for --checkpoint); "
                        "use with --steps 4 or 8 --shift 5")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from {METHODS}, {CHECKED_METHODS}, numina_tuned, best_of_K, "
                             "checked_K or checked_erring_K")
    parser.add_argument("--numina", default="", help="overrides of the 'numina' method's node inputs, e.g. "
                                                     "'bias=published,added_boost=15' (tuning experiments)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, each running every jobs-th prompt (use one per core)")
    parser.add_argument("--share", default="", help=argparse.SUPPRESS)      # "j/jobs": run as a worker
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="")
    parser.add_argument("--replot", default="", help="only draw --plot again from this report JSON")
    args = parser.parse_args()
    args.numina_overrides = parse_overrides(args.numina)
    if args.lora == "auto":
        from countworld.distill import lora_name

        args.lora = lora_name(args.checkpoint)
    if args.replot:
        with open(args.replot) as f:
            done = json.load(f)
        plot(done["summaries"], done["summaries_in_colour"], args.plot, plot_title(done["checkpoint"], done["set"],
                                                                                 done["steps"], done.get("lora", "")))
        return

    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS and m not in NUMINA_METHODS
               and not (m.startswith(("best_of_", "checked_erring_", "checked_")) and m.rsplit("_", 1)[1].isdigit())]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}")
    prompts = heldout_prompts() if args.set == "heldout" else tuning_prompts()
    if args.limit:
        prompts = prompts[: args.limit]
    started = time.time()
    if args.share:
        j, jobs = (int(x) for x in args.share.split("/"))
        part = run_share(args, methods, prompts[j::jobs])
        with open(args.json, "w") as f:
            json.dump(part, f)
        return
    if args.jobs > 1:
        parts = run_workers(args, args.jobs)
    else:
        parts = [run_share(args, methods, prompts)]
    order = {p: i for i, p in enumerate(prompts)}

    def gather(key: str) -> dict[str, list[evaluate.VideoResult]]:
        found = {m: [evaluate.VideoResult.from_json(v) for part in parts for v in part[key][m]] for m in methods}
        for m in methods:
            found[m].sort(key=lambda r: (order[r.prompt], r.seed))
        return found

    results, in_colour = gather("videos"), gather("videos_in_colour")
    looks = {m: sorted(((order[v["prompt"]], v["seed"]), q) for part in parts
                       for v, q in zip(part["videos"][m], part["quality"][m])) for m in methods}
    summaries_quality = {m: quality.summarise([quality.VideoQuality(**q) for _, q in looks[m]],
                                              [prompts[i] for (i, _), _ in looks[m]]) for m in methods}
    layout_reads = [r for part in parts for r in part["layout_reads"]]
    summaries = {m: evaluate.summarise(results[m]) for m in methods}
    summaries_in_colour = {m: evaluate.summarise(in_colour[m]) for m in methods}
    gains = {m: {"published_metric": bootstrap_gain(results[m], results["plain"]),
                 "in_colour": bootstrap_gain(in_colour[m], in_colour["plain"])}
             for m in methods if m != "plain" and "plain" in methods}
    plain_index = {(r.prompt, r.seed): r for r in results.get("plain", [])}
    equal_cost = {}
    for m in methods:
        if m.startswith(("numina", "checked")):
            cost = summaries[m]["evaluations_per_video"]
            equal_cost[m] = {"evaluations": cost,
                             "best_of_n": best_of_at_cost(summaries, cost),
                             "best_of_n_in_colour": best_of_at_cost(summaries_in_colour, cost)}
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "checkpoint": args.checkpoint, "set": args.set, "prompts": len(prompts), "seeds": args.seeds,
        "steps": args.steps, "cfg": args.cfg, "shift": args.shift, "lora": args.lora, "jobs": args.jobs,
        "threads": args.threads,
        "method_settings": {m: method_settings(args, m) for m in methods if m in NUMINA_METHODS},
        "overrides": args.numina_overrides,
        "minutes": round((time.time() - started) / 60, 1), "summaries": summaries,
        # the same videos counted only in the asked colour (counter.count_latent_in_colour): added
        # instances drawn as off-colour or speckled blobs do not count here
        "summaries_in_colour": summaries_in_colour,
        # what the videos look like beyond their counts (countworld/quality.py): fit to the world's
        # objects, the metric counting well-formed instances only, background, alignment, consistency
        "quality": summaries_quality,
        "videos_quality": {m: [q for _, q in looks[m]] for m in methods},     # in the order of "videos"
        "gain_over_plain": gains,
        # best-of-N (an oracle) at each NUMINA method's mean cost, on best-of-N's measured curve
        "best_of_n_at_equal_cost": equal_cost,
        "layout_read_accuracy_by_target": layout_read_accuracy(layout_reads, plain_index),
        "layout_reads": layout_reads,
        "videos": {m: [asdict(r) for r in rs] for m, rs in results.items()},
        "videos_in_colour": {m: [asdict(r) for r in rs] for m, rs in in_colour.items()},
    }
    print(f"\nCountWorld benchmark, {report['date']}, {report['machine']}: {args.checkpoint}, {len(prompts)} "
          f"{args.set} prompts x {args.seeds} seeds, {args.steps} steps, CFG {args.cfg}, shift {args.shift}"
          + (f", LoRA {args.lora}" if args.lora else "") + f", {report['minutes']} min")
    counts = sorted({k for s in summaries.values() for k in s["exact_by_target_count"]})
    print(f"{'method':17s} {'accuracy':>8s} {'in colour':>9s} {'evals':>6s} {'s/video':>8s}  "
          + " ".join(f"K={k:<3d}" for k in counts))
    for m, s in summaries.items():
        print(f"{m:17s} {s['count_accuracy']:8.3f} {summaries_in_colour[m]['count_accuracy']:9.3f} "
              f"{s['evaluations_per_video']:6.1f} {s['seconds_per_video']:8.2f}  "
              + " ".join(f"{s['exact_by_target_count'].get(k, float('nan')):5.2f}" for k in counts))
    for m, g in gains.items():
        a, b = g["published_metric"], g["in_colour"]
        print(f"{m:17s} gain over plain {a['gain']:+.3f} [{a['low']:+.3f}, {a['high']:+.3f}], "
              f"in colour {b['gain']:+.3f} [{b['low']:+.3f}, {b['high']:+.3f}] (95 % bootstrap over prompts)")
    for m, e in equal_cost.items():
        if e["best_of_n"] is not None:
            print(f"{m:17s} at {e['evaluations']:.1f} evaluations: {summaries[m]['count_accuracy']:.3f} "
                  f"(in colour {summaries_in_colour[m]['count_accuracy']:.3f}); best-of-N (oracle) at the same cost "
                  f"{e['best_of_n']:.3f} (in colour {e['best_of_n_in_colour']:.3f})")
    print(f"{'quality':17s} {'well-formed':>11s} {'fit IoU':>7s} {'malformed':>9s} {'clean bg':>8s} {'unasked':>7s} "
          f"{'constant':>8s} {'tracks':>6s}")
    for m, q in summaries_quality.items():
        print(f"{m:17s} {q['well_formed_accuracy']:11.3f} {q['fit_iou']:7.3f} {q['malformed']:9.3f} "
              f"{q['clean_background']:8.3f} {q['unasked_objects']:7.2f} {q['count_constancy']:8.3f} "
              f"{q['track_continuity']:6.3f}")
    print(f"layout read at the reference step == counter on the plain run's frame, by target count: "
          f"{report['layout_read_accuracy_by_target']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        plot(summaries, summaries_in_colour, args.plot, plot_title(args.checkpoint, args.set, args.steps, args.lora))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
