"""Layout readouts: the faithful one agrees with scikit-learn; the default one counts better."""
import dataclasses

import numpy as np
import pytest
import torch
from sklearn.cluster import DBSCAN, MeanShift
from sklearn.cluster import estimate_bandwidth as sk_estimate_bandwidth
from sklearn.metrics import adjusted_rand_score

from numina_ops import layout as L
from numina_ops.layout import MODES, infer_layout, segment_frame
from numina_ops.records import NuminaInputError, Targets
from numina_dev.synthetic import make_scene, scene_capture

TEST_SEEDS = range(4)   # fixed; the default readout was designed on other seeds (1000..1005)


def _as_masks(labels: np.ndarray) -> set[bytes]:
    return {np.packbits(labels.ravel() == i).tobytes() for i in np.unique(labels[labels > 0])}


# --- faithful readout: agreement with scikit-learn ----------------------------------------------

@pytest.mark.parametrize("n", [200, 1300])
def test_bandwidth_matches_sklearn(n):
    x = np.random.default_rng(n).random((n, 5))
    ours = L.estimate_bandwidth(torch.from_numpy(x), quantile=0.2, max_samples=1000, seed=0)
    theirs = sk_estimate_bandwidth(x, quantile=0.2, n_samples=min(1000, n), random_state=0)
    assert ours == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("bin_seeding", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_mean_shift_matches_sklearn(seed, bin_seeding):
    rng = np.random.default_rng(seed)
    blobs = [rng.normal(c, 0.08, size=(60, 5)) for c in rng.random((4, 5))]
    x = np.concatenate(blobs + [rng.random((40, 5))])
    bw = sk_estimate_bandwidth(x, quantile=0.2, random_state=0)
    labels, centres = L.mean_shift(torch.from_numpy(x), bw, bin_seeding=bin_seeding)
    ms = MeanShift(bandwidth=bw, bin_seeding=bin_seeding).fit(x)
    assert len(centres) == len(ms.cluster_centers_)
    assert adjusted_rand_score(ms.labels_, labels.numpy()) == 1.0
    assert np.allclose(np.sort(centres.numpy(), 0), np.sort(ms.cluster_centers_, 0), atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_dbscan_denoising_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((20, 30)) < 0.12
    mask[5:9, 10:15] = True
    coords = np.argwhere(mask)
    theirs = np.zeros_like(mask)
    kept = DBSCAN(eps=3, min_samples=5).fit_predict(coords) >= 0
    theirs[tuple(coords[kept].T)] = True
    assert np.array_equal(L.dbscan_keep(mask), theirs)


def _published_readout_with_sklearn(features: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """The published per-frame readout written with scikit-learn (seeded bandwidth sample)."""
    h, w = cross.shape
    coords = np.stack(np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij"), -1).reshape(-1, 2)
    x = np.concatenate([features.astype(np.float64), 0.5 * coords], 1)
    bw = sk_estimate_bandwidth(x, quantile=0.2, n_samples=min(1000, len(x)), random_state=0) or 0.5
    clusters = MeanShift(bandwidth=bw, bin_seeding=True).fit_predict(x).reshape(h, w)
    above = np.argwhere(cross >= 0.05 * cross.max())
    focus = np.zeros((h, w), dtype=bool)
    keep = DBSCAN(eps=3, min_samples=5).fit_predict(above) >= 0
    focus[tuple(above[keep].T)] = True
    out, k = np.zeros((h, w), dtype=np.int32), 0
    for c in np.unique(clusters):
        region = clusters == c
        if (region & focus).sum() / region.sum() >= 0.2:
            k += 1
            out[region] = k
    return out


@pytest.mark.parametrize("count", [1, 4])
def test_faithful_frame_matches_a_sklearn_version_of_the_published_readout(count):
    scene = make_scene(count, height=16, width=24, frames=1, seed=count)
    ours = segment_frame(scene.features[0], scene.cross[0], mode="faithful").numpy()
    theirs = _published_readout_with_sklearn(scene.features[0].numpy(), scene.cross[0].numpy())
    assert _as_masks(ours) == _as_masks(theirs)


# --- counting accuracy ----------------------------------------------------------------------------

def _exact_rates(noise: str, faithful_frames=(0, 20)) -> tuple[dict, dict]:
    default, faithful = {}, {}
    for k in range(1, 9):
        hits_d = hits_f = n_d = n_f = 0
        for seed in TEST_SEEDS:
            scene = make_scene(k, noise=noise, seed=seed)
            counts = infer_layout(scene_capture(scene)).nouns[0].counts
            hits_d += sum(c == g for c, g in zip(counts, scene.gt_counts))
            n_d += len(counts)
            for f in faithful_frames:
                c = int(segment_frame(scene.features[f], scene.cross[f], mode="faithful").max())
                hits_f += c == scene.gt_counts[f]
                n_f += 1
        default[k], faithful[k] = hits_d / n_d, hits_f / n_f
    return default, faithful


def test_default_counts_exactly_at_moderate_noise_and_beats_faithful():
    default, faithful = _exact_rates("moderate")
    print("\nK  default faithful")
    for k in default:
        print(f"{k}  {default[k]:.2f}    {faithful[k]:.2f}")
    mean_default, mean_faithful = np.mean(list(default.values())), np.mean(list(faithful.values()))
    print(f"all {mean_default:.2f}    {mean_faithful:.2f}")
    assert mean_default >= 0.9
    assert mean_default > mean_faithful + 0.4
    assert min(default.values()) >= 0.6


def test_default_masks_cover_the_instances():
    """Downstream steps need per-instance masks, not only counts: most instances get their own."""
    scene = make_scene(4, noise="moderate", seed=0, frames=5)
    labels = infer_layout(scene_capture(scene)).nouns[0].labels.numpy()
    gt = scene.gt_labels.numpy()
    ious = []
    for f in range(5):
        for i in np.unique(gt[f][gt[f] > 0]):
            inst = gt[f] == i
            best = max((np.sum(inst & (labels[f] == j)) / np.sum(inst | (labels[f] == j))
                        for j in np.unique(labels[f][labels[f] > 0])), default=0.0)
            ious.append(best)
    assert np.mean(ious) > 0.5


def test_empty_scene_counts_zero():
    scene = make_scene(0, frames=4, seed=0)
    layout = infer_layout(scene_capture(scene, target=2))
    assert layout.nouns[0].counts == (0, 0, 0, 0)
    assert layout.nouns[0].target == 2


# --- interface and bad input ---------------------------------------------------------------------

def test_layout_record_follows_the_label_convention():
    scene = make_scene(3, frames=4, seed=1)
    layout = infer_layout(scene_capture(scene))
    noun = layout.nouns[0]
    assert not layout.refined and layout.grid == scene.grid
    assert noun.labels.dtype == torch.int32 and noun.labels.shape == (4, 30, 52)
    for f in range(4):
        ids = torch.unique(noun.labels[f]).tolist()
        assert ids == list(range(0, noun.counts[f] + 1))


@pytest.mark.parametrize("mode", MODES)
def test_nan_and_inf_are_read_as_zero_with_a_note(mode):
    scene = make_scene(2, height=16, width=24, frames=2, seed=0)
    cap = scene_capture(scene)
    cross = cap.nouns[0].cross_attention.clone()
    cross[0, 3, 4] = float("nan")
    cross[1, 0, 0] = float("inf")
    noun = dataclasses.replace(cap.nouns[0], cross_attention=cross)
    noisy = infer_layout(dataclasses.replace(cap, nouns=(noun,)), mode=mode).nouns[0]
    assert any("NaN/inf" in n for n in noisy.notes)
    zeroed = dataclasses.replace(noun, cross_attention=torch.nan_to_num(cross, nan=0.0, posinf=0.0, neginf=0.0))
    clean = infer_layout(dataclasses.replace(cap, nouns=(zeroed,)), mode=mode).nouns[0]
    assert noisy.counts == clean.counts and torch.equal(noisy.labels, clean.labels)   # read exactly as zeros


@pytest.mark.parametrize("mode", MODES)
def test_flat_or_zero_maps_count_zero(mode):
    features = torch.full((12 * 20, 3), 0.5)
    assert int(segment_frame(features, torch.zeros(12, 20), mode=mode).abs().sum()) == 0


def test_grid_mismatch_is_named():
    with pytest.raises(NuminaInputError, match="H\\*W"):
        segment_frame(torch.rand(100, 3), torch.rand(12, 20))
    scene = make_scene(1, height=12, width=20, frames=2, seed=0)
    cap = scene_capture(scene)
    bad = dataclasses.replace(cap, self_features=cap.self_features[:, :-1])
    with pytest.raises(NuminaInputError, match="self_features"):
        infer_layout(bad)
    with pytest.raises(NuminaInputError, match="mode"):
        infer_layout(cap, mode="fast")


def test_noun_missing_from_targets_is_laid_out_but_not_counted():
    cap = scene_capture(make_scene(2, height=16, width=24, frames=2, seed=0), noun="cats")
    layout = infer_layout(cap, targets=Targets(prompt="two dogs", items=()))
    assert layout.nouns[0].target == -1
    assert any("no count" in n for n in layout.nouns[0].notes)


def test_cross_readout_finds_separate_noun_blobs_and_ignores_specks():
    """The cross readout: smoothed cross-attention, regions above 35 % of the way from the median
    to the peak, at least 3 tokens: two blobs are two instances; a one-token speck is none."""
    cross = np.full((12, 12), 0.01)
    cross[2:5, 2:5] = 0.2
    cross[7:10, 6:10] = 0.25
    cross[0, 11] = 0.3                                      # a single hot token
    features = torch.zeros(144, 3)
    labels = segment_frame(features, torch.from_numpy(cross).float(), mode="cross").numpy()
    assert len(np.unique(labels[labels > 0])) == 2
    assert labels[3, 3] > 0 and labels[8, 8] > 0 and labels[3, 3] != labels[8, 8]
    assert labels[0, 11] == 0


def test_auto_readout_keeps_self_attention_where_it_separates_the_objects():
    """A scene whose self-attention features show the objects: auto is the default readout, and
    says so in the noun's notes."""
    scene = make_scene(3, height=16, width=24, frames=3, seed=1)
    auto = infer_layout(scene_capture(scene), mode="auto").nouns[0]
    default = infer_layout(scene_capture(scene), mode="default").nouns[0]
    assert torch.equal(auto.labels, default.labels) and auto.counts == default.counts
    assert any(n.startswith("auto readout: default") for n in auto.notes)


def test_auto_readout_falls_back_to_cross_attention_when_self_attention_finds_nothing():
    """The same scene with flat self-attention features (a model whose self-attention does not
    tell objects from background): the default readout finds nothing; auto reads cross-attention."""
    scene = make_scene(3, height=16, width=24, frames=3, seed=1)
    flat = dataclasses.replace(scene_capture(scene), self_features=torch.full_like(scene.features, 0.5))
    assert infer_layout(flat, mode="default").nouns[0].counts == (0, 0, 0)
    auto = infer_layout(flat, mode="auto").nouns[0]
    cross = infer_layout(flat, mode="cross").nouns[0]
    assert torch.equal(auto.labels, cross.labels) and max(auto.counts) > 0
    assert any("auto readout: cross (self-attention found no objects in 3 of 3" in n for n in auto.notes)


@pytest.mark.parametrize("default_found, cross_found, chosen", [
    ((1, 1), (1, 1), "default"),     # self-attention sees what cross-attention sees
    ((1, 1), (0, 1), "default"),     # and more: its splits are trusted
    ((0, 1), (1, 1), "cross"),       # it misses the noun in a frame
    ((0, 0), (0, 0), "cross"),       # nothing anywhere: the (empty) cross layout
])
def test_choose_readout_trusts_self_attention_only_where_it_finds_what_cross_attention_sees(
        default_found, cross_found, chosen):
    def labels(found):
        out = np.zeros((len(found), 4, 4), dtype=np.int32)
        for f, hit in enumerate(found):
            out[f, 1, 1] = hit
        return out
    assert L.choose_readout(labels(default_found), labels(cross_found))[0] == chosen
