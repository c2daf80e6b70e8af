"""The count check's rule (numina_ops/judge.py): frame score, video score, verdict, best try."""
from __future__ import annotations

import pytest
import torch

from numina_ops.judge import Box, CountCheck, ObjectCounter, best_try, check_frames
from numina_ops.records import CountTarget, NuminaInputError, Targets


def _targets(**counts: int) -> Targets:
    items, prompt, at = [], "", 0
    for noun, count in counts.items():
        items.append(CountTarget(noun=noun, count=count, span=(at + 2, at + 2 + len(noun)), numeral=str(count)))
        prompt += f"{count} {noun} "
        at = len(prompt)
    return Targets(prompt=prompt.strip(), items=tuple(items))


class TableCounter:
    """Counts read from a table counts[frame][noun]; records what it was asked."""

    def __init__(self, table: list[list[int]], frames_out: int | None = None):
        self.table = table
        self.frames_out = frames_out
        self.calls: list[tuple[tuple[int, ...], tuple[str, ...]]] = []

    def describe(self) -> str:
        return "table counter"

    def detect(self, frames, nouns, device=None):
        self.calls.append((tuple(frames.shape), tuple(nouns)))
        rows = self.table if self.frames_out is None else self.table[:self.frames_out]
        return [[[Box(i, i, i + 1.0, i + 1.0, 0.9) for i in range(c)] for c in row] for row in rows]


def _frames(count: int, height: int = 8, width: int = 12) -> torch.Tensor:
    return torch.zeros(count, height, width, 3)


def test_table_counter_is_an_object_counter():
    assert isinstance(TableCounter([]), ObjectCounter)


def test_counts_are_box_numbers_per_noun_and_frame():
    counter = TableCounter([[3, 2], [3, 1], [0, 0]])
    check = check_frames(_frames(3), _targets(apples=3, dogs=2), counter)
    assert counter.calls == [((3, 8, 12, 3), ("apples", "dogs"))]
    assert check.nouns == ("apples", "dogs") and check.targets == (3, 2)
    assert check.counts == ((3, 3, 0), (2, 1, 0))           # [noun][frame]
    assert [[len(nb) for nb in f] for f in check.boxes] == [[3, 2], [3, 1], [0, 0]]
    assert check.frames == 3
    assert check.frame_size == (8, 12)
    assert check.judge == "table counter"


def test_frame_score_is_share_of_exact_nouns_and_score_their_mean():
    check = check_frames(_frames(4), _targets(apples=3, dogs=2),
                         TableCounter([[3, 2], [3, 1], [0, 0], [4, 2]]))
    assert check.frame_scores == (1.0, 0.5, 0.0, 0.5)
    assert check.score == pytest.approx(0.5)
    assert not check.all_right


def test_all_right_only_when_every_noun_exact_in_every_frame():
    right = check_frames(_frames(2), _targets(apples=3, dogs=2), TableCounter([[3, 2], [3, 2]]))
    assert right.all_right and right.score == 1.0
    one_off = check_frames(_frames(2), _targets(apples=3, dogs=2), TableCounter([[3, 2], [3, 3]]))
    assert not one_off.all_right and one_off.score == pytest.approx(0.75)


def test_zero_target_is_right_when_nothing_is_seen():
    check = check_frames(_frames(2), _targets(cats=0), TableCounter([[0], [1]]))
    assert check.frame_scores == (1.0, 0.0)


def test_no_counted_noun_skips_the_detector_and_scores_one():
    class Refuses:
        def describe(self):
            return "unused"

        def detect(self, frames, nouns, device=None):
            raise AssertionError("detect must not run without nouns")

    check = check_frames(_frames(3), Targets(prompt="a sunset", items=()), Refuses())
    assert check.frame_scores == (1.0, 1.0, 1.0)
    assert check.score == 1.0 and check.all_right


def test_describe_gives_verdict_score_and_run_lengths():
    check = check_frames(_frames(5), _targets(apples=3, dogs=1),
                         TableCounter([[3, 1], [3, 1], [3, 1], [4, 1], [4, 1]]))
    text = check.describe()
    first, apples, dogs = text.splitlines()
    assert "a count is wrong" in first and "score 0.800" in first and "table counter" in first
    assert "5 frames" in first
    assert apples == "  apples: target 3, right in 3/5 frames; counts 3 (frames 0-2), 4 (frames 3-4)"
    assert dogs == "  dogs: target 1, right in 5/5 frames; counts 1 (frames 0-4)"


def test_describe_names_single_frame_runs():
    check = check_frames(_frames(3), _targets(apples=2), TableCounter([[2], [1], [2]]))
    assert check.describe().splitlines()[1].endswith("counts 2 (frame 0), 1 (frame 1), 2 (frame 2)")
    assert "every count right" in check_frames(_frames(1), _targets(apples=2), TableCounter([[2]])).describe()


def test_best_try_takes_highest_score_earliest_of_equals():
    assert best_try([0.5, 0.8, 0.8, 0.1]) == 1
    assert best_try([0.2, 0.2, 0.2]) == 0
    assert best_try([0.0, 0.0, 1.0]) == 2
    assert best_try([0.7]) == 0
    with pytest.raises(ValueError):
        best_try([])


@pytest.mark.parametrize("frames", [torch.zeros(2, 8, 12), torch.zeros(2, 3, 8, 12), torch.zeros(8, 12, 3),
                                    [[0.0]], None])
def test_check_frames_refuses_what_is_not_an_image_batch(frames):
    counter = TableCounter([[1], [1]])
    with pytest.raises(NuminaInputError, match="IMAGE"):
        check_frames(frames, _targets(apples=1), counter)
    assert counter.calls == []


def test_check_frames_refuses_a_counter_with_the_wrong_number_of_frames():
    with pytest.raises(RuntimeError, match="table counter returned boxes for 2 frames; expected 3 frames x 1 nouns"):
        check_frames(_frames(3), _targets(apples=1), TableCounter([[1], [1], [1]], frames_out=2))


def test_check_frames_refuses_a_counter_with_the_wrong_number_of_nouns():
    with pytest.raises(RuntimeError, match="expected 2 frames x 2 nouns"):
        check_frames(_frames(2), _targets(apples=1, dogs=1), TableCounter([[1, 1], [1]]))


def test_count_check_is_immutable():
    check = check_frames(_frames(1), _targets(apples=1), TableCounter([[1]]))
    assert isinstance(check, CountCheck)
    with pytest.raises(AttributeError):
        check.counts = ((2,),)
    assert isinstance(check.boxes[0][0], tuple)
