"""The synthetic scenes: seeded, shaped like a capture, with the structure the readouts rely on."""
import numpy as np
import pytest
import torch

from numina_ops.records import NuminaInputError
from numina_dev.synthetic import NOISE_LEVELS, make_scene, scene_capture


def test_same_seed_same_scene_and_other_seed_differs():
    a, b = make_scene(3, seed=5, frames=3), make_scene(3, seed=5, frames=3)
    c = make_scene(3, seed=6, frames=3)
    assert torch.equal(a.cross, b.cross) and torch.equal(a.features, b.features)
    assert torch.equal(a.gt_labels, b.gt_labels)
    assert not torch.equal(a.cross, c.cross)


@pytest.mark.parametrize("noise", NOISE_LEVELS)
def test_shapes_ranges_and_counts_like_a_capture(noise):
    scene = make_scene(4, frames=5, noise=noise, seed=1)
    assert scene.features.shape == (5, 30 * 52, 3) and scene.features.dtype == torch.float32
    assert scene.cross.shape == (5, 30, 52) and scene.gt_labels.shape == (5, 30, 52)
    assert float(scene.features.min()) >= 0.0 and float(scene.features.max()) <= 1.0
    # A softmax share over 512 positions: small background, peaks of a few percent at most.
    assert float(scene.cross.min()) > 0 and float(scene.cross.max()) < 0.5
    assert float(scene.cross.median()) < 0.01
    assert scene.gt_counts == tuple(len(torch.unique(l[l > 0])) for l in scene.gt_labels)
    assert max(scene.gt_counts) <= 4 and np.median(scene.gt_counts) == 4


def test_any_grid_and_an_empty_scene():
    small = make_scene(2, height=12, width=20, frames=2, seed=0)
    assert small.cross.shape == (2, 12, 20) and small.features.shape == (2, 240, 3)
    empty = make_scene(0, frames=2, seed=0)
    assert empty.gt_counts == (0, 0) and int(empty.gt_labels.abs().sum()) == 0


@pytest.mark.parametrize("seed", range(4))
def test_instances_share_features_that_differ_from_background(seed):
    scene = make_scene(3, frames=1, noise="moderate", seed=seed, touching=0.0)
    feats, gt = scene.features[0].numpy(), scene.gt_labels[0].numpy().ravel()
    means = [feats[gt == i].mean(0) for i in (1, 2, 3)]
    background = np.median(feats[gt == 0], 0)
    between = np.mean([np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i)])
    to_background = np.mean([np.linalg.norm(m - background) for m in means])
    assert between < 0.75 * to_background


def test_instances_move_slowly():
    scene = make_scene(2, frames=21, seed=2, touching=0.0)
    gt = scene.gt_labels.numpy()
    centre = lambda f, i: np.argwhere(gt[f] == i).mean(0)
    steps = [np.linalg.norm(centre(f + 1, 1) - centre(f, 1)) for f in range(20)]
    assert max(steps) < 1.5 and np.linalg.norm(centre(20, 1) - centre(0, 1)) < 8


def test_touching_instances_occur():
    touching = 0
    for seed in range(6):
        gt = make_scene(4, frames=1, seed=seed, touching=1.0).gt_labels[0].numpy()
        pairs = set()
        for a, b in ((gt[:, :-1], gt[:, 1:]), (gt[:-1], gt[1:])):
            edge = (a != b) & (a > 0) & (b > 0)
            pairs |= set(zip(a[edge].tolist(), b[edge].tolist()))
        touching += bool(pairs)
    assert touching >= 3


def test_some_instances_are_much_weaker():
    scene = make_scene(6, frames=1, noise="clean", seed=0, touching=0.0)
    cross, gt = scene.cross[0].numpy(), scene.gt_labels[0].numpy()
    peaks = [cross[gt == i].max() for i in range(1, 7)]
    assert min(peaks) < 0.7 * max(peaks)


def test_capture_wrapper_is_consistent():
    scene = make_scene(2, frames=3, seed=0)
    cap = scene_capture(scene, noun="cats", target=5)
    assert cap.grid.frames == 3 and cap.grid.tokens_per_frame == 30 * 52
    assert cap.targets.as_dict() == {"cats": 5}
    assert cap.targets.prompt[slice(*cap.targets.items[0].span)] == "cats"
    assert torch.equal(cap.nouns[0].cross_attention, scene.cross)
    assert scene_capture(scene).targets.as_dict() == {"apples": 2}


def test_bad_arguments_are_named():
    with pytest.raises(NuminaInputError, match="noise"):
        make_scene(2, noise="loud")
    with pytest.raises(NuminaInputError, match="count"):
        make_scene(-1)
