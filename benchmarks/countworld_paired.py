"""Two CountWorld benchmark reports of the same prompts and seeds, NUMINA against NUMINA: the paired
difference per measure, with a 95 % bootstrap interval over prompts.

Two settings tried on the same prompts and seeds guide the same videos from the same noise, so
their difference video by video is far less noisy than the difference of their gains over plain
(on the tuning prompts at 8 steps x 8 seeds, each gain's interval is about +-6 points; the paired
difference's about +-3).  This is how settings are compared on the tuning prompts:

    .numina_env/venv/bin/python benchmarks/countworld_paired.py A.json B.json

prints B - A for the published metric, the same in the asked colour, well-formed only, count
constancy, instance tracks, malformed instances and fit IoU (definitions: countworld/quality.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from countworld import evaluate  # noqa: E402

METHOD = "numina"
QUALITY = ("well_formed_score", "count_constancy", "track_continuity", "malformed", "fit_iou")


def per_video(report: dict) -> dict[tuple[str, int], dict[str, float]]:
    """(prompt, seed) -> the NUMINA video's measures in one report."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    rows = zip(report["videos"][METHOD], report["videos_in_colour"][METHOD], report["videos_quality"][METHOD])
    for video, in_colour, looks in rows:
        out[(video["prompt"], video["seed"])] = {"published metric": evaluate.VideoResult.from_json(video).score,
                                                 "in colour": evaluate.VideoResult.from_json(in_colour).score,
                                                 **{key: looks[key] for key in QUALITY}}
    return out


def paired(a: dict[tuple[str, int], dict[str, float]], b: dict[tuple[str, int], dict[str, float]], measure: str,
           resamples: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """Mean over prompts of B - A (per prompt: mean over its seeds) and its 95 % percentile interval
    from resampling prompts; videos where either value is NaN (fit IoU of a video with no instance)
    are left out.  Returns (difference, low, high, prompts)."""
    if set(a) != set(b):
        raise SystemExit("the two reports hold different prompts or seeds: run both with the same --set and --seeds")
    return evaluate.prompt_mean_interval(((key[0], b[key][measure] - a[key][measure]) for key in sorted(a)),
                                         resamples, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="report A (--json of countworld_benchmark.py)")
    parser.add_argument("b", help="report B, same prompts and seeds")
    args = parser.parse_args()
    reports = []
    for path in (args.a, args.b):
        with open(path) as f:
            reports.append(json.load(f))
    a, b = (per_video(r) for r in reports)
    print(f"B - A, NUMINA videos paired by prompt and seed ({len(a)} videos)\n  A: {args.a}\n  B: {args.b}")
    for measure in ("published metric", "in colour") + QUALITY:
        difference, low, high, prompts = paired(a, b, measure)
        print(f"  {measure:18s} {difference:+.3f} [{low:+.3f}, {high:+.3f}]  ({prompts} prompts)")


if __name__ == "__main__":
    main()
