"""The counter against the world's ground truth: exact on generator output, robust to noise."""
import numpy as np
import pytest
import torch

from countworld import counter, world


def _accuracy(noise: float, videos: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    exact = total = 0
    for _ in range(videos):
        video = world.sample_video(rng, empty_fraction=0.0)
        latent = video.latent + noise * rng.standard_normal(video.latent.shape).astype(np.float32)
        counted, truth = counter.count_latent(latent), video.counts()
        for noun in world.NOUNS:
            exact += int((counted[noun] == truth[noun]).sum())
            total += truth[noun].size
    return exact / total


def test_counter_is_at_least_99_percent_exact_on_generator_output():
    assert _accuracy(noise=0.0, videos=150, seed=21) >= 0.99


def test_counter_stays_at_least_98_percent_exact_under_latent_noise():
    assert _accuracy(noise=0.2, videos=100, seed=22) >= 0.98


def test_count_samples_undoes_process_out_and_counts_per_frame_per_noun():
    rng = np.random.default_rng(3)
    videos = [world.video_for([world.Target(k, "blue", "squares"), world.Target(9 - k, "red", "circles")], rng)
              for k in (2, 5)]
    raw = counter.to_latent_space(torch.from_numpy(np.stack([v.latent for v in videos])))
    counts = counter.count_samples(raw)
    assert [c["squares"].tolist() for c in counts] == [[2, 2], [5, 5]]
    assert [c["circles"].tolist() for c in counts] == [[7, 7], [4, 4]]
    assert all(c["triangles"].tolist() == [0, 0] for c in counts)


def test_specks_below_min_area_are_not_objects():
    latent = np.broadcast_to(world.CODEBOOK.background[:, None, None, None], (16, 2, 20, 20)).copy()
    latent[:, :, 5, 5] = world.CODEBOOK.codes[("red", "circles")][:, None]          # one-pixel speck
    latent[:, :, 10:13, 10:13] = world.CODEBOOK.codes[("red", "circles")][:, None, None, None]
    assert counter.count_latent(latent)["circles"].tolist() == [1, 1]
    assert counter.count_latent(latent, min_area=1)["circles"].tolist() == [2, 2]


def test_wrong_shapes_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"\[16, T, H, W\]"):
        counter.count_latent(np.zeros((4, 2, 20, 20)))
    with pytest.raises(ValueError, match=r"\[B, 16, T, H, W\]"):
        counter.count_samples(torch.zeros(16, 2, 20, 20))


def test_the_colour_count_counts_only_the_asked_colour():
    latent = np.broadcast_to(world.CODEBOOK.background[:, None, None, None], (16, 2, 20, 20)).copy()
    latent[:, :, 2:5, 2:5] = world.CODEBOOK.codes[("red", "circles")][:, None, None, None]
    latent[:, :, 10:13, 10:13] = world.CODEBOOK.codes[("blue", "circles")][:, None, None, None]
    assert counter.count_latent(latent)["circles"].tolist() == [2, 2]
    assert counter.count_latent_in_colour(latent, {"circles": "red"})["circles"].tolist() == [1, 1]
    assert counter.count_latent_in_colour(latent, {"circles": "green"})["circles"].tolist() == [0, 0]


def test_the_colour_count_equals_the_count_on_generator_output():
    rng = np.random.default_rng(5)
    for _ in range(20):
        video = world.sample_video(rng, empty_fraction=0.0)
        colours = {t.noun: t.colour for t in video.targets}
        strict, plain = counter.count_latent_in_colour(video.latent, colours), counter.count_latent(video.latent)
        for noun in colours:
            assert strict[noun].tolist() == plain[noun].tolist()
