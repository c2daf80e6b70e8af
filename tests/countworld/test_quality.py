"""countworld/quality.py: the video's quality beyond its counts, right on the world's own videos and
moved by each kind of damage it names."""
import numpy as np
import pytest

from countworld import counter, quality, world
from countworld.prompts import heldout_prompts


def world_video(prompt, seed=0):
    return world.video_for(world.parse_prompt(prompt), np.random.default_rng(seed), prompt=prompt)


@pytest.mark.parametrize("prompt", heldout_prompts()[:16:3])
def test_the_worlds_own_videos_are_perfect(prompt):
    q = quality.video_quality(world_video(prompt).latent, prompt)
    assert q.fit_iou > 0.9 and q.malformed == 0.0 and q.well_formed_score == 1.0
    assert q.clean_background == 1.0 and q.unasked_objects == 0.0
    assert q.count_constancy == 1.0 and q.track_continuity == 1.0


def paint(latent, colour, noun, mask):
    code = world.CODEBOOK.codes[(colour, noun)].astype(np.float32)
    latent[:, mask] = code[:, None]


def test_a_counted_smear_is_malformed_and_not_counted_as_well_formed():
    prompt = "two red circles"
    video = world_video(prompt)
    latent = video.latent.copy()
    mask = np.zeros(latent.shape[1:], dtype=bool)
    mask[:, 1, 2:30] = True                      # a one-pixel line of red-circle code across both frames
    paint(latent, "red", "circles", mask)
    assert counter.count_latent(latent)["circles"].tolist() == [3, 3], "the counter counts the smear"
    q = quality.video_quality(latent, prompt)
    assert q.malformed == pytest.approx(1 / 3) and q.well_formed_score == 1.0
    assert quality.best_fit_iou("circles", mask[0]) < quality.WELL_FORMED_IOU


def test_junk_on_the_background_and_objects_not_asked_for_are_seen():
    prompt = "three blue squares"
    video = world_video(prompt)
    latent = video.latent.copy()
    rng = np.random.default_rng(1)
    far = np.stack([~world._dilate8(world._dilate8(frame > 0)) for frame in video.instances])
    noisy = far & (rng.random(far.shape) < 0.2)                 # a fifth of the far background
    latent[:, noisy] += rng.normal(0, 1.5, size=(16, int(noisy.sum()))).astype(np.float32)
    q = quality.video_quality(latent, prompt)
    assert 0.7 < q.clean_background < 0.9 and q.track_continuity == 1.0 and q.well_formed_score == 1.0
    other = world.video_for(world.parse_prompt("one green triangle"), np.random.default_rng(5)).latent
    mixed = world_video(prompt).latent.copy()
    inside = np.abs(other - world.CODEBOOK.background[:, None, None, None]).sum(0) > 1.0
    mixed[:, inside] = other[:, inside]
    q = quality.video_quality(mixed, prompt)
    assert q.unasked_objects == pytest.approx(1.0), "one green triangle a frame, not asked for"


def test_an_object_that_vanishes_is_a_death_and_changes_the_count():
    prompt = "four yellow circles"
    video = world_video(prompt)
    latent = video.latent.copy()
    first = video.instances[1] == 1                              # object 1's core in frame 1
    around = world._dilate8(world._dilate8(first))
    latent[:, 1][:, around] = world.CODEBOOK.background[:, None]
    q = quality.video_quality(latent, prompt)
    assert q.count_constancy == 0.5
    assert q.track_continuity == pytest.approx(3 / 4)


def test_summary_averages_the_well_formed_metric_per_prompt_first():
    good = quality.VideoQuality(1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0)
    bad = quality.VideoQuality(0.5, 0.5, 0.0, 0.9, 1.0, 0.5, 0.5)
    s = quality.summarise([good, bad, bad], ["a", "b", "b"])
    assert s["well_formed_accuracy"] == 0.5 and s["clean_background"] == pytest.approx((1 + 0.9 + 0.9) / 3)
