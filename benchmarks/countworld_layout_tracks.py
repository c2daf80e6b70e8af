"""Where NUMINA loses instance tracks and shapes: in the layout it guides toward, or in the guided video?

For every video NUMINA guides (the nodes' defaults, through ComfyUI's executor):

* the instance tracks (`countworld/quality.py`'s measure: instances matched one to one between
  consecutive latent frames, IoU >= 0.2) of the layout read at the reference step, of the refined
  layout (token grid), of the guided video and of the plain video of the same prompt and seed;
* the same added instance (one label of the refined layout) against itself a frame later: the
  mean IoU of its tokens (1.0: it stays in place; 0: the layout moves it, and the video draws a
  new object);
* the guided video's counted instances by what the refined layout holds under them (added: 30 %
  of their pixels or more on added tokens; read: on tokens of an instance the layout read and
  kept; removed: on tokens of one it removed, which the video should not draw): how
  many, the share well-formed (fit IoU >= 0.5 with the world's object), the share that spans two
  layout instances or more (merged into one blob), and the share unmatched a frame away (births
  and deaths); the malformed ones by size against the world's object of their noun (too small:
  under SMALL of its area, a fragment; too large: over LARGE, a bloated or smeared object; else
  the wrong shape); and those on no instance of the layout ("elsewhere": objects the layout did
  not ask for); and the added and read ones by the size of the layout instance under them, against
  the world's object (does a region too small for the object give a fragment?).

    .numina_env/venv/bin/python benchmarks/countworld_layout_tracks.py --set tuning --seeds 2 --steps 8
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from functools import lru_cache
from typing import NamedTuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from countworld_benchmark import CONSTANTS, PRESETS, Runner, numina_graph, parse_overrides  # noqa: E402  (puts the repo on sys.path)

from countworld import counter, evaluate, quality, world  # noqa: E402
from countworld.distill import lora_name  # noqa: E402
from countworld.prompts import heldout_prompts, tuning_prompts  # noqa: E402
from numina_ops.records import FIRST_ADDED, REMOVED  # noqa: E402

ON_ADDED = 0.3             # share of an instance's pixels on added tokens that makes it "added"
SMALL, LARGE = 0.6, 1.6    # a malformed instance's area against its world object's: fragment, bloated
KINDS = ("added", "read", "removed", "elsewhere")
REGION_BINS = (0.0, 0.75, 1.0, 1.25, 1.5, 2.0, float("inf"))   # layout instance area / world object area


class Drawn(NamedTuple):
    """One counted instance of a guided video, against the refined layout under it."""
    well_formed: bool
    merged: bool             # spans two layout instances or more
    unmatched: bool          # a birth or death of the tracks measure
    fault: str               # a malformed one's size class (`size_class`), else ""
    region: float            # area of the layout instance most under it / the world object's (NaN: none)


def layout_tracks(labels) -> float | None:
    """The tracks measure on one noun's layout labels [F, H, W] (live instances: label > 0)."""
    frames = labels.shape[0]
    objects = [quality.Instance(f, "noun", labels[f].numpy() == i, True, 1.0)
               for f in range(frames) for i in np.unique(labels[f].numpy()) if i > 0]
    return quality.track_continuity(objects, "noun", frames) if objects else None


def added_self_iou(labels: np.ndarray) -> list[float]:
    """Per added label present in two consecutive frames: the IoU of its tokens there."""
    found = []
    for f in range(labels.shape[0] - 1):
        for ident in set(np.unique(labels[f])) & set(np.unique(labels[f + 1])):
            if ident >= FIRST_ADDED:
                a, b = labels[f] == ident, labels[f + 1] == ident
                found.append(float((a & b).sum() / (a | b).sum()))
    return found


def unmatched(objects: list[quality.Instance], frames: int) -> set[int]:
    """Indices of `objects` (one noun) that `quality.track_continuity`'s matching leaves unmatched."""
    lost: set[int] = set()
    for t in range(frames - 1):
        a = [i for i, o in enumerate(objects) if o.frame == t]
        b = [i for i, o in enumerate(objects) if o.frame == t + 1]
        matched = quality.match_frames([objects[i].mask for i in a], [objects[j].mask for j in b])
        lost |= (set(a) - {a[i] for i, _ in matched}) | (set(b) - {b[j] for _, j in matched})
    return lost


@lru_cache(maxsize=None)
def world_area(noun: str) -> float:
    """Latent pixels of the world's object of `noun` at its base size (coverage >= 0.5)."""
    side = int(4 * world._BASE_SIZE) + 3
    return float((world._amplitude(noun, (side / 2, side / 2), world._BASE_SIZE, side, side) >= 0.5).sum())


def size_class(instance: quality.Instance) -> str:
    """A malformed instance's fault by its area: "small", "large" or "shape"."""
    ratio = instance.mask.sum() / world_area(instance.noun)
    return "small" if ratio < SMALL else "large" if ratio > LARGE else "shape"


def instances_by_kind(guided, prompt: str, refined) -> dict[str, list[Drawn]]:
    """The guided video's counted instances of the asked nouns, by what the refined layout holds
    under them: {"added" | "read" | "removed" | "elsewhere": [Drawn]}."""
    targets = world.parse_prompt(prompt)
    z = counter.to_model_space(guided)[0].float().numpy()
    found = quality.instances(counter.code_map(z), {t.noun: t.colour for t in targets})
    kinds: dict[str, list[Drawn]] = defaultdict(list)
    for noun in refined.nouns:
        labels = noun.labels.numpy()
        scale = z.shape[2] // labels.shape[1]
        tokens = np.kron(labels, np.ones((1, scale, scale), dtype=labels.dtype))      # latent pixels
        mine = [o for o in found if o.noun == noun.noun]
        lost = unmatched(mine, z.shape[1])
        for i, o in enumerate(mine):
            under = tokens[o.frame][o.mask]
            if (under >= FIRST_ADDED).mean() >= ON_ADDED:
                kind = "added"
            elif ((under > 0) & (under < FIRST_ADDED)).mean() >= ON_ADDED:
                kind = "read"
            elif (under == REMOVED).mean() >= ON_ADDED:
                kind = "removed"
            else:
                kind = "elsewhere"
            ids, counts = np.unique(under[under > 0], return_counts=True)       # layout instances under it
            region = (float((tokens[o.frame] == ids[np.argmax(counts)]).sum()) / world_area(o.noun) if len(ids)
                      else float("nan"))
            kinds[kind].append(Drawn(o.well_formed, len(ids) > 1, i in lost,
                                     "" if o.well_formed else size_class(o), region))
    return kinds


def faults_line(found: list[Drawn]) -> str:
    """Shares of `found` malformed as a fragment, bloated, the wrong shape."""
    faults = [row.fault for row in found]
    return " | ".join(f"{faults.count(c) / len(found):.2f}" for c in ("small", "large", "shape"))


def mean(values) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("tuning", "heldout"), default="tuning")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=evaluate.DEFAULTS["steps"])
    parser.add_argument("--checkpoint", default=evaluate.CHECKPOINT)
    parser.add_argument("--numina", default="", help="overrides as the benchmark's --numina, e.g. 'refine_template=median'")
    args = parser.parse_args()
    few = args.steps < evaluate.DEFAULTS["steps"]        # few steps: the model's distillation LoRA, shift 5
    runner = Runner(args.steps, 1.0, args.checkpoint, 5.0 if few else evaluate.DEFAULTS["shift"],
                    lora_name(args.checkpoint) if few else "")
    settings = dict(PRESETS["defaults"])
    overrides = parse_overrides(args.numina)
    runner.set_constants(overrides)
    settings.update({key: value for key, value in overrides.items() if key not in CONSTANTS})
    rows, self_iou = [], []
    kinds: dict[str, list[Drawn]] = defaultdict(list)
    for prompt in (tuning_prompts() if args.set == "tuning" else heldout_prompts()):
        for seed in range(args.seeds):
            executor, server = runner.comfy_runtime.execute_graph(numina_graph(
                prompt, seed, args.steps, 1.0, f"tracks/{seed}", settings, runner.checkpoint, runner.shift,
                runner.lora))
            if not executor.success:
                raise SystemExit(f"{prompt!r}: {runner.comfy_runtime.execution_error(server)}")
            read = runner.comfy_runtime.cached_outputs(executor, "8")[0][0]
            refined = runner.comfy_runtime.cached_outputs(executor, "9")[0][0]
            if not refined.needs_guidance:
                continue
            saved = executor.history_result["outputs"]["11"]["latents"][0]
            import safetensors.torch
            path = os.path.join(runner.out_dir, saved["subfolder"], saved["filename"])
            guided = safetensors.torch.load_file(path)["latent_tensor"]
            os.remove(path)
            plain = runner.plain(prompt, seed)
            rows.append((mean(layout_tracks(n.labels) for n in read.nouns),
                         mean(layout_tracks(n.labels) for n in refined.nouns),
                         quality.video_quality(counter.to_model_space(guided)[0], prompt).track_continuity,
                         quality.video_quality(counter.to_model_space(plain)[0], prompt).track_continuity))
            for noun in refined.nouns:
                self_iou += added_self_iou(noun.labels.numpy())
            for kind, found in instances_by_kind(guided, prompt, refined).items():
                kinds[kind] += found
    table = np.nanmean(np.array(rows), axis=0)
    print(f"{args.checkpoint}, {args.set} prompts x {args.seeds} seeds, {args.steps} steps"
          f"{', ' + args.numina if args.numina else ''}: {len(rows)} videos NUMINA guides; instance tracks of")
    print(f"  the layout read {table[0]:.3f} | the refined layout {table[1]:.3f} | the guided video {table[2]:.3f} "
          f"| the plain video {table[3]:.3f}")
    print(f"the same added instance a frame later: mean IoU of its tokens {mean(self_iou):.3f} "
          f"({len(self_iou)} pairs, {sum(v == 0 for v in self_iou)} with no token in common)")
    print("the guided videos' counted instances, by the layout under them: well-formed | merged | unmatched"
          " || malformed: small | large | shape")
    for kind in KINDS:
        found = kinds[kind]
        if not found:
            print(f"  {kind:9s}    0 instances: -")
            continue
        shares = np.array([row[:3] for row in found], dtype=float).mean(axis=0)
        print(f"  {kind:9s} {len(found):4d} instances: " + " | ".join(f"{v:.2f}" for v in shares) + " || "
              + faults_line(found))
    print("added and read instances by their layout instance's area / the world object's: "
          "well-formed || small | large | shape")
    for kind in ("added", "read"):
        for low, high in zip(REGION_BINS, REGION_BINS[1:]):
            found = [row for row in kinds[kind] if low <= row.region < high]
            if found:
                print(f"  {kind:5s} [{low:.2f}, {high:.2f}) {len(found):4d} instances: "
                      f"{np.mean([row.well_formed for row in found]):.2f} || {faults_line(found)}")


if __name__ == "__main__":
    main()
