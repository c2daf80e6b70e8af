"""Video quality at equal scene density: plain against NUMINA, from a CountWorld benchmark report.

NUMINA's videos hold more objects (the prompts ask for up to 8 of a noun, the models draw about
4), and denser scenes are harder to draw and to follow for any method.  So the per-video quality
measures (`countworld/quality.py`) are compared here within bins of counted objects per frame (the
asked nouns' instances, the counter's count): the share of counted instances that are well-formed
(1 - malformed, weighted by instances) and the instance tracks.

    .numina_env/venv/bin/python benchmarks/countworld_quality_by_density.py benchmarks/results/countworld_approach2.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

EDGES = (0.0, 2.5, 4.5, 6.5, float("inf"))      # counted objects per frame


def by_density(videos: list[dict], looks: list[dict]) -> dict[int, dict[str, float]]:
    """Per density bin: videos, well-formed share of counted instances, mean instance tracks."""
    bins: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"formed": [], "counted": [], "tracks": []})
    for video, look in zip(videos, looks):
        nouns = [noun for noun, _ in video["targets"]]
        frames = len(video["counts"][nouns[0]])
        counted = sum(sum(video["counts"][n]) for n in nouns)
        b = int(np.searchsorted(EDGES, counted / frames, side="right")) - 1
        bins[b]["formed"].append(counted * (1.0 - look["malformed"]))
        bins[b]["counted"].append(counted)
        bins[b]["tracks"].append(look["track_continuity"])
    return {b: {"videos": len(v["tracks"]), "well_formed": sum(v["formed"]) / max(sum(v["counted"]), 1e-9),
                "tracks": float(np.mean(v["tracks"]))} for b, v in sorted(bins.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report")
    parser.add_argument("--methods", default="plain,numina")
    args = parser.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    print(f"{report['checkpoint']}, {report['set']} prompts x {report['seeds']} seeds, {report['steps']} steps "
          f"({report['date']}); per bin of counted objects per frame: videos, well-formed share of counted "
          "instances, instance tracks")
    for method in args.methods.split(","):
        table = by_density(report["videos"][method], report["videos_quality"][method])
        cells = [f"{EDGES[b]:g}-{EDGES[b + 1]:g}: {t['videos']:2d} videos, {t['well_formed']:.2f}, {t['tracks']:.2f}"
                 for b, t in table.items()]
        print(f"{method:8s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
