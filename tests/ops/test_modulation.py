"""Phase 2 modulation: the strength schedule, the bias plan, and the equality of the attention forms."""
from __future__ import annotations

import math

import pytest
import torch

from numina_ops import modulation as M
from numina_ops.records import (CountTarget, Layout, NounLayout, NuminaInputError, Targets,
                                TokenGrid)


# ----------------------------------------------------------------------------- strength

def test_fifty_steps_reproduce_the_published_active_steps() -> None:
    active = [i for i in range(50) if M.strength(i, 50) > 0]
    assert active == list(range(45))
    for i in active:
        assert M.strength(i, 50) == pytest.approx(0.25 * (4 - 3 * math.tanh(i - 25)), abs=0)


def test_published_curve_landmarks() -> None:
    assert M.strength(0, 50) == pytest.approx(1.75, abs=1e-9)
    assert M.strength(25, 50) == pytest.approx(1.0, abs=1e-12)
    assert M.strength(49, 50) == 0.0


@pytest.mark.parametrize("steps", [20, 30, 50, 7])
def test_other_step_counts_follow_the_fraction_of_the_schedule(steps: int) -> None:
    values = [M.strength(i, steps) for i in range(steps)]
    active = [v for v in values if v > 0]
    assert values[: len(active)] == active, "active steps form a prefix"
    assert all(a >= b for a, b in zip(active, active[1:])), "strength never grows"
    last = len(active) - 1
    assert 44 - 50 / steps < last * 50 / steps <= 45, "ends where the published schedule ends"


def test_an_earlier_bias_end_cuts_the_curve_and_changes_nothing_before(monkeypatch) -> None:
    """BIAS_END (an experiment's constant, 1.0 by default): no bias from that share of the schedule."""
    full = [M.strength(i, 25) for i in range(25)]
    monkeypatch.setattr(M, "BIAS_END", 0.6)
    cut = [M.strength(i, 25) for i in range(25)]
    assert cut[:15] == full[:15] and full[15] > 0 and not any(cut[15:])


@pytest.mark.parametrize("step, total", [(-1, 50), (50, 50), (0, 0)])
def test_bad_steps_are_refused(step: int, total: int) -> None:
    with pytest.raises(NuminaInputError):
        M.strength(step, total)


# ----------------------------------------------------------------------------- plan

GRID = TokenGrid(frames=4, height=6, width=8)


def _layout(labels_by_noun: dict[str, torch.Tensor], positions: dict[str, tuple[int, ...]]) -> Layout:
    items = tuple(CountTarget(noun=n, count=1, span=(0, 1)) for n in labels_by_noun)
    nouns = tuple(NounLayout(noun=n, target=1, token_positions=positions[n], labels=lab.to(torch.int32),
                             counts=(1,) * GRID.frames) for n, lab in labels_by_noun.items())
    return Layout(grid=GRID, targets=Targets(prompt="p", items=items), nouns=nouns, refined=True)


def _edited_labels() -> torch.Tensor:
    """frame 0: two instances + an added copy; frame 1: only an added one; frame 2: a removed one."""
    lab = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32)
    lab[0, 0:2, 0:2] = 1            # 4 pixels
    lab[0, 3:6, 0:3] = 2            # 9 pixels
    lab[0, 0:2, 5:7] = 100          # added next to the smaller instance 1
    lab[1, 2:4, 2:4] = 100
    lab[2, 1:3, 1:3] = -1
    lab[2, 4:6, 4:6] = 1
    lab[3, 0:3, 0:3] = 1            # untouched frame
    return lab


def _row(f: int, r: int, c: int) -> int:
    return f * GRID.tokens_per_frame + r * GRID.width + c


def test_plan_kinds_rows_and_reference_instance() -> None:
    plan = M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": (3, 4)}))
    (cats,) = plan.nouns
    assert cats.columns.tolist() == [3, 4]
    assert sorted(cats.removed_rows.tolist()) == sorted(_row(2, r, c) for r in (1, 2) for c in (1, 2))
    assert sorted(cats.empty_frame_rows.tolist()) == sorted(_row(1, r, c) for r in (2, 3) for c in (2, 3))
    (group,) = cats.matched
    assert sorted(group.rows.tolist()) == sorted(_row(0, r, c) for r in (0, 1) for c in (5, 6))
    assert sorted(group.reference_rows.tolist()) == sorted(_row(0, r, c) for r in (0, 1) for c in (0, 1))
    assert plan.rows.numel() == 12


def test_untouched_layout_gives_an_empty_plan() -> None:
    lab = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32)
    lab[:, 1:3, 1:3] = 1
    plan = M.build_bias_plan(_layout({"cats": lab}, {"cats": (3,)}))
    assert plan.is_empty and plan.rows.numel() == 0


# ----------------------------------------------------------------------------- forms agree

def _qkv(batch: int, heads: int, head_dim: int, context: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, GRID.tokens, heads * head_dim, generator=gen)
    k = torch.randn(batch, context, heads * head_dim, generator=gen)
    v = torch.randn(batch, context, heads * head_dim, generator=gen)
    return q, k, v


def _dense_reference(q, k, v, heads, plan, delta) -> torch.Tensor:
    """Independent reference: build the published dense mask by hand from the definitions."""
    b, length, c = q.shape
    d = c // heads
    qh = q.reshape(b, length, heads, d).transpose(1, 2)
    kh = k.reshape(b, -1, heads, d).transpose(1, 2)
    vh = v.reshape(b, -1, heads, d).transpose(1, 2)
    logits = qh @ kh.transpose(-1, -2) / math.sqrt(d)
    head_mean = logits.mean(dim=1)                               # [B, L, ctx]
    mask = torch.zeros(b, length, k.shape[1])
    for noun in plan.nouns:
        cols = noun.columns
        for r in noun.removed_rows.tolist():
            mask[:, r, cols] += -10 * delta
        for r in noun.empty_frame_rows.tolist():
            mask[:, r, cols] += max(0.8, plan.added_boost) * delta
        for g in noun.matched:
            m_ref = head_mean[:, g.reference_rows][:, :, cols].mean(dim=(1, 2))
            for r in g.rows.tolist():
                published = delta * m_ref[:, None] - head_mean[:, r, cols]
                if plan.added_boost > 0:
                    published = torch.maximum(published, torch.full_like(published, plan.added_boost * delta))
                mask[:, r, cols] += published
    probs = torch.softmax(logits + mask[:, None], dim=-1)
    return (probs @ vh).transpose(1, 2).reshape(b, length, -1)


CASES = [  # batch, heads, head_dim, context, delta
    (1, 2, 8, 16, 1.75),
    (1, 3, 16, 32, 1.0),
    (2, 4, 8, 24, 0.4),
]


@pytest.mark.parametrize("batch, heads, head_dim, context, delta", CASES)
@pytest.mark.parametrize("form", M.FORMS)
def test_every_form_equals_the_dense_definition(batch, heads, head_dim, context, delta, form) -> None:
    other = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32)
    other[0, 3:5, 3:5] = -1
    other[1, 0:2, 5:8] = 101
    other[1, 4:6, 6:8] = 1
    plan = M.build_bias_plan(_layout({"cats": _edited_labels(), "dogs": other},
                                     {"cats": (3, 4), "dogs": (7, 8, 9)}))

    q, k, v = _qkv(batch, heads, head_dim, context, seed=heads * 100 + context)
    expected = _dense_reference(q, k, v, heads, plan, delta)
    got = M.guided_cross_attention(q, k, v, heads, plan, delta, form=form, memory_budget=4096)
    assert (got - expected).abs().max() < 1e-5
    plain = M.plain_cross_attention(q, k, v, heads)
    assert (got - plain).abs().max() > 1e-3, "the bias must change something"


@pytest.mark.parametrize("form", M.FORMS)
def test_noun_holding_almost_all_attention_is_exact(form) -> None:
    """A removed pixel whose attention sits 0.999 on the noun: the fast form must not cancel."""
    heads, head_dim, context = 2, 8, 16
    lab = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32)
    lab[0, 1:3, 1:3] = -1
    lab[1, 1:3, 1:3] = 100           # an added pixel too (positive path)
    plan = M.build_bias_plan(_layout({"cats": lab}, {"cats": (5,)}))
    q, k, v = _qkv(1, heads, head_dim, context, seed=7)
    k[0, 5] = 0.0
    q[0, plan.rows] = 0.0
    k[0, 5, 0::head_dim] = 1.0                 # noun key: e_0 in every head
    q[0, plan.rows, 0::head_dim] = math.sqrt(head_dim) * math.log(0.999 / 0.001 * (context - 1))
    k[0, torch.arange(context) != 5] = 0.0     # other keys: logit 0
    qh = q.reshape(1, -1, heads, head_dim).transpose(1, 2)
    kh = k.reshape(1, -1, heads, head_dim).transpose(1, 2)
    share = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(head_dim), -1)[0, :, plan.rows, 5]
    assert torch.allclose(share, torch.full_like(share, 0.999), atol=1e-4)
    expected = _dense_reference(q, k, v, heads, plan, 1.75)
    got = M.guided_cross_attention(q, k, v, heads, plan, 1.75, form=form)
    assert (got - expected).abs().max() < 1e-5


@pytest.mark.parametrize("form", M.FORMS)
def test_unbiased_rows_and_empty_plans_are_bit_identical_to_plain(form) -> None:
    plan = M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": (3, 4)}))
    q, k, v = _qkv(1, 2, 8, 16, seed=3)
    plain = M.plain_cross_attention(q, k, v, 2)
    out = M.guided_cross_attention(q, k, v, 2, plan, 1.2, form=form)
    untouched = torch.ones(GRID.tokens, dtype=torch.bool)
    untouched[plan.rows] = False
    if form != "dense":                        # the dense mask goes through another kernel path
        assert torch.equal(out[:, untouched], plain[:, untouched])
    empty = M.build_bias_plan(_layout({"cats": torch.zeros(GRID.frames, GRID.height, GRID.width)}, {"cats": (3,)}))
    assert torch.equal(M.guided_cross_attention(q, k, v, 2, empty, 1.2, form=form), plain)
    assert torch.equal(M.guided_cross_attention(q, k, v, 2, plan, 0.0, form=form), plain)


@pytest.mark.parametrize("form", M.FORMS)
def test_added_boost_lifts_weak_added_pixels_and_leaves_the_rest(form) -> None:
    """added_boost 0 is the published bias; a floor raises every added pixel's bias to at least
    floor x delta (matched and empty-frame kinds), and removed or untouched rows do not move."""
    layout = _layout({"cats": _edited_labels()}, {"cats": (3, 4)})
    published, floored = M.build_bias_plan(layout), M.build_bias_plan(layout, added_boost=6.0)
    q, k, v = _qkv(1, 2, 8, 16, seed=11)
    expected = _dense_reference(q, k, v, 2, floored, 1.5)
    got = M.guided_cross_attention(q, k, v, 2, floored, 1.5, form=form)
    assert (got - expected).abs().max() < 1e-5
    bias = M.row_bias(q, k, 2, floored, 1.5)
    (cats,) = floored.nouns
    added = torch.cat([cats.empty_frame_rows, cats.matched[0].rows])
    at = torch.searchsorted(bias.rows, added)
    assert bool((bias.values[:, at] >= 6.0 * 1.5 - 1e-6).all())
    base = M.guided_cross_attention(q, k, v, 2, published, 1.5, form=form)
    removed = cats.removed_rows
    assert (got[:, removed] - base[:, removed]).abs().max() < 1e-6
    assert (got[:, added] - base[:, added]).abs().max() > 1e-3
    with pytest.raises(NuminaInputError, match="added_boost"):
        M.build_bias_plan(layout, added_boost=-1.0)


def test_plan_stays_compact() -> None:
    plan = M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": (3, 4)}))
    sizes = [t.numel() for n in plan.nouns for t in (n.columns, n.removed_rows, n.empty_frame_rows)]
    assert sum(sizes) < GRID.tokens


def test_bad_calls_are_refused() -> None:
    plan = M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": (3, 40)}))
    q, k, v = _qkv(1, 2, 8, 16, seed=0)
    with pytest.raises(NuminaInputError, match="outside the context"):
        M.guided_cross_attention(q, k, v, 2, plan, 1.0)
    good = M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": (3,)}))
    with pytest.raises(NuminaInputError, match="does not match the grid"):
        M.guided_cross_attention(q[:, :-1], k, v, 2, good, 1.0)
    with pytest.raises(NuminaInputError, match="heads"):
        M.guided_cross_attention(q, k, v, 3, good, 1.0)
    with pytest.raises(NuminaInputError, match="unknown form"):
        M.guided_cross_attention(q, k, v, 2, good, 1.0, form="flash")
    with pytest.raises(NuminaInputError, match="no token positions"):
        M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": ()}))


def test_one_forward_shares_the_constant_mask_and_a_new_strength_rebuilds_it() -> None:
    plan = M.prepare_plan(M.build_bias_plan(_layout({"cats": _edited_labels()}, {"cats": (3, 4)})), "cpu")
    first = plan.constant_mask(1.5, torch.float32, 16)
    assert plan.constant_mask(1.5, torch.float32, 16) is first
    again = plan.constant_mask(0.5, torch.float32, 16)
    assert again is not first and torch.allclose(again * 3.0, first)
    assert float(first[0, 0, :, 3].min()) == M.REMOVED_BIAS * 1.5     # removed rows at the noun's column
    assert float(first[..., 0].abs().max()) == 0.0                     # other columns are untouched


# ----------------------------------------------------------------------------- calibrated bias

def _shares(q, k, heads, columns, mask=None) -> torch.Tensor:
    """[B, L]: each row's attention share on `columns`, mean over heads (independent of the module)."""
    b, length, c = q.shape
    d = c // heads
    qh = q.reshape(b, length, heads, d).transpose(1, 2)
    kh = k.reshape(b, -1, heads, d).transpose(1, 2)
    logits = qh @ kh.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        logits = logits + mask[:, None]
    return torch.softmax(logits, dim=-1)[..., columns].sum(-1).mean(1)


def _biased_mask(q, k, heads, plan, delta) -> torch.Tensor:
    prepared = M.prepare_plan(plan, q.device)
    values = M.bias_values(q, k, heads, prepared, delta)
    mask = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
    mask[:, prepared.rows[:, None], prepared.columns[None, :]] = values
    return mask


def _calibration_layout() -> tuple[torch.Tensor, dict]:
    lab = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32)
    lab[0, 0:2, 0:2] = 1             # an existing instance ...
    lab[0, 3:5, 4:6] = 100           # ... and an added one beside it
    lab[1, 1:3, 1:3] = -1            # a removed instance
    lab[2, 0:2, 0:2] = 1
    lab[3, 2:4, 2:4] = 100           # added in a frame with no instance: frames 0 and 2 are the reference
    return lab, {"cats": (5,)}


@pytest.fixture
def moderate_gain(monkeypatch):
    """The rule's exactness is checked at a gain where float32 odds stay precise (shares < 0.999)."""
    monkeypatch.setattr(M, "CALIBRATED_GAIN", 2.0)


def test_calibrated_bias_gives_added_pixels_the_reference_instances_share_on_one_head(moderate_gain) -> None:
    """One head: adding b to the noun's logits multiplies its attention odds by e^b, so at strength
    delta the added pixels' share lands exactly on odds(reference share) x gain x delta, whatever
    the model's scale; removed pixels land on odds(background share) / (gain x delta)."""
    lab, positions = _calibration_layout()
    plan = M.build_bias_plan(_layout({"cats": lab}, positions), rule="calibrated")
    q, k, v = _qkv(1, 1, 8, 16, seed=5)
    q[0, :, :] *= 0.3                                 # a weak noun: small logits everywhere
    delta = 1.5
    before = _shares(q, k, 1, [5])[0]
    after = _shares(q, k, 1, [5], _biased_mask(q, k, 1, plan, delta))[0]
    flat = lab.reshape(-1)
    odds = lambda p: p / (1 - p)                      # noqa: E731
    gain = M.CALIBRATED_GAIN * delta
    frame0, frame3 = torch.arange(GRID.tokens) < GRID.tokens_per_frame, torch.arange(GRID.tokens) >= 3 * GRID.tokens_per_frame
    added0, added3 = (flat >= 100) & frame0, (flat >= 100) & frame3
    reference0 = before[(flat == 1) & frame0].mean()
    reference_all = before[flat == 1].mean()
    for rows, reference in ((added0, reference0), (added3, reference_all)):
        wanted = torch.maximum(odds(before[rows]), odds(reference) * gain)
        assert torch.allclose(odds(after[rows]), wanted, rtol=1e-4)
    removed = flat == -1
    frame1 = (torch.arange(GRID.tokens) >= GRID.tokens_per_frame) & (torch.arange(GRID.tokens) < 2 * GRID.tokens_per_frame)
    background = before[(flat == 0) & frame1].mean()
    wanted = torch.minimum(odds(before[removed]), odds(background) / gain)
    assert torch.allclose(odds(after[removed]), wanted, rtol=1e-4)
    untouched = (flat == 0) | (flat == 1)
    assert torch.equal(after[untouched], before[untouched])


def test_calibrated_bias_is_scale_free(moderate_gain) -> None:
    """The same layout on a model whose noun key is 8x weaker: the calibrated rule still puts the
    added pixels at gain x the reference instances' attention odds (here the reference's share is
    0.9999 on one model and 0.23 on the other), with no per-model constant."""
    lab, positions = _calibration_layout()
    layout = _layout({"cats": lab}, positions)
    flat = lab.reshape(-1)
    frame0 = torch.arange(GRID.tokens) < GRID.tokens_per_frame
    odds = lambda p: p / (1 - p)                      # noqa: E731
    lift = {}
    for scale in (1.0, 0.125):
        q, k, v = _qkv(1, 1, 8, 16, seed=9)
        k[0, :, 0] = 0.0
        k[0, 5] = 0.0
        k[0, 5, 0] = 4.0 * scale                          # the noun's key, weaker on the second model
        q[0, (flat >= 100) & frame0] = 0.0                # the added pixels attend evenly (to the noun 1/16)
        q[0, (flat == 1) & frame0] = 0.0
        q[0, (flat == 1) & frame0, 0] = 3.0 * math.sqrt(8)   # the instance attends to the noun
        before = _shares(q, k, 1, [5])[0]
        reference = odds(before[(flat == 1) & frame0].mean())
        added = (flat >= 100) & frame0
        assert bool((odds(before[added]) < M.CALIBRATED_GAIN * reference).all())
        after = _shares(q, k, 1, [5], _biased_mask(q, k, 1, M.build_bias_plan(layout, rule="calibrated"), 1.0))[0]
        lift[scale] = float((odds(after[added]) / reference).median())
    assert lift[1.0] == pytest.approx(M.CALIBRATED_GAIN, rel=1e-2)   # float32 odds near share 1
    assert lift[0.125] == pytest.approx(M.CALIBRATED_GAIN, rel=1e-3)


def test_the_shipped_gain_makes_the_noun_dominate_added_pixels_and_vanish_from_removed_ones() -> None:
    lab, positions = _calibration_layout()
    plan = M.build_bias_plan(_layout({"cats": lab}, positions), rule="calibrated")
    q, k, v = _qkv(1, 2, 8, 16, seed=21)
    delta = M.strength(0, 25)
    before = _shares(q, k, 2, [5])[0]
    after = _shares(q, k, 2, [5], _biased_mask(q, k, 2, plan, delta))[0]
    flat = lab.reshape(-1)
    assert float(after[flat >= 100].min()) > 0.9 > float(before[flat >= 100].max())
    assert float(after[flat == -1].max()) < 0.01 < float(before[flat == -1].min())


@pytest.mark.parametrize("form", M.FORMS)
def test_calibrated_bias_is_the_same_in_every_form_and_leaves_other_rows_bit_identical(form) -> None:
    lab, positions = _calibration_layout()
    plan = M.build_bias_plan(_layout({"cats": lab}, positions), modifier_positions={"cats": (4,)}, rule="calibrated")
    q, k, v = _qkv(2, 3, 8, 16, seed=13)
    expected = M.guided_cross_attention(q, k, v, 3, plan, 1.25, form="dense")
    got = M.guided_cross_attention(q, k, v, 3, plan, 1.25, form=form, memory_budget=4096)
    assert (got - expected).abs().max() < 1e-5
    plain = M.plain_cross_attention(q, k, v, 3)
    assert (got - plain).abs().max() > 1e-3
    if form != "dense":
        untouched = torch.ones(GRID.tokens, dtype=torch.bool)
        untouched[plan.rows] = False
        assert torch.equal(got[:, untouched], plain[:, untouched])


def test_calibrated_plan_reads_few_reference_rows_and_aims_at_a_fixed_share_without_any(moderate_gain) -> None:
    lab = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32)
    lab[1, 0:2, 0:2] = 100                        # added, and no instance anywhere
    plan = M.build_bias_plan(_layout({"cats": lab}, {"cats": (5,)}), rule="calibrated")
    (group,) = plan.nouns[0].calibrated
    assert group.adds and group.reference_rows.numel() == 0
    q, k, v = _qkv(1, 1, 8, 16, seed=2)
    after = _shares(q, k, 1, [5], _biased_mask(q, k, 1, plan, 1.0))[0][plan.rows]
    target = M.NO_REFERENCE_SHARE / (1 - M.NO_REFERENCE_SHARE) * M.CALIBRATED_GAIN
    assert torch.allclose(after / (1 - after), torch.full_like(after, target), rtol=1e-4)
    big = TokenGrid(frames=1, height=40, width=40)
    labels = torch.zeros(1, 40, 40, dtype=torch.int32)
    labels[0, :30, :30] = 1
    labels[0, 35:38, 35:38] = 100
    layout = Layout(grid=big, targets=Targets(prompt="p", items=(CountTarget("cats", 2, (0, 1)),)),
                    nouns=(NounLayout("cats", 2, (5,), labels, (2,)),), refined=True)
    (group,) = M.build_bias_plan(layout, rule="calibrated").nouns[0].calibrated
    assert group.reference_rows.numel() == M.MAX_REFERENCE_ROWS < 900
    with pytest.raises(NuminaInputError, match="bias rule"):
        M.build_bias_plan(layout, rule="strong")
