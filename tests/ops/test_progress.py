"""Progress callbacks of the long loops: one call per unit of work, and an exception raised from
the callback (ComfyUI's interrupt) stops the loop there."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from numina_dev.synthetic import make_scene, scene_capture
from numina_ops import capture as C
from numina_ops.layout import MODES, infer_layout
from numina_ops.records import TokenGrid
from numina_ops.refine import refine_layout

GRID = TokenGrid(frames=3, height=6, width=8)
HEADS, HEAD_DIM, CONTEXT = 4, 8, 32


class Stop(Exception):
    pass


class Recorder:
    """Records every (done, total); raises Stop at call `stop_at` (1-based) when given."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise Stop


def _qk(tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(1, tokens, HEADS * HEAD_DIM, generator=gen),
            torch.randn(1, tokens, HEADS * HEAD_DIM, generator=gen))


def _counting(fn):
    """fn wrapped to count its calls (the work done per chunk)."""
    def wrapped(*args, **kwargs):
        wrapped.calls += 1
        return fn(*args, **kwargs)
    wrapped.calls = 0
    return wrapped


@pytest.mark.parametrize("per_chunk", [1, 2, HEADS, 2 * HEADS])
def test_self_attention_read_reports_each_chunk_once(per_chunk):
    q, k = _qk(GRID.tokens)
    budget = per_chunk * 4 * GRID.tokens_per_frame ** 2            # exactly `per_chunk` maps a chunk
    chunks = len(C._frame_head_chunks(range(GRID.frames), HEADS, C.heads_per_chunk(GRID.tokens_per_frame, HEADS, budget)))
    progress = Recorder()
    with_progress = C.read_self_attention(q, k, HEADS, GRID, budget, progress=progress)
    assert progress.calls == [(i, chunks) for i in range(1, chunks + 1)]
    plain = C.read_self_attention(q, k, HEADS, GRID, budget)
    assert torch.equal(with_progress.features, plain.features)
    assert torch.equal(with_progress.chosen_heads, plain.chosen_heads)


def test_self_attention_read_stops_where_the_callback_raises(monkeypatch):
    q, k = _qk(GRID.tokens)
    counted = _counting(C.frame_attention)
    monkeypatch.setattr(C, "frame_attention", counted)
    budget = 4 * GRID.tokens_per_frame ** 2                        # one (frame, head) map a chunk
    with pytest.raises(Stop):
        C.read_self_attention(q, k, HEADS, GRID, budget, progress=Recorder(stop_at=2))
    assert counted.calls == 2                                      # of GRID.frames * HEADS = 12 chunks


def test_cross_attention_read_reports_each_chunk_and_stops_on_raise():
    q, _ = _qk(GRID.tokens)
    context = torch.randn(1, CONTEXT, HEADS * HEAD_DIM, generator=torch.Generator().manual_seed(1))
    rows = 10
    budget = rows * 2 * 4 * HEADS * CONTEXT                        # exactly `rows` query rows a chunk
    chunks = -(-GRID.tokens // rows)
    progress = Recorder()
    maps = C.read_cross_attention(q, context, HEADS, GRID, {"apples": (3, 4)}, budget, progress=progress)
    assert progress.calls == [(i, chunks) for i in range(1, chunks + 1)]
    assert torch.equal(maps["apples"], C.read_cross_attention(q, context, HEADS, GRID, {"apples": (3, 4)}, budget)["apples"])
    stopper = Recorder(stop_at=1)
    with pytest.raises(Stop):
        C.read_cross_attention(q, context, HEADS, GRID, {"apples": (3, 4)}, budget, progress=stopper)
    assert stopper.calls == [(1, chunks)]


def _two_noun_capture(frames: int = 3):
    """A synthetic capture with two nouns (the second's maps are the first's, flipped)."""
    capture = scene_capture(make_scene(3, height=12, width=16, frames=frames, seed=2), "apples", target=2)
    first = capture.nouns[0]
    second = dataclasses.replace(first, noun="pears", cross_attention=first.cross_attention.flip(-1).clone())
    return dataclasses.replace(capture, nouns=(first, second))


@pytest.mark.parametrize("mode", MODES)
def test_layout_readout_reports_each_frame_of_each_noun(mode):
    capture = _two_noun_capture()
    progress = Recorder()
    layout = infer_layout(capture, mode=mode, progress=progress)
    total = 2 * capture.grid.frames
    assert progress.calls == [(i, total) for i in range(1, total + 1)]
    plain = infer_layout(capture, mode=mode)
    assert all(torch.equal(a.labels, b.labels) for a, b in zip(layout.nouns, plain.nouns))


@pytest.mark.parametrize("mode", MODES)
def test_layout_readout_stops_where_the_callback_raises(mode):
    progress = Recorder(stop_at=2)
    with pytest.raises(Stop):
        infer_layout(_two_noun_capture(), mode=mode, progress=progress)
    assert len(progress.calls) == 2


def test_refinement_reports_each_frame_of_each_noun_and_a_skipped_noun_at_once():
    layout = infer_layout(_two_noun_capture(), mode="cross")
    frames = layout.grid.frames
    progress = Recorder()
    refined = refine_layout(layout, progress=progress)
    # "pears" has no count in the targets (target -1): left as detected, its frames counted at once
    assert progress.calls == [(i, 2 * frames) for i in range(1, frames + 1)] + [(2 * frames, 2 * frames)]
    plain = refine_layout(layout)
    assert all(torch.equal(a.labels, b.labels) for a, b in zip(refined.nouns, plain.nouns))


def test_refinement_stops_where_the_callback_raises():
    layout = infer_layout(_two_noun_capture(), mode="cross")
    progress = Recorder(stop_at=1)
    with pytest.raises(Stop):
        refine_layout(layout, progress=progress)
    assert progress.calls == [(1, 2 * layout.grid.frames)]
