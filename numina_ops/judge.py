"""The count check: how many of each counted noun a finished video shows, judged the paper's way.

The paper judges every video with an open-vocabulary detector on every frame (GroundingDINO
Swin-T OGC, one caption "<noun> ." per noun, box threshold 0.32, text threshold 0.25; the
authors' `evaluation/eval_counting.py`): the count of a noun in a frame is its number of boxes,
a frame's score is the fraction of the prompt's counted nouns counted exactly, and a video's
score is the mean over its frames.  This module holds that rule and the record it produces;
the detectors that make the boxes (numina_ops/detector.py for GroundingDINO, the CountWorld frame
counter of the testing pack) only have to follow :class:`ObjectCounter`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch

from .records import NuminaInputError, Targets

# The paper's judge (authors' evaluation/eval_counting.py)
PAPER_BOX_THRESHOLD = 0.32
PAPER_TEXT_THRESHOLD = 0.25


@dataclass(frozen=True)
class Box:
    """One detected object in one frame, in pixels of that frame (x to the right, y down)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0


# boxes[frame][noun] -> the boxes of that noun in that frame
FrameBoxes = tuple[tuple[tuple[Box, ...], ...], ...]


@runtime_checkable
class ObjectCounter(Protocol):
    """What the count check needs of a detector (GroundingDINO, the CountWorld frame counter)."""

    def describe(self) -> str:
        """Which judge this is, with its thresholds: written into every check it makes."""
        ...

    def detect(self, frames: torch.Tensor, nouns: Sequence[str],
               device: Optional[torch.device] = None) -> list[list[list[Box]]]:
        """frames: IMAGE [F, H, W, 3] float in [0, 1] (as VAE Decode gives them); nouns as the
        prompt writes them ("apples").  Returns boxes[frame][noun], one list per noun in the given
        order.  ``device``: where to run (None: wherever the counter already is)."""
        ...


@dataclass(frozen=True)
class CountCheck:
    """What the judge saw of one video: per counted noun and frame, the count, against the targets."""

    nouns: tuple[str, ...]
    targets: tuple[int, ...]
    counts: tuple[tuple[int, ...], ...]       # [noun][frame]
    boxes: FrameBoxes                         # [frame][noun]
    judge: str                                # the counter's describe(): which judge, which thresholds
    frame_size: tuple[int, int] = (0, 0)      # (height, width) of the judged frames

    @property
    def frames(self) -> int:
        return len(self.boxes)

    @property
    def frame_scores(self) -> tuple[float, ...]:
        """Per frame: the fraction of the counted nouns whose count is exact (the paper's frame score)."""
        if not self.nouns:
            return tuple(1.0 for _ in range(self.frames))
        return tuple(sum(c[f] == t for c, t in zip(self.counts, self.targets)) / len(self.nouns)
                     for f in range(self.frames))

    @property
    def score(self) -> float:
        """The paper's video score: the mean frame score."""
        scores = self.frame_scores
        return sum(scores) / len(scores) if scores else 0.0

    @property
    def all_right(self) -> bool:
        """Every counted noun exact in every frame."""
        return all(c == t for counts, t in zip(self.counts, self.targets) for c in counts)

    def describe(self) -> str:
        """A few lines for the node: verdict, score, and per noun the counts over the frames."""
        verdict = "every count right" if self.all_right else "a count is wrong"
        lines = [f"count check: {verdict}; score {self.score:.3f} (the paper's: mean over {self.frames} frames of "
                 f"the share of nouns counted exactly); judge: {self.judge}"]
        for noun, target, counts in zip(self.nouns, self.targets, self.counts):
            exact = sum(c == target for c in counts)
            lines.append(f"  {noun}: target {target}, right in {exact}/{len(counts)} frames; counts "
                         + _run_lengths(counts))
        return "\n".join(lines)


def _run_lengths(counts: Sequence[int]) -> str:
    """"3 3 3 4 4" -> "3 (frames 0-2), 4 (frames 3-4)": long videos stay readable."""
    parts, start = [], 0
    for f in range(1, len(counts) + 1):
        if f == len(counts) or counts[f] != counts[start]:
            span = f"frame {start}" if f - start == 1 else f"frames {start}-{f - 1}"
            parts.append(f"{counts[start]} ({span})")
            start = f
    return ", ".join(parts) if parts else "(no frames)"


def check_image(frames) -> None:
    """Refuse anything that is not decoded frames: IMAGE [frames, height, width, 3], at least one."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise NuminaInputError(f"expected decoded frames (IMAGE [frames, height, width, 3], as VAE Decode gives "
                               f"them, at least one frame), got {shape}")


def check_frames(frames: torch.Tensor, targets: Targets, counter: ObjectCounter,
                 device: Optional[torch.device] = None) -> CountCheck:
    """Count every counted noun of ``targets`` in every frame with ``counter``."""
    check_image(frames)
    nouns = tuple(t.noun for t in targets.items)
    wanted = tuple(t.count for t in targets.items)
    boxes = counter.detect(frames, nouns, device=device) if nouns else [[] for _ in range(frames.shape[0])]
    if len(boxes) != frames.shape[0] or any(len(per_frame) != len(nouns) for per_frame in boxes):
        raise RuntimeError(f"{counter.describe()} returned boxes for {len(boxes)} frames; expected "
                           f"{frames.shape[0]} frames x {len(nouns)} nouns")
    frozen = tuple(tuple(tuple(noun_boxes) for noun_boxes in per_frame) for per_frame in boxes)
    counts = tuple(tuple(len(frozen[f][n]) for f in range(len(frozen))) for n in range(len(nouns)))
    return CountCheck(nouns=nouns, targets=wanted, counts=counts, boxes=frozen, judge=counter.describe(),
                      frame_size=(int(frames.shape[1]), int(frames.shape[2])))


def best_try(scores: Sequence[float]) -> int:
    """The try to keep: the highest score, the earliest of equals (a later try costs more and is
    no better)."""
    if not scores or any(s != s for s in scores):
        raise ValueError(f"no try to choose from, or a score that is not a number: {list(scores)}")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class TryResult:
    """One try of a run that checks itself: its seed, what the judge counted, what it cost."""

    seed: int
    check: CountCheck
    evaluations: int                          # model evaluations (diffusion model calls) of this try
    guided: bool                              # the guided pass ran (False: counts read right, plain run finished)
    samples: Optional[torch.Tensor] = None    # the try's latent samples (CPU), for whoever compares tries

    def describe(self) -> str:
        counts = "; ".join(f"{noun} {_run_lengths(c)}" for noun, c in zip(self.check.nouns, self.check.counts))
        how = "guided" if self.guided else "read right, not guided"
        return (f"seed {self.seed}: score {self.check.score:.3f}{' (all right)' if self.check.all_right else ''}, "
                f"{self.evaluations} model evaluations, {how}; counts {counts}")


@dataclass(frozen=True)
class CheckedRun:
    """Every try of a run that checks itself, and the one kept (the best score, the earliest of equals)."""

    tries: tuple[TryResult, ...]
    max_tries: int

    @property
    def chosen(self) -> int:
        return best_try([t.check.score for t in self.tries])

    @property
    def evaluations(self) -> int:
        return sum(t.evaluations for t in self.tries)

    def describe(self) -> str:
        best = self.tries[self.chosen]
        stop = ("stopped: every count right" if best.check.all_right
                else f"no try had every count right in {self.max_tries} tries")
        lines = [f"NUMINA checked sampler: kept try {self.chosen + 1} of {len(self.tries)} (seed {best.seed}, score "
                 f"{best.check.score:.3f}); {stop}; {self.evaluations} model evaluations in all; judge: "
                 f"{best.check.judge}"]
        lines += [f"  try {i + 1}: {t.describe()}" for i, t in enumerate(self.tries)]
        return "\n".join(lines)
