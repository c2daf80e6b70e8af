"""Plain against NUMINA, frame by frame: the README's strip of CountWorld videos.

Picks prompts from a CountWorld benchmark report (its per-video scores): the videos NUMINA fixed
most, and the one where it did worst against plain (a failure is always shown).  Both videos of each
are sampled again with the report's settings (the runs are deterministic: the counts drawn are
checked against the report's, and a mismatch stops the script), decoded with the world's fixed
decode (what the video looks like), and labelled with the counter's count per noun and frame.

    .numina_env/venv/bin/python benchmarks/countworld_strip.py \
        --report benchmarks/results/countworld_approach2.json --out benchmarks/results/countworld_strip.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from countworld_benchmark import PRESETS, Runner  # noqa: E402  (also puts the repo and testing/ on sys.path)

from countworld import counter, evaluate, quality, world  # noqa: E402


def pick(report: dict, fixed: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, why) of the `fixed` videos NUMINA improved most, then its worst against plain; one seed."""
    plain = {v["prompt"]: v for v in report["videos"]["plain"] if v["seed"] == seed}
    numina = {v["prompt"]: v for v in report["videos"]["numina"] if v["seed"] == seed}

    def score(v: dict) -> float:
        return evaluate.VideoResult.from_json(v).score
    gains = sorted(((score(numina[p]) - score(plain[p]), i, p) for i, p in enumerate(plain)), reverse=True)
    chosen = [(p, f"NUMINA fixed it ({score(plain[p]):.2f} -> {score(numina[p]):.2f})") for g, _, p in gains[:fixed]]
    _, _, worst = gains[-1]
    chosen.append((worst, f"NUMINA failed ({score(plain[worst]):.2f} -> {score(numina[worst]):.2f})"))
    return chosen


def label(counts: dict[str, np.ndarray], targets: dict[str, int], frame: int) -> str:
    return ", ".join(f"{n} {int(counts[n][frame])}/{targets[n]}" for n in targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, help="a countworld_benchmark.py --json report with plain and numina")
    parser.add_argument("--out", required=True)
    parser.add_argument("--fixed", type=int, default=2, help="how many fixed videos to show before the failure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    settings = {**PRESETS["defaults"], "approach_steps": 0, **report["method_settings"]["numina"]}
    runner = Runner(report["steps"], report["cfg"], report["checkpoint"], report["shift"], report["lora"])

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = pick(report, args.fixed, args.seed)
    fig, axes = plt.subplots(len(rows), 2 * world.LATENT_FRAMES, figsize=(3.0 * 2 * world.LATENT_FRAMES, 3.5 * len(rows)),
                             squeeze=False)
    for r, (prompt, why) in enumerate(rows):
        targets = {t.noun: t.count for t in world.parse_prompt(prompt)}
        stored = {m: next(v for v in report["videos"][m] if v["prompt"] == prompt and v["seed"] == args.seed)
                  for m in ("plain", "numina")}
        for m, (method, samples) in enumerate((("plain", runner.plain(prompt, args.seed)),
                                                ("numina", runner.numina(prompt, args.seed, settings)))):
            latent = counter.to_model_space(samples)[0]
            counts = counter.count_latent(latent)
            if {n: list(map(int, c)) for n, c in counts.items() if n in targets} != \
                    {n: list(map(int, stored[method]["counts"][n])) for n in targets}:
                raise SystemExit(f"{method} on {prompt!r} did not draw the report's counts: "
                                 "is this the report's checkpoint and code?")
            looks = quality.video_quality(latent, prompt)
            frames = world.decode_rgb(latent.numpy())
            for f in range(world.LATENT_FRAMES):
                ax = axes[r][m * world.LATENT_FRAMES + f]
                ax.imshow(frames[f])
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_xlabel(label(counts, targets, f), fontsize=9)
                ax.set_title(f"{'plain' if method == 'plain' else 'NUMINA'}, latent frame {f}" + (
                    f"\n{looks.malformed:.0%} malformed, background {looks.clean_background:.0%} clean" if f == 0
                    else ""), fontsize=9)
        axes[r][0].set_ylabel(f"{prompt}\n{why}", fontsize=8, wrap=True)
    fig.suptitle(f"CountWorld ({report['checkpoint']}, held-out prompts, seed {args.seed}): plain against NUMINA "
                 f"(counted / asked per noun)", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}: " + "; ".join(f"{p!r}: {w}" for p, w in rows))


if __name__ == "__main__":
    main()
