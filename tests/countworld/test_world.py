"""CountWorld: a seeded world whose ground truth is the prompt's counts, in every frame."""
import numpy as np
import pytest

from countworld import prompts, world


def test_same_seed_and_step_give_the_same_batch_and_other_steps_differ():
    a = world.training_batch(seed=3, step=5, batch=6)
    b = world.training_batch(seed=3, step=5, batch=6)
    c = world.training_batch(seed=3, step=6, batch=6)
    assert [v.prompt for v in a] == [v.prompt for v in b]
    assert all(np.array_equal(x.latent, y.latent) for x, y in zip(a, b))
    assert not all(np.array_equal(x.latent, y.latent) for x, y in zip(a, c))


@pytest.mark.parametrize("nouns", [1, 2, 3])
def test_ground_truth_matches_the_prompt_in_every_frame(nouns):
    rng = np.random.default_rng(nouns)
    for _ in range(40):
        targets = world.random_targets(rng, nouns)
        video = world.video_for(targets, rng, suffix=" drifting on a grey background")
        counts = video.counts()
        assert video.latent.shape == (16, world.LATENT_FRAMES, world.LATENT_HEIGHT, world.LATENT_WIDTH)
        for t in targets:
            assert counts[t.noun].tolist() == [t.count] * world.LATENT_FRAMES
        assert sum(int(c[0]) for c in counts.values()) == sum(t.count for t in targets)
        assert world.parse_prompt(video.prompt) == targets


def test_object_cores_never_touch_and_objects_move():
    rng = np.random.default_rng(11)
    moved = []
    for _ in range(30):
        video = world.video_for([world.Target(8, "red", "circles"), world.Target(2, "blue", "squares")], rng)
        for frame in video.instances:
            padded = np.pad(frame, 1)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    neighbour = padded[1 + dy: 1 + dy + frame.shape[0], 1 + dx: 1 + dx + frame.shape[1]]
                    clash = (frame > 0) & (neighbour > 0) & (neighbour != frame)
                    assert not clash.any(), "two object cores are 8-adjacent"
        for obj in video.objects:
            (y0, x0), (y1, x1) = obj.centres[0], obj.centres[-1]
            moved.append(np.hypot(y1 - y0, x1 - x0))
    low, high = world.SPEED_RANGE
    assert low - 1e-9 <= min(moved) and max(moved) <= high + 1e-9


def test_singular_for_one_and_empty_prompts_exist():
    assert world.make_prompt([world.Target(1, "green", "triangles")]) == "one green triangle"
    assert world.make_prompt([world.Target(2, "red", "circles"), world.Target(3, "blue", "squares")],
                             " floating on a grey background") == \
        "two red circles and three blue squares floating on a grey background"
    batch = world.training_batch(seed=0, step=0, batch=200)
    empty = sum(v.prompt == "" for v in batch)
    assert 8 <= empty <= 35, empty
    assert all(v.targets == () for v in batch if v.prompt == "")


def test_decoded_pictures_show_grey_background_and_the_named_colour():
    video = world.video_for([world.Target(1, "red", "circles")], np.random.default_rng(0))
    rgb = world.decode_rgb(video.latent).astype(int)          # [T, 256, 256, 3]
    assert rgb.shape == (world.LATENT_FRAMES, world.VIDEO_HEIGHT, world.VIDEO_WIDTH, 3)
    background = rgb[0][np.repeat(np.repeat(video.instances[0] == 0, 8, 0), 8, 1)]
    assert np.abs(np.median(background, axis=0) - 128).max() <= 3
    inside = rgb[0][np.repeat(np.repeat(video.instances[0] == 1, 8, 0), 8, 1)]
    r, g, b = np.median(inside, axis=0)
    assert r > 180 and g < 100 and b < 100


def test_codes_of_different_nouns_are_far_apart():
    protos, labels = world.CODEBOOK.prototypes()
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            assert np.linalg.norm(protos[i] - protos[j]) > 2.0


def test_held_out_and_tuning_sets_are_disjoint_countbench_shaped_and_never_trained_on():
    held, tune = prompts.heldout_prompts(), prompts.tuning_prompts()
    assert held == prompts.heldout_prompts()                  # deterministic
    assert not set(held) & set(tune)
    counts = [t.count for p in held for t in world.parse_prompt(p)]
    assert set(counts) == set(range(1, 9))
    assert counts.count(1) == max(counts.count(k) for k in range(1, 9))
    nouns = [len(world.parse_prompt(p)) for p in held]
    assert nouns.count(1) > nouns.count(2) > nouns.count(3) > 0
    seen = {v.prompt for v in world.training_batch(seed=9, step=1, batch=64)}
    again = world.training_batch(seed=9, step=1, batch=64, excluded_prompts=frozenset(seen - {""}))
    assert not ({v.prompt for v in again} & (seen - {""}))


def test_world_constants_are_comfyuis_wan21_latent_format(comfy_booted):
    import torch
    from comfy.latent_formats import Wan21

    factors, bias, mean, std = world._wan21_constants()
    fmt = Wan21()
    assert np.allclose(factors, np.array(fmt.latent_rgb_factors))
    assert np.allclose(bias, np.array(fmt.latent_rgb_factors_bias))
    assert np.allclose(mean, fmt.latents_mean.flatten().numpy())
    assert np.allclose(std, fmt.latents_std.flatten().numpy())
    z = torch.randn(1, 16, 2, 4, 4)
    from countworld import counter
    assert torch.allclose(counter.to_model_space(fmt.process_out(z)), z, atol=1e-5)
