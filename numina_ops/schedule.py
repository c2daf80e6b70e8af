"""The reference pass's path through the run's sigma schedule.

The reference step's attention is read at that step's noise level.  A flow model's trajectory is
nearly straight at high noise, so the pass can reach that level in a few large steps instead of the
run's own `reference_step` small ones: with 25 steps and the reading at step 10, two steps and the
reading cost 3 model evaluations instead of 11 (issue 21: the reference pass was most of NUMINA's
extra cost).  Whether the layout read there still holds is measured on CountWorld
(`benchmarks/countworld_benchmark.py --numina approach_steps=N`), not assumed.
"""
from __future__ import annotations


def is_exact(path) -> bool:
    """Whether a reference path takes every step of the run up to its end (finishing it is then
    the plain run)."""
    return list(path) == list(range(len(path)))


def reference_path(reference_step: int, approach_steps: int) -> list[int]:
    """Indices into the run's schedule that the reference pass visits: 0, the approach's stops, the
    reference step, and the step after it (the reading's own step).  ``approach_steps`` <= 0 or
    >= ``reference_step``: every step of the run (the exact path, ``reference_step + 1`` evaluations);
    otherwise ``approach_steps + 1`` evaluations, the stops evenly spread over the run's steps."""
    if reference_step < 0:
        raise ValueError(f"reference_step must be >= 0, got {reference_step}")
    taken = reference_step if approach_steps <= 0 else min(approach_steps, reference_step)
    stops = [round(i * reference_step / taken) for i in range(taken + 1)] if taken else [0]
    return stops + [reference_step + 1]

