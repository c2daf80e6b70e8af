"""CountWorld's fixed prompt sets: held-out (benchmark) and tuning, disjoint, CountBench-shaped.

CountBench's per-noun counts are 1:161 2:87 3:46 4:31 5:20 6:13 7:5 8:5 over 94 one-noun,
74 two-noun and 42 three-noun prompts.  The sets here are scaled down to what this CPU samples in
minutes, with every count 1..8 kept (a floor per count).  The training script never shows these
exact prompt strings (countworld/train.py excludes them).
"""
from __future__ import annotations

import numpy as np

from countworld.world import COLOURS, MAX_OBJECTS, NOUNS, SUFFIXES, Target, make_prompt

COUNTBENCH_COUNT_WEIGHTS = {1: 161, 2: 87, 3: 46, 4: 31, 5: 20, 6: 13, 7: 5, 8: 5}
COUNTBENCH_NOUNS_PER_PROMPT = {1: 94, 2: 74, 3: 42}
HELDOUT_SEED = 7001
TUNING_SEED = 7002


def _allocate_counts(slots: int, floor: int) -> list[int]:
    """Per-noun counts for `slots` nouns: `floor` of each, the rest by CountBench's weights
    (largest remainder)."""
    rest = slots - floor * len(COUNTBENCH_COUNT_WEIGHTS)
    if rest < 0:
        raise ValueError(f"{slots} noun slots cannot hold a floor of {floor} per count")
    total = sum(COUNTBENCH_COUNT_WEIGHTS.values())
    share = {k: rest * w / total for k, w in COUNTBENCH_COUNT_WEIGHTS.items()}
    alloc = {k: floor + int(share[k]) for k in share}
    leftover = slots - sum(alloc.values())
    for k in sorted(share, key=lambda k: share[k] - int(share[k]), reverse=True)[:leftover]:
        alloc[k] += 1
    return [k for k, n in alloc.items() for _ in range(n)]


def build_prompt_set(prompts_per_noun_count: dict[int, int], seed: int, floor: int,
                     exclude: frozenset[str] = frozenset()) -> list[str]:
    """Prompt texts with CountBench's count mix; each prompt has distinct nouns and
    colours and at most MAX_OBJECTS objects; none renders to a string in `exclude`."""
    rng = np.random.default_rng(seed)
    shape = [n for n, k in sorted(prompts_per_noun_count.items()) for _ in range(k)]
    counts = _allocate_counts(sum(shape), floor)
    for _ in range(100000):
        order = rng.permutation(counts)
        groups, at = [], 0
        for n in shape:
            groups.append([int(c) for c in order[at:at + n]])
            at += n
        if all(sum(g) <= MAX_OBJECTS for g in groups):
            break
    else:
        raise RuntimeError("no arrangement of counts fits the object limit")
    result: list[str] = []
    seen = set(exclude)
    for group in groups:
        while True:
            nouns = rng.choice(len(NOUNS), size=len(group), replace=False)
            colours = rng.choice(len(COLOURS), size=len(group), replace=False)
            targets = tuple(Target(c, COLOURS[k], NOUNS[n]) for c, k, n in zip(group, colours, nouns))
            text = make_prompt(targets, SUFFIXES[int(rng.integers(len(SUFFIXES)))])
            if text not in seen:
                seen.add(text)
                result.append(text)
                break
    return result


def heldout_prompts() -> list[str]:
    """48 benchmark prompts: 24 one-noun, 16 two-noun, 8 three-noun (80 noun slots, >= 3 per count)."""
    return build_prompt_set({1: 24, 2: 16, 3: 8}, HELDOUT_SEED, floor=3)


def tuning_prompts() -> list[str]:
    """24 prompts for choosing settings (12 / 8 / 4 nouns-per-prompt), disjoint from heldout_prompts()."""
    return build_prompt_set({1: 12, 2: 8, 3: 4}, TUNING_SEED, floor=2, exclude=frozenset(heldout_prompts()))


def excluded_from_training() -> frozenset[str]:
    return frozenset(heldout_prompts()) | frozenset(tuning_prompts())
