"""A CountWorld report's count and well-formed-only accuracy by how many objects the prompt asks for.

Counting only well-formed instances, a frame is right when every one of its K counted instances is
well formed: with the same share of malformed instances, a frame of 8 objects is right less often
than a frame of 1.  A method that gets more of the crowded prompts right (NUMINA does; plain rarely
draws more than 4 objects) therefore gains less on that measure than on the count.  This prints,
per method, the count accuracy, the well-formed-only accuracy, their ratio and the share of
malformed instances for prompts of 1-2, 3-4, 5-7 and 8 or more asked objects (all nouns together),
and each method's well-formed-only gain over plain with its 95 % bootstrap interval over prompts:

    .numina_env/venv/bin/python benchmarks/countworld_by_objects.py benchmarks/results/countworld_defaults.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from countworld import evaluate  # noqa: E402

BINS = ((1, 2), (3, 4), (5, 7), (8, None))


def bin_of(objects: int) -> str:
    """The BINS name ("1-2", ..., "8+") of a prompt asking for `objects` objects."""
    for low, high in BINS:
        if objects >= low and (high is None or objects <= high):
            return f"{low}+" if high is None else f"{low}-{high}"
    raise ValueError(f"a prompt asks for {objects} objects")


def by_objects(report: dict, method: str) -> dict[str, dict[str, float]]:
    """{bin: {"videos", "count", "well_formed", "malformed"}} of one method's videos: means over the
    bin's videos of their published metric, well-formed-only score and malformed share."""
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for video, looks in zip(report["videos"][method], report["videos_quality"][method]):
        objects = sum(count for _, count in video["targets"])
        rows[bin_of(objects)].append((evaluate.VideoResult.from_json(video).score, looks["well_formed_score"],
                                      looks["malformed"]))
    out = {}
    for name in (bin_of(low) for low, _ in BINS):
        if name in rows:
            values = np.array(rows[name], dtype=float)
            out[name] = {"videos": len(values), "count": float(values[:, 0].mean()),
                         "well_formed": float(values[:, 1].mean()), "malformed": float(values[:, 2].mean())}
    return out


def well_formed_gain(report: dict, method: str, baseline: str = "plain") -> tuple[float, float, float]:
    """Mean over prompts of `method` - `baseline` in well-formed-only accuracy (per prompt: mean over
    seeds) and its 95 % bootstrap interval."""
    gain, low, high, _ = evaluate.prompt_mean_interval(
        (video["prompt"], mine["well_formed_score"] - theirs["well_formed_score"])
        for video, mine, theirs in zip(report["videos"][method], report["videos_quality"][method],
                                       report["videos_quality"][baseline]))
    return gain, low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", help="a report (--json of countworld_benchmark.py)")
    args = parser.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    print(f"{args.report}: by objects asked (all nouns), count accuracy | well-formed only | ratio | malformed")
    for method in report["videos_quality"]:
        print(f"  {method}")
        for name, row in by_objects(report, method).items():
            ratio = row["well_formed"] / row["count"] if row["count"] else float("nan")
            print(f"    {name:4s} objects, {row['videos']:3d} videos: {row['count']:.3f} | {row['well_formed']:.3f} | "
                  f"{ratio:.2f} | {row['malformed']:.3f}")
        if method != "plain" and "plain" in report["videos_quality"]:
            gain, low, high = well_formed_gain(report, method)
            print(f"    well-formed only, gain over plain: {100 * gain:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")


if __name__ == "__main__":
    main()
