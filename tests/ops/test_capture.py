"""Capture: self-attention head scoring, cross-attention noun maps, the Capture record."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.filters import sobel as skimage_sobel

from numina_ops import capture as C
from numina_ops.records import Capture, CountTarget, NuminaInputError, Targets, TokenGrid


GRID = TokenGrid(frames=3, height=10, width=12)
HEADS, HEAD_DIM = 4, 16


def _object_qk(grid: TokenGrid, heads: int, head_dim: int, seed: int, sharp_heads: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k whose tokens in a few rectangles share a direction: maps with rank structure.
    Heads in ``sharp_heads`` get strong structure, the others almost none."""
    gen = torch.Generator().manual_seed(seed)
    n = grid.tokens_per_frame
    q = torch.empty(1, grid.tokens, heads * head_dim)
    k = torch.empty_like(q)
    for f in range(grid.frames):
        label = torch.zeros(grid.height, grid.width, dtype=torch.long)
        for o in range(3):
            r, c = torch.randint(0, grid.height - 3, (), generator=gen), torch.randint(0, grid.width - 3, (), generator=gen)
            label[r:r + 3, c:c + 4] = o + 1
        dirs = torch.randn(heads, 4, head_dim, generator=gen)
        gain = torch.tensor([4.0 if h in sharp_heads or not sharp_heads else 0.05 for h in range(heads)])
        base = dirs[:, label.reshape(-1)] * gain[:, None, None]
        for t in (q, k):
            x = base + 0.3 * torch.randn(heads, n, head_dim, generator=gen)
            t[0, f * n:(f + 1) * n] = x.transpose(0, 1).reshape(n, -1)
    return q, k


def _frame_maps(q: torch.Tensor, k: torch.Tensor, f: int) -> torch.Tensor:
    n = GRID.tokens_per_frame
    return C.frame_attention(C._heads_first(q[0, f * n:(f + 1) * n], HEADS), C._heads_first(k[0, f * n:(f + 1) * n], HEADS))


# ----------------------------------------------------------------------------- factorisation

def test_frame_attention_is_the_softmax_of_scaled_logits() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=0)
    maps = _frame_maps(q, k, 1)
    n = GRID.tokens_per_frame
    qh = q[0, n:2 * n].reshape(n, HEADS, HEAD_DIM).transpose(0, 1)
    kh = k[0, n:2 * n].reshape(n, HEADS, HEAD_DIM).transpose(0, 1)
    expected = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(HEAD_DIM), dim=-1)
    assert torch.allclose(maps, expected, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeded_factorisation_matches_the_exact_svd(seed: int) -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=seed)
    maps = _frame_maps(q, k, 0)
    exact = C.fix_signs(C.svd_components(maps))
    approx = C.fix_signs(C.subspace_components(maps))
    rel = (approx - exact).norm(dim=1) / exact.norm(dim=1)
    assert rel.max() < 1e-3
    centred = maps - maps.mean(dim=1, keepdim=True)
    assert centred.sum(dim=1).abs().max() < 1e-5          # columns centred: the reference's dim 0 mean


def test_factorisation_is_deterministic() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=4)
    first = C.read_self_attention(q, k, HEADS, GRID)
    second = C.read_self_attention(q.clone(), k.clone(), HEADS, GRID)
    assert torch.equal(first.head_scores, second.head_scores)
    assert torch.equal(first.chosen_heads, second.chosen_heads)
    assert torch.equal(first.features, second.features)


def test_sign_convention_makes_the_largest_entry_positive() -> None:
    gen = torch.Generator().manual_seed(0)
    comps = torch.randn(2, 50, 3, generator=gen)
    fixed = C.fix_signs(comps)
    idx = fixed.abs().argmax(dim=1)
    assert (fixed.gather(1, idx[:, None]) > 0).all()
    assert torch.equal(C.fix_signs(-comps), fixed)


def test_minmax_maps_columns_to_unit_range_and_constants_to_zero() -> None:
    comps = torch.stack([torch.linspace(-3, 5, 20), torch.full((20,), 2.0), torch.randn(20)], dim=1)[None]
    out = C.minmax_columns(comps)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 1 and out[..., 2].min() == 0 and out[..., 2].max() == 1
    assert torch.equal(out[..., 1], torch.zeros(1, 20))


# ----------------------------------------------------------------------------- score parts

def test_sobel_agrees_with_scikit_image() -> None:
    grey = torch.rand(3, 11, 17, generator=torch.Generator().manual_seed(1))
    ours = C.sobel_magnitude(grey)
    for h in range(3):
        theirs = skimage_sobel(grey[h].double().numpy())
        assert np.allclose(ours[h].numpy(), theirs, atol=1e-6)


@pytest.mark.parametrize("shape", [(30, 52), (16, 16), (5, 9)])
def test_block_variance_uses_array_split_bands(shape: tuple[int, int]) -> None:
    grey = torch.rand(2, *shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for h in range(2):
        img = grey[h].numpy()
        sums = [b.sum() for band in np.array_split(img, 8, axis=0) for b in np.array_split(band, 8, axis=1)]
        assert C.block_sum_variance(grey)[h].item() == pytest.approx(np.var(sums), rel=1e-10)


def test_head_score_is_the_published_weighted_sum() -> None:
    grey = torch.rand(2, 30, 52, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for h in range(2):
        img = grey[h].numpy()
        sums = [b.sum() for band in np.array_split(img, 8, axis=0) for b in np.array_split(band, 8, axis=1)]
        expected = np.std(img) + np.var(sums) + 0.1 * skimage_sobel(img).mean()
        assert C.score_heads(grey)[h].item() == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- reading

def test_structured_head_wins_over_structureless_ones() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=5, sharp_heads=(2,))
    for h in (0, 1, 3):                      # q = 0: uniform maps, centred to zero, score 0
        q[..., h * HEAD_DIM:(h + 1) * HEAD_DIM] = 0.0
    reading = C.read_self_attention(q, k, HEADS, GRID)
    assert reading.chosen_heads.tolist() == [2] * GRID.frames
    assert reading.head_scores.shape == (GRID.frames, HEADS)
    assert (reading.head_scores.argmax(dim=1) == reading.chosen_heads).all()


def test_features_are_the_chosen_heads_minmaxed_components() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=6)
    reading = C.read_self_attention(q, k, HEADS, GRID)
    assert reading.features.shape == (GRID.frames, GRID.tokens_per_frame, 3)
    for f in range(GRID.frames):
        maps = _frame_maps(q, k, f)
        expected = C.minmax_columns(C.fix_signs(C.svd_components(maps)))[int(reading.chosen_heads[f])]
        assert (reading.features[f] - expected).abs().max() < 1e-3
        assert reading.features[f].amin(dim=0).tolist() == [0, 0, 0]
        assert reading.features[f].amax(dim=0).tolist() == [1, 1, 1]


def test_head_chunking_does_not_change_the_result() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=7)
    one_at_a_time = C.read_self_attention(q, k, HEADS, GRID, memory_budget=1)
    all_at_once = C.read_self_attention(q, k, HEADS, GRID, memory_budget=2**30)
    assert C.heads_per_chunk(GRID.tokens_per_frame, HEADS, 1) == 1
    assert torch.equal(one_at_a_time.chosen_heads, all_at_once.chosen_heads)
    assert torch.allclose(one_at_a_time.head_scores, all_at_once.head_scores, atol=1e-5)


def test_chunk_size_respects_the_budget() -> None:
    n = 3600
    chunk = C.heads_per_chunk(n, 40, C.DEFAULT_MEMORY_BUDGET)
    assert chunk * 4 * n * n <= C.DEFAULT_MEMORY_BUDGET < (chunk + 1) * 4 * n * n


def test_half_precision_inputs_are_read_in_float32() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=8)
    reading = C.read_self_attention(q.to(torch.bfloat16), k.to(torch.bfloat16), HEADS, GRID)
    assert reading.features.dtype == torch.float32 and reading.head_scores.dtype == torch.float32


# ----------------------------------------------------------------------------- cross-attention

def _cross(seed: int, context: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, GRID.tokens, HEADS * HEAD_DIM, generator=gen)
    k = torch.randn(1, context, HEADS * HEAD_DIM, generator=gen)
    k[0, 12:] = k[0, 12]                     # zero-padded text: identical padding keys
    return q, k


def test_cross_attention_map_is_the_mean_over_heads_and_sub_tokens() -> None:
    q, k = _cross(0)
    positions = {"cats": (3, 4), "dog": (7,)}
    maps = C.read_cross_attention(q, k, HEADS, GRID, positions, memory_budget=5000)
    qh = q[0].reshape(-1, HEADS, HEAD_DIM).transpose(0, 1)
    kh = k[0].reshape(-1, HEADS, HEAD_DIM).transpose(0, 1)
    probs = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(HEAD_DIM), dim=-1)   # [h, L, ctx]
    for noun, pos in positions.items():
        expected = probs[:, :, list(pos)].mean(dim=(0, 2)).reshape(GRID.frames, GRID.height, GRID.width)
        assert maps[noun].shape == (GRID.frames, GRID.height, GRID.width)
        assert maps[noun].dtype == torch.float32
        assert torch.allclose(maps[noun], expected, atol=1e-6)


# ----------------------------------------------------------------------------- record

def test_both_halves_assemble_into_the_record_in_target_order() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=9)
    cq, ck = _cross(1)
    targets = Targets(prompt="two cats and a dog", items=(CountTarget("cats", 2, (4, 8)), CountTarget("dog", 1, (15, 18))))
    positions = {"dog": (7,), "cats": (3, 4)}
    reading = C.read_self_attention(q, k, HEADS, GRID)
    cap = C.assemble_capture(reading, C.read_cross_attention(cq, ck, HEADS, GRID, positions), targets, positions,
                             step_index=20, total_steps=50, block_index=15, total_blocks=30, schedule=(1.0, 0.5, 0.0))

    assert isinstance(cap, Capture)
    assert [n.noun for n in cap.nouns] == ["cats", "dog"]
    assert cap.nouns[0].token_positions == (3, 4)
    assert cap.self_features.shape == (GRID.frames, GRID.tokens_per_frame, 3)
    assert cap.chosen_heads.dtype == torch.long and cap.head_scores.shape == (GRID.frames, HEADS)
    assert (cap.step_index, cap.total_steps, cap.block_index, cap.schedule) == (20, 50, 15, (1.0, 0.5, 0.0))
    assert torch.equal(reading.chosen_heads, cap.chosen_heads)
    with pytest.raises(NuminaInputError, match="no cross-attention map or token positions for the target noun 'dog'"):
        C.assemble_capture(reading, {"cats": cap.nouns[0].cross_attention}, targets, positions)


# ----------------------------------------------------------------------------- bad input

def test_nan_in_q_is_named() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=0)
    q[0, GRID.tokens_per_frame + 3, 5] = float("nan")
    with pytest.raises(NuminaInputError, match="q contains NaN or inf .frame 1"):
        C.read_self_attention(q, k, HEADS, GRID)
    cq, ck = _cross(0)
    ck[0, 2, 0] = float("inf")
    with pytest.raises(NuminaInputError, match="k_context contains NaN or inf"):
        C.read_cross_attention(cq, ck, HEADS, GRID, {"cats": (3,)})


def test_bad_shapes_and_positions_are_refused() -> None:
    q, k = _object_qk(GRID, HEADS, HEAD_DIM, seed=0)
    with pytest.raises(NuminaInputError, match="does not match the grid"):
        C.read_self_attention(q[:, :-1], k[:, :-1], HEADS, GRID)
    with pytest.raises(NuminaInputError, match="not divisible by heads=3"):
        C.read_self_attention(q, k, 3, GRID)
    with pytest.raises(NuminaInputError, match="one cond row"):
        C.read_self_attention(torch.cat([q, q]), torch.cat([k, k]), HEADS, GRID)
    cq, ck = _cross(0)
    with pytest.raises(NuminaInputError, match="no token positions"):
        C.read_cross_attention(cq, ck, HEADS, GRID, {"cats": ()})
    with pytest.raises(NuminaInputError, match="outside the context of length 20"):
        C.read_cross_attention(cq, ck, HEADS, GRID, {"cats": (3, 20)})


def test_orthonormal_columns_span_the_qr_basis_and_survive_rank_deficiency() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(3, 50, 6, generator=gen)
    basis = C.orthonormal_columns(y)
    eye = torch.eye(6).expand(3, 6, 6)
    assert torch.allclose(basis.transpose(1, 2) @ basis, eye, atol=1e-5)
    q = torch.linalg.qr(y).Q
    assert torch.allclose(basis @ basis.transpose(1, 2), q @ q.transpose(1, 2), atol=1e-5)   # same span
    flat = torch.zeros(2, 50, 4)                                  # a constant map's sketch: all zeros
    flat[1, :, :2] = torch.randn(50, 2, generator=gen)           # rank 2 of 4
    assert torch.isfinite(C.orthonormal_columns(flat)).all()
