"""NUMINA's gain against its cost, across CountWorld benchmark reports of the same prompts and seeds.

Each report is one `countworld_benchmark.py --methods plain,numina --numina ...` run; the curve puts
every report's NUMINA point (gain over that report's plain, with its 95 % bootstrap interval, against
model evaluations per video) on one plot, labelled by what its --numina changed, and prints the table.

    .numina_env/venv/bin/python benchmarks/countworld_cost_curve.py --out benchmarks/results/countworld_cost_curve.png \
        benchmarks/results/tuning/approach1.json benchmarks/results/tuning/approach2.json ...
"""
from __future__ import annotations

import argparse
import json


def point(report: dict) -> dict:
    gain = report["gain_over_plain"]["numina"]["published_metric"]
    plain = report["summaries"]["plain"]["evaluations_per_video"]
    quality = report.get("quality", {})
    well_formed = (quality["numina"]["well_formed_accuracy"] - quality["plain"]["well_formed_accuracy"]
                   if "numina" in quality and "plain" in quality else float("nan"))
    overrides = dict(report.get("overrides", {}))
    if overrides.get("approach_steps") == 0:
        overrides["approach_steps"] = "0 (the run's own steps)"
    return {"label": ",".join(f"{k}={v}" for k, v in overrides.items()) or "defaults",
            "evaluations": report["summaries"]["numina"]["evaluations_per_video"], "plain_evaluations": plain,
            "gain": gain["gain"], "low": gain["low"], "high": gain["high"],
            "in_colour": report["gain_over_plain"]["numina"]["in_colour"]["gain"], "well_formed_gain": well_formed,
            "set": report["set"], "checkpoint": report["checkpoint"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    points = []
    for path in args.reports:
        with open(path) as f:
            points.append(point(json.load(f)))
    if len({(p["set"], p["checkpoint"]) for p in points}) != 1:
        raise SystemExit("the reports must share one prompt set and one checkpoint")
    points.sort(key=lambda p: p["evaluations"])
    print(f"{points[0]['checkpoint']}, {points[0]['set']} prompts")
    print(f"{'NUMINA settings':40s} {'evals':>6s} {'x plain':>7s} {'gain':>7s} {'95% interval':>17s} {'well-formed':>11s}")
    for p in points:
        print(f"{p['label']:40s} {p['evaluations']:6.1f} {p['evaluations'] / p['plain_evaluations']:7.2f} "
              f"{p['gain']:+7.3f} [{p['low']:+.3f}, {p['high']:+.3f}] {p['well_formed_gain']:+11.3f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [p["evaluations"] for p in points]
    ax.errorbar(xs, [p["gain"] for p in points], yerr=[[p["gain"] - p["low"] for p in points],
                                                     [p["high"] - p["gain"] for p in points]],
                fmt="s-", capsize=3, label="count accuracy gain over plain (95 % interval)")
    ax.plot(xs, [p["well_formed_gain"] for p in points], "o--", label="the same, well-formed instances only")
    for p in points:
        short = p["label"].replace("approach_steps=", "approach ").replace(" (the run's own steps)", " (own steps)")
        ax.annotate(short, (p["evaluations"], p["gain"]), fontsize=7, xytext=(-10, 8), textcoords="offset points",
                    rotation=30)
    plain = points[0]["plain_evaluations"]
    ax.axvline(plain * 1.15, color="grey", linestyle=":", label="1.15 x plain")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlim(min(xs) - 1, max(xs) + 3)
    ax.set_xlabel("model evaluations per video (plain: %g)" % plain)
    ax.set_ylabel("gain over plain (points / 100)")
    ax.set_title(f"CountWorld, {points[0]['checkpoint']}, {points[0]['set']} prompts: gain against cost", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
