"""Hand-editable layouts: a layout as pixel masks and an edited mask back, as specifications."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from numina_ops.layout_masks import (apply_mask_edit, layout_to_masks, mask_to_tokens, pixels_per_token,
                                     video_frames)
from numina_ops.records import (FIRST_ADDED, REMOVED, CountTarget, Layout, NounLayout, NuminaInputError, Targets,
                                TokenGrid)

EIGHT = np.ones((3, 3), dtype=bool)


def make_layout(*frames_per_noun: np.ndarray, nouns=("apples", "pears"), family="wan21") -> Layout:
    items, layouts = [], []
    for name, frames in zip(nouns, frames_per_noun):
        frames = np.asarray(frames, dtype=np.int32)
        items.append(CountTarget(name, 3, (0, len(name))))
        counts = tuple(len(np.unique(x[x > 0])) for x in frames)
        layouts.append(NounLayout(noun=name, target=3, token_positions=(1,), labels=torch.from_numpy(frames.copy()),
                                  counts=counts, notes=("from refinement",)))
    f, h, w = np.asarray(frames_per_noun[0]).shape
    targets = Targets(prompt=" and ".join(f"three {n}" for n in nouns), items=tuple(items))
    return Layout(grid=TokenGrid(f, h, w), targets=targets, nouns=tuple(layouts), model_family=family,
                  meta={"cross_attention": {}})


def pixels(tokens: np.ndarray, ppt: int) -> torch.Tensor:
    """A token-level {0, 1} array [N, H, W] drawn at ppt pixels per token."""
    t = torch.as_tensor(np.asarray(tokens), dtype=torch.float32)
    return t.repeat_interleave(ppt, dim=-2).repeat_interleave(ppt, dim=-1)


def labels_of(layout: Layout, noun: str = "apples") -> np.ndarray:
    return layout.noun(noun).labels.numpy()


def blank(f=3, h=10, w=12) -> np.ndarray:
    return np.zeros((f, h, w), dtype=np.int32)


# ------------------------------------------------------------------------------------ layout -> mask

def test_live_instances_are_white_removed_and_background_black_at_pixel_size():
    frames = blank(2, 4, 5)
    frames[0, 1, 1] = 3
    frames[0, 2, 3] = FIRST_ADDED
    frames[1, 0, 0] = REMOVED
    mask = layout_to_masks(make_layout(frames), "apples", 16, frames="latent")
    assert mask.dtype == torch.float32 and tuple(mask.shape) == (2, 64, 80)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask[0, 16:32, 16:32].eq(1).all() and mask[0, 32:48, 48:64].eq(1).all()
    assert float(mask[0].sum()) == 2 * 256 and float(mask[1].sum()) == 0


def test_video_frames_follow_wans_vae():
    frames = blank(3, 2, 2)
    frames[0, 0, 0], frames[1, 0, 1], frames[2, 1, 1] = 1, 1, 1
    mask = layout_to_masks(make_layout(frames), "", 1)            # default: video frames
    assert video_frames(3) == 9 and mask.shape[0] == 9
    latent_of_video = [0, 1, 1, 1, 1, 2, 2, 2, 2]                 # 0 -> 0, 4f-3..4f -> f
    for v, f in enumerate(latent_of_video):
        assert torch.equal(mask[v], torch.from_numpy((frames[f] > 0).astype(np.float32)))


def test_pixel_size_follows_the_model_family():
    assert pixels_per_token("wan21") == 16 and pixels_per_token("wan21_i2v") == 16 and pixels_per_token("wan") == 16
    assert pixels_per_token("wan22_ti2v") == 32


def test_noun_names_empty_first_case_and_plural_tolerant():
    a, p = blank(1, 3, 3), blank(1, 3, 3)
    a[0, 0, 0], p[0, 2, 2] = 1, 1
    layout = make_layout(a, p)
    assert layout_to_masks(layout, "", 1)[0, 0, 0] == 1
    assert layout_to_masks(layout, "Pear", 1)[0, 2, 2] == 1 and layout_to_masks(layout, "pears", 1)[0, 0, 0] == 0


# ------------------------------------------------------------------------------------ round trip

@st.composite
def random_layouts(draw):
    f, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    values = st.sampled_from([0, 0, 0, REMOVED, 1, 2, 3, 7, 99, FIRST_ADDED, FIRST_ADDED + 1, FIRST_ADDED + 5])
    nouns = draw(st.integers(1, 3))
    arrays = [np.array(draw(st.lists(values, min_size=f * h * w, max_size=f * h * w))).reshape(f, h, w)
              for _ in range(nouns)]
    return make_layout(*arrays, nouns=("apples", "pears", "plums")[:nouns])


@settings(max_examples=60, deadline=None)
@given(random_layouts(), st.sampled_from([1, 2, 16, 32]), st.sampled_from(["video", "latent"]))
def test_round_trip_is_exact(layout, ppt, frames):
    for noun in layout.nouns:
        back = apply_mask_edit(layout, noun.noun, layout_to_masks(layout, noun.noun, ppt, frames), ppt)
        assert back.refined
        for before, after in zip(layout.nouns, back.nouns):
            assert torch.equal(before.labels, after.labels) and before.counts == after.counts
            assert before.notes == after.notes
        assert back.meta is layout.meta or back.meta == layout.meta


# ------------------------------------------------------------------------------------ edits

def test_a_painted_blob_adds_one_instance_in_every_frame_of_a_single_frame_mask():
    frames = blank()
    frames[:, 1:3, 1:3] = 1
    frames[:, 6:8, 1:3] = FIRST_ADDED
    layout = make_layout(frames)
    paint = np.zeros((10, 12))
    paint[1:3, 1:3] = paint[6:8, 1:3] = 1
    paint[2:5, 7:10] = 1                                   # a 3 x 3 blob away from both
    edited = apply_mask_edit(layout, "apples", pixels(paint, 16)[None], 16)
    labels = labels_of(edited)
    for f in range(3):
        assert labels[f, 2:5, 7:10].tolist() == [[FIRST_ADDED + 1] * 3] * 3, "one fresh added label per blob"
        assert (labels[f, 1:3, 1:3] == 1).all() and (labels[f, 6:8, 1:3] == FIRST_ADDED).all()
    assert edited.noun("apples").counts == (3, 3, 3) and edited.refined and edited.needs_guidance
    assert edited.noun("apples").notes[0] == "from refinement"
    assert "added in frames 0-2" in edited.noun("apples").notes[-1]


def test_an_erased_instance_is_removed_and_stops_counting():
    frames = blank(1, 6, 6)
    frames[0, 0:2, 0:2] = 4
    frames[0, 4:6, 4:6] = 5
    tokens = (frames > 0).astype(float)
    tokens[0, 0:2, 0:2] = 0
    edited = apply_mask_edit(make_layout(frames), "apples", pixels(tokens, 16), 16)
    labels = labels_of(edited)
    assert (labels[0, 0:2, 0:2] == REMOVED).all() and (labels[0, 4:6, 4:6] == 5).all()
    assert edited.noun("apples").counts == (1,)
    assert "removed in frame 0" in edited.noun("apples").notes[-1]


def test_partial_erase_shrinks_and_paint_touching_an_instance_grows_it():
    frames = blank(1, 6, 8)
    frames[0, 1:4, 1:4] = 2
    tokens = (frames > 0).astype(float)
    tokens[0, 1, 1:4] = 0                                  # erase its top row
    tokens[0, 2:4, 4] = 1                                  # paint on its right edge
    labels = labels_of(apply_mask_edit(make_layout(frames), "", pixels(tokens, 16), 16))
    assert (labels[0, 1, 1:4] == REMOVED).all()
    assert (labels[0, 2:4, 1:5] == 2).all()
    assert len(np.unique(labels[labels > 0])) == 1


def test_a_painted_bridge_never_merges_two_instances():
    frames = blank(1, 3, 9)
    frames[0, 1, 0:2] = 1
    frames[0, 1, 7:9] = 2
    tokens = np.zeros((1, 3, 9))
    tokens[0, 1, :] = 1                                     # a line joining them
    edited = apply_mask_edit(make_layout(frames), "", pixels(tokens, 2), 2)
    assert labels_of(edited)[0, 1].tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2]   # nearest; the tie (column 4) to 1
    assert edited.noun("apples").counts == (2,)


def test_painting_over_a_removed_instance_adds_one():
    frames = blank(1, 5, 5)
    frames[0, 1:3, 1:3] = REMOVED
    tokens = np.zeros((1, 5, 5))
    tokens[0, 1:4, 1:4] = 1
    labels = labels_of(apply_mask_edit(make_layout(frames), "", pixels(tokens, 16), 16))
    assert (labels[0, 1:4, 1:4] == FIRST_ADDED).all() and (labels[labels != FIRST_ADDED] == 0).all()


def test_a_painted_object_keeps_its_label_from_frame_to_frame_and_two_blobs_get_two():
    frames = blank(3, 6, 10)
    frames[:, 0, 0] = FIRST_ADDED + 2                       # the noun's highest label: fresh ones come after it
    tokens = (frames > 0).astype(float)
    for f in range(3):
        tokens[f, 2:4, 1 + f:3 + f] = 1                     # a blob moving right
        tokens[f, 2:4, 7:9] = 1 if f != 1 else 0            # another, missing in frame 1
    labels = labels_of(apply_mask_edit(make_layout(frames), "", pixels(tokens, 4), 4))
    mover = [labels[f, 2, 1 + f] for f in range(3)]
    assert mover == [FIRST_ADDED + 3] * 3
    assert labels[0, 2, 7] == FIRST_ADDED + 4 and labels[2, 2, 7] == FIRST_ADDED + 5   # no overlap: fresh


def test_video_frame_mask_is_a_majority_over_the_latent_frames_video_frames():
    frames = blank(2, 3, 3)
    layout = make_layout(frames)
    video = np.zeros((5, 3, 3))
    video[0, 0, 0] = 1                                      # latent frame 0 is video frame 0 alone
    video[1:3, 1, 1] = 1                                    # 2 of latent frame 1's 4 video frames: on
    video[4, 2, 2] = 1                                      # 1 of 4: off
    labels = labels_of(apply_mask_edit(layout, "", pixels(video, 16), 16))
    assert labels[0, 0, 0] >= FIRST_ADDED and (labels[0] > 0).sum() == 1
    assert labels[1, 1, 1] >= FIRST_ADDED and (labels[1] > 0).sum() == 1


def test_latent_frame_mask_edits_each_frame_on_its_own():
    frames = blank(2, 4, 4)
    frames[:, 0:2, 0:2] = 1
    tokens = (frames > 0).astype(float)
    tokens[1] = 0
    edited = apply_mask_edit(make_layout(frames), "", pixels(tokens, 32), 32)
    assert edited.noun("apples").counts == (1, 0)
    assert (labels_of(edited)[1, 0:2, 0:2] == REMOVED).all()


def test_a_token_is_on_when_at_least_half_its_pixels_are():
    layout = make_layout(blank(1, 1, 4))
    mask = torch.zeros(1, 16, 64)
    mask[0, :8, 0:16] = 1.0          # half of token 0
    mask[0, :7, 16:32] = 1.0         # less than half of token 1
    mask[0, :, 32:48] = 0.49         # soft pixels below 0.5 are off
    mask[0, :, 48:64] = 0.5          # 0.5 is on
    tokens = mask_to_tokens(mask, 1, 1, 4, 16)
    assert tokens[0, 0].tolist() == [True, False, False, True]
    assert labels_of(apply_mask_edit(layout, "", mask, 16))[0, 0].tolist() == [FIRST_ADDED, 0, 0, FIRST_ADDED + 1]


def test_a_mask_at_another_whole_scale_reads_the_same():
    frames = blank(2, 4, 4)
    frames[:, 1:3, 1:3] = 1
    layout = make_layout(frames)
    tokens = np.zeros((2, 4, 4))
    tokens[:, 0, 3] = 1
    at_16 = apply_mask_edit(layout, "", pixels(tokens, 16), 16)
    at_2 = apply_mask_edit(layout, "", pixels(tokens, 2), 16)
    assert torch.equal(at_16.nouns[0].labels, at_2.nouns[0].labels)


def test_only_the_named_noun_changes_and_overlap_with_another_noun_is_noted():
    a, p = blank(1, 4, 4), blank(1, 4, 4)
    a[0, 0, 0] = 1
    p[0, 3, 3] = 1
    layout = make_layout(a, p)
    tokens = np.zeros((1, 4, 4))
    tokens[0, 0, 0] = tokens[0, 3, 3] = 1
    edited = apply_mask_edit(layout, "apples", pixels(tokens, 16), 16)
    assert torch.equal(edited.noun("pears").labels, layout.noun("pears").labels)
    assert labels_of(edited)[0, 3, 3] == FIRST_ADDED
    assert "another noun's instance" in edited.noun("apples").notes[-1]


def test_an_unrefined_layout_comes_back_refined_and_keeps_the_rest():
    frames = blank(1, 4, 4)
    layout = dataclasses.replace(make_layout(frames), step_index=3, total_steps=9, schedule=(1.0, 0.5, 0.0))
    assert not layout.refined
    edited = apply_mask_edit(layout, "", torch.ones(1, 64, 64), 16)
    assert edited.refined and edited.grid == layout.grid and edited.schedule == layout.schedule
    assert edited.step_index == 3 and edited.total_steps == 9 and edited.targets == layout.targets


@settings(max_examples=60, deadline=None)
@given(random_layouts(), st.data())
def test_any_edit_makes_the_live_tokens_exactly_the_painted_ones(layout, data):
    """Whatever is painted: live tokens == on tokens; kept tokens keep their label; erased ones are
    removed; untouched ones keep their value; every new label is one connected blob that reaches no
    kept instance; counts are the live labels."""
    f, h, w = layout.grid.frames, layout.grid.height, layout.grid.width
    on = np.array(data.draw(st.lists(st.booleans(), min_size=f * h * w, max_size=f * h * w))).reshape(f, h, w)
    old = labels_of(layout)
    edited = apply_mask_edit(layout, "apples", pixels(on, 2), 2)
    new, counts = labels_of(edited), edited.noun("apples").counts
    assert ((new > 0) == on).all()
    assert (new[(old > 0) & on] == old[(old > 0) & on]).all()
    assert (new[(old > 0) & ~on] == REMOVED).all()
    assert (new[~on & (old <= 0)] == old[~on & (old <= 0)]).all()
    for i in range(f):
        kept = (old[i] > 0) & on[i]
        pieces, _ = ndimage.label(on[i], structure=EIGHT)
        for label in np.unique(new[i][new[i] > 0]):
            where = new[i] == label
            if label in old[i][kept]:
                continue
            assert label >= FIRST_ADDED and label > old.max()
            assert len(np.unique(pieces[where])) == 1, "an added label is one connected blob"
            assert not (kept & (pieces == pieces[where][0])).any(), "its blob reaches no kept instance"
            assert (where == ((pieces == pieces[where][0]) & ~(old[i] > 0))).all()
        assert counts[i] == len(np.unique(new[i][new[i] > 0]))


# ------------------------------------------------------------------------------------ bad input

def test_a_size_that_is_not_a_multiple_of_the_grid_names_the_size_to_use():
    layout = make_layout(blank(2, 6, 8))
    with pytest.raises(NuminaInputError, match=r"128 x 96 pixels"):
        apply_mask_edit(layout, "", torch.zeros(1, 100, 128), 16)
    with pytest.raises(NuminaInputError, match=r"128 x 96 pixels"):
        apply_mask_edit(layout, "", torch.zeros(1, 96, 64), 16)       # multiples, but not the same factor
    with pytest.raises(NuminaInputError, match=r"256 x 192 pixels"):
        apply_mask_edit(layout, "", torch.zeros(1, 5, 5), 32)


def test_a_wrong_frame_count_names_the_counts_to_use():
    layout = make_layout(blank(3, 2, 2))
    with pytest.raises(NuminaInputError, match=r"use 1 .*9 .*3 "):
        apply_mask_edit(layout, "", torch.zeros(4, 32, 32), 16)


def test_an_unknown_noun_lists_the_nouns():
    layout = make_layout(blank(1, 2, 2), blank(1, 2, 2))
    with pytest.raises(NuminaInputError, match=r"'apples', 'pears'"):
        layout_to_masks(layout, "dogs", 16)
    with pytest.raises(NuminaInputError, match=r"'apples', 'pears'"):
        apply_mask_edit(layout, "dogs", torch.zeros(1, 32, 32), 16)


def test_a_layout_without_nouns_and_bad_shapes_say_what_to_do():
    empty = Layout(grid=TokenGrid(1, 2, 2), targets=Targets(prompt="a grey background", items=()), nouns=())
    with pytest.raises(NuminaInputError, match="count"):
        layout_to_masks(empty, "", 16)
    layout = make_layout(blank(1, 2, 2))
    with pytest.raises(NuminaInputError, match="32 x 32 pixels"):
        apply_mask_edit(layout, "", torch.zeros(1, 1, 32, 32), 16)
    with pytest.raises(NuminaInputError, match="frames must be"):
        layout_to_masks(layout, "", 16, frames="both")
