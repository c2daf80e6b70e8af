"""CountWorld benchmark: does NUMINA give more videos with the right number of objects?

One run compares, on the held-out CountWorld prompts (countworld/prompts.py) and the same seeds:
  plain          KSampler on the trained tiny Wan (countworld/checkpoints)
  numina         the pack's nodes in a graph run by ComfyUI's executor: Capture -> LayoutInfer ->
                 LayoutRefine -> CrossAttnGuide (auto form) -> KSampler, with this pack's settings
                 for this model, chosen on the tuning prompts only (countworld/settings.py: cross
                 readout, capture at step 12 of 25 in block 3, added_boost 15)
  numina_published  the same graph with the published settings: capture at the published step and
                 block (step 20 of 50, block 15 of 30, scaled), faithful readout (the published
                 readout's reproduction), dense-mask bias; results before 2026-11-28 call it numina_pub
  best_of_n      plain sampling of extra seeds, the video the counter likes best, with the same
                 wall time per video as `numina` (N = floor(numina time / plain time), >= 1)
Reports the published metric (per frame, fraction of nouns counted exactly; mean over frames,
then over prompts), exact-count accuracy by target count, temporal consistency, wall time, and
how often the layout NUMINA reads at the reference step equals the counter's count of the plain
run's final frames (the method can only fix what it reads correctly).

    .numina_env/venv/bin/python benchmarks/countworld_benchmark.py --seeds 2 --jobs 2 \
        --json benchmarks/results/countworld.json --plot benchmarks/results/countworld.png

--jobs N splits the prompts over N worker processes (one per core); each video's methods run back
to back in one worker, so best-of-N's budget is numina's time under the same load.  A method
best_of_K (e.g. --methods best_of_2) draws a fixed K seeds whatever the time, for reference.
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
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "testing")):   # also without the venv's numina_dev.pth (a GPU machine)
    if p not in sys.path:
        sys.path.insert(0, p)

from countworld import counter, evaluate, world  # noqa: E402
from countworld.prompts import heldout_prompts, tuning_prompts  # noqa: E402
from countworld.settings import NUMINA_SETTINGS, reference_step_for  # noqa: E402

METHODS = ("plain", "numina", "numina_published", "best_of_n")


def numina_graph(prompt: str, seed: int, steps: int, cfg: float, mode: str, form: str,
                 prefix: str, reference_step: int = -1, block: int = -1, added_boost: float = 0.0,
                 bias_modifiers: bool = False) -> dict[str, Any]:
    """API-format graph: the pack's four nodes between the loaders and an ordinary KSampler."""
    sampling = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": evaluate.DEFAULTS["sampler_name"],
                "scheduler": evaluate.DEFAULTS["scheduler"]}
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": evaluate.CHECKPOINT, "weight_dtype": "default"}},
        "2": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": evaluate.DEFAULTS["shift"]}},
        "3": {"class_type": "NuminaTinyTextEncoderLoader", "inputs": {"text_encoder": evaluate.TEXT_ENCODER}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["3", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["3", 0]}},
        "6": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": world.VIDEO_WIDTH, "height": world.VIDEO_HEIGHT, "length": world.VIDEO_LENGTH,
                         "batch_size": 1}},
        "7": {"class_type": "NuminaAttentionCapture",
              "inputs": {"model": ["2", 0], "clip": ["3", 0], "positive": ["4", 0], "negative": ["5", 0],
                         "latent": ["6", 0], **sampling, "prompt": prompt, "count_override": "",
                         "reference_step": reference_step, "block": block}},
        "8": {"class_type": "NuminaLayoutInfer", "inputs": {"capture": ["7", 0], "mode": mode}},
        "9": {"class_type": "NuminaLayoutRefine", "inputs": {"layout": ["8", 0]}},
        "10": {"class_type": "NuminaCrossAttnGuide", "inputs": {"model": ["2", 0], "layout": ["9", 0], "bias_form": form,
                                                           "added_boost": added_boost,
                                                           "bias_modifiers": bool(bias_modifiers)}},
        "11": {"class_type": "KSampler", "inputs": {"model": ["10", 0], **sampling, "positive": ["4", 0],
                                                    "negative": ["5", 0], "latent_image": ["6", 0], "denoise": 1.0}},
        "12": {"class_type": "SaveLatent", "inputs": {"samples": ["11", 0], "filename_prefix": prefix}},
    }


class Runner:
    def __init__(self, steps: int, cfg: float) -> None:
        from numina_dev import comfy_runtime

        self.pipeline = evaluate.ComfyPipeline()
        comfy_runtime.load_custom_nodes()
        import folder_paths

        self.comfy_runtime = comfy_runtime
        self.folder_paths = folder_paths
        self.out_dir = tempfile.mkdtemp(prefix="numina_countworld_")
        folder_paths.set_output_directory(self.out_dir)
        self.steps, self.cfg = steps, cfg
        self.layout_reads: list[dict[str, Any]] = []

    def plain(self, prompt: str, seed: int) -> torch.Tensor:
        return self.pipeline.sample(prompt, seed, self.steps, self.cfg)

    def numina(self, prompt: str, seed: int, mode: str, form: str, reference_step: int = -1,
               block: int = -1, record: bool = False, added_boost: float = 0.0,
               bias_modifiers: bool = False) -> torch.Tensor:
        import safetensors.torch

        prefix = f"bench/{mode}_{form}_{seed}"
        executor, server = self.comfy_runtime.execute_graph(
            numina_graph(prompt, seed, self.steps, self.cfg, mode, form, prefix, reference_step, block,
                         added_boost, bias_modifiers))
        if not executor.success:
            raise RuntimeError(f"NUMINA graph failed for {prompt!r}: {self.comfy_runtime.execution_error(server)}")
        saved = executor.history_result["outputs"]["12"]["latents"][0]
        path = os.path.join(self.out_dir, saved["subfolder"], saved["filename"])
        latent = safetensors.torch.load_file(path)["latent_tensor"]
        os.remove(path)
        if record:
            self._remember_layout(prompt, seed, executor)
        return latent

    def _remember_layout(self, prompt: str, seed: int, executor: Any) -> None:
        """The layout NUMINA read at the reference step (before refinement), per noun per frame."""
        outputs = self.comfy_runtime.cached_outputs(executor, "8")  # get() is a coroutine on 0.33
        if outputs is None:
            return
        layout = outputs[0][0]
        self.layout_reads.append({"prompt": prompt, "seed": seed,
                                  "read": {n.noun: list(n.counts) for n in layout.nouns},
                                  "target": {n.noun: n.target for n in layout.nouns}})

    def best_of_n(self, prompt: str, seed: int, n: int) -> torch.Tensor:
        """Plain samples of seeds seed, seed+1000, ... (n of them); the counter picks the best."""
        best, best_score = None, -1.0
        for i in range(n):
            samples = self.plain(prompt, seed + 1000 * i)
            score = evaluate.score_counts(prompt, seed, counter.count_samples(samples)[0]).score
            if score > best_score:
                best, best_score = samples, score
        return best


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


def plot(summaries: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    counts = sorted({int(k) for s in summaries.values() for k in s["exact_by_target_count"]})
    width = 0.8 / len(summaries)
    for i, (name, s) in enumerate(summaries.items()):
        values = [s["exact_by_target_count"].get(k, s["exact_by_target_count"].get(str(k), 0.0)) for k in counts]
        ax.bar([c + (i - (len(summaries) - 1) / 2) * width for c in counts], values, width,
               label=f"{name} ({s['count_accuracy']:.2f})")
    ax.set_xlabel("target count")
    ax.set_ylabel("exact-count rate (noun-frames)")
    ax.set_xticks(counts)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("CountWorld held-out prompts: exact counts by target count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_share(args: argparse.Namespace, methods: list[str], prompts: list[str]) -> dict[str, Any]:
    """Every method on every (prompt, seed) of this share, in one process: the methods of one video
    run back to back, so best-of-N's budget is numina's time measured under the same load."""
    seeds = list(range(args.seeds))
    runner = Runner(args.steps, args.cfg)
    results: dict[str, list[evaluate.VideoResult]] = {m: [] for m in methods}
    in_colour: dict[str, list[evaluate.VideoResult]] = {m: [] for m in methods}
    drawn: list[int] = []
    for i, prompt in enumerate(prompts):
        for seed in seeds:
            times: dict[str, float] = {}
            for method in methods:
                t0 = time.time()
                if method == "plain":
                    samples = runner.plain(prompt, seed)
                elif method == "numina":
                    samples = runner.numina(prompt, seed, args.mode, "auto", args.reference_step, args.block,
                                            record=True, added_boost=args.added_boost,
                                            bias_modifiers=args.bias_modifiers)
                elif method == "numina_published":
                    samples = runner.numina(prompt, seed, "faithful", "dense")
                elif method.startswith("best_of_") and method[len("best_of_"):].isdigit():
                    fixed = int(method[len("best_of_"):])        # a fixed N, whatever it costs
                    samples = runner.best_of_n(prompt, seed, fixed)
                else:                                            # as many as fit in numina's time
                    budget = times.get("numina", 2.0 * times.get("plain", 1.0))
                    n = max(1, int(budget // max(times.get("plain", budget), 1e-6)))
                    samples = runner.best_of_n(prompt, seed, n)
                    drawn.append(n)
                times[method] = time.time() - t0
                normalised = counter.to_model_space(samples)[0]
                results[method].append(evaluate.score_counts(prompt, seed, counter.count_latent(normalised),
                                                              times[method]))
                colours = {t.noun: t.colour for t in world.parse_prompt(prompt)}
                strict = counter.count_latent_in_colour(normalised, colours)
                in_colour[method].append(evaluate.score_counts(prompt, seed, strict, times[method]))
        line = " | ".join(f"{m} {np.mean([r.score for r in results[m][-len(seeds):]]):.2f}" for m in methods)
        print(f"[{i + 1}/{len(prompts)}] {prompt!r}: {line}", flush=True)
    return {"videos": {m: [asdict(r) for r in rs] for m, rs in results.items()},
            "videos_in_colour": {m: [asdict(r) for r in rs] for m, rs in in_colour.items()},
            "layout_reads": runner.layout_reads, "best_of_n_n": drawn}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("heldout", "tuning"), default="heldout")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts (CI slice)")
    parser.add_argument("--steps", type=int, default=evaluate.DEFAULTS["steps"])
    # CFG 1 chosen on the tuning prompts (plain accuracy 0.410 at CFG 1, 0.358 at 1.5; see
    # countworld/evaluate.py); the held-out prompts were not used.
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from {METHODS} or best_of_K (a fixed K seeds, whatever the time)")
    # This pack's settings for this model, chosen on the tuning prompts (countworld/settings.py);
    # numina_published always uses the published ones.
    parser.add_argument("--mode", default=NUMINA_SETTINGS["mode"], help="readout of the 'numina' method")
    parser.add_argument("--reference-step", type=int, default=None,
                        help="capture step of 'numina' (-1: published; default: the tuned step 12 of 25, "
                             "scaled to --steps)")
    parser.add_argument("--block", type=int, default=NUMINA_SETTINGS["block"], help="capture block of 'numina' (-1: published)")
    parser.add_argument("--added-boost", type=float, default=NUMINA_SETTINGS["added_boost"],
                        help="guide's added_boost of 'numina' (0: published)")
    parser.add_argument("--bias-modifiers", type=int, default=int(NUMINA_SETTINGS.get("bias_modifiers", False)),
                        help="guide's bias_modifiers of 'numina' (0: published, 1: also the noun's adjectives)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, each running every jobs-th prompt (use one per core)")
    parser.add_argument("--share", default="", help=argparse.SUPPRESS)      # "j/jobs": run as a worker
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.reference_step is None:
        args.reference_step = reference_step_for(args.steps)
    methods = [m for m in args.methods.split(",") if m]
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
        found = {m: [evaluate.VideoResult(**{**v, "targets": tuple(tuple(t) for t in v["targets"])})
                     for part in parts for v in part[key][m]] for m in methods}
        for m in methods:
            found[m].sort(key=lambda r: (order[r.prompt], r.seed))
        return found

    results, in_colour = gather("videos"), gather("videos_in_colour")
    layout_reads = [r for part in parts for r in part["layout_reads"]]
    drawn = [n for part in parts for n in part["best_of_n_n"]]
    summaries = {m: evaluate.summarise(results[m]) for m in methods}
    summaries_in_colour = {m: evaluate.summarise(in_colour[m]) for m in methods}
    plain_index = {(r.prompt, r.seed): r for r in results.get("plain", [])}
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "set": args.set, "prompts": len(prompts), "seeds": args.seeds, "steps": args.steps, "cfg": args.cfg,
        "jobs": args.jobs, "threads": args.threads,
        "numina_settings": {"mode": args.mode, "reference_step": args.reference_step, "block": args.block,
                            "added_boost": args.added_boost, "bias_modifiers": bool(args.bias_modifiers)},
        "minutes": round((time.time() - started) / 60, 1), "summaries": summaries,
        # the same videos counted only in the asked colour (counter.count_latent_in_colour): added
        # instances drawn as off-colour or speckled blobs do not count here
        "summaries_in_colour": summaries_in_colour,
        "best_of_n_mean_n": float(np.mean(drawn)) if drawn else None,
        "layout_read_accuracy_by_target": layout_read_accuracy(layout_reads, plain_index),
        "layout_reads": layout_reads,
        "videos": {m: [asdict(r) for r in rs] for m, rs in results.items()},
        "videos_in_colour": {m: [asdict(r) for r in rs] for m, rs in in_colour.items()},
    }
    print(f"\nCountWorld benchmark, {report['date']}, {report['machine']}: {len(prompts)} {args.set} prompts x "
          f"{args.seeds} seeds, {args.steps} steps, CFG {args.cfg}, {report['minutes']} min")
    counts = sorted({k for s in summaries.values() for k in s["exact_by_target_count"]})
    print(f"{'method':11s} {'accuracy':>8s} {'temporal':>8s} {'s/video':>8s}  " + " ".join(f"K={k:<3d}" for k in counts))
    for m, s in summaries.items():
        print(f"{m:11s} {s['count_accuracy']:8.3f} {s['temporal_consistency']:8.3f} {s['seconds_per_video']:8.2f}  "
              + " ".join(f"{s['exact_by_target_count'].get(k, float('nan')):5.2f}" for k in counts))
    print("counting only objects of the asked colour:")
    for m, s in summaries_in_colour.items():
        print(f"{m:11s} {s['count_accuracy']:8.3f} {s['temporal_consistency']:8.3f} {'':8s}  "
              + " ".join(f"{s['exact_by_target_count'].get(k, float('nan')):5.2f}" for k in counts))
    if report["best_of_n_mean_n"]:
        print(f"best_of_n drew {report['best_of_n_mean_n']:.2f} seeds per video on average (same wall time as numina)")
    print(f"layout read at the reference step == counter on the plain run's frame, by target count: "
          f"{report['layout_read_accuracy_by_target']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        plot(summaries, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
