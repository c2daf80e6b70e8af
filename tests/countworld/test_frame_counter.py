"""The CountWorld frame counter (the closed loop's judge, on decoded pictures) against the world's
ground truth and the latent counter; ErringCounter's seeded mistakes; the testing nodes."""
import numpy as np
import pytest
import torch

from countworld import counter, world
from countworld.frame_counter import CountWorldFrameCounter, ErringCounter, PALETTE, code_pictures
from numina_ops.judge import Box, ObjectCounter, check_frames
from numina_ops.records import NuminaInputError

torch.set_num_threads(1)


def video_frames(latent: np.ndarray, upscale: int = 8, quantise: bool = True) -> torch.Tensor:
    """Wan's 5 video frames of a [16, 2, 32, 32] normalised world latent (code pictures): 1 for the
    first latent frame, 4 for the second; as saved (uint8, quantise) or as decoded (float)."""
    rgb = torch.from_numpy(code_pictures(latent, upscale))
    if quantise:
        rgb = (rgb * 255 + 0.5).to(torch.uint8).float() / 255.0
    repeats = torch.tensor([1] + [4] * (rgb.shape[0] - 1))
    return rgb.repeat_interleave(repeats, dim=0)


LATENT_FRAME_OF = [0, 1, 1, 1, 1]


def world_videos(seed: int, sampled: int, crowded: int) -> list[world.WorldVideo]:
    """Training-like videos (1-3 nouns, counts 1..8) and crowded ones (10 objects, several nouns)."""
    rng = np.random.default_rng(seed)
    videos = [world.sample_video(rng, empty_fraction=0.0) for _ in range(sampled)]
    for i in range(crowded):
        nouns = 1 + i % 3
        while True:
            targets = world.random_targets(rng, nouns)
            if sum(t.count for t in targets) >= 8 or nouns == 1:
                break
        videos.append(world.video_for(targets, rng))
    return videos


@pytest.fixture(scope="module")
def judge():
    return CountWorldFrameCounter()


@pytest.fixture(scope="module")
def videos():
    return world_videos(seed=31, sampled=60, crowded=24)


def _counts(judge, frames, nouns=world.NOUNS):
    boxes = judge.detect(frames, list(nouns))
    return {noun: [len(boxes[f][n]) for f in range(len(boxes))] for n, noun in enumerate(nouns)}


def test_it_is_an_object_counter_and_says_what_it_is(judge):
    assert isinstance(judge, ObjectCounter)
    assert "CountWorld frame counter" in judge.describe()


def test_the_palette_shows_colours_as_the_preview_does_and_tells_every_code_apart():
    labels = world.CODEBOOK.prototypes()[1]
    for colour in world.COLOURS:          # circles: the colour as the preview shows it
        expected = [(v + 1) / 2 for v in world._COLOUR_RGB[colour]]
        assert np.allclose(PALETTE[labels.index((colour, "circles"))], expected, atol=1e-6)
    assert np.allclose(PALETTE[0], 0.5)   # background grey
    gaps = np.linalg.norm(PALETTE[:, None] - PALETTE[None], axis=-1) + np.eye(len(PALETTE)) * 9
    assert gaps.min() > 0.25, "a saved (uint8) or lightly resampled picture still names every code"


def test_on_noisy_latents_it_counts_what_the_latent_counter_counts(judge, videos):
    """Model outputs are not the world's clean codes: off the codes too, the judge of the pictures
    and the benchmark's latent counter see the same objects (the pictures keep each pixel's code)."""
    rng = np.random.default_rng(5)
    for video in videos[:30]:
        noisy = (video.latent + rng.normal(0, 0.8, video.latent.shape)).astype(np.float32)
        latent_counts, counted = counter.count_latent(noisy), _counts(judge, video_frames(noisy))
        for noun in world.NOUNS:
            assert counted[noun] == [int(latent_counts[noun][t]) for t in LATENT_FRAME_OF]


@pytest.mark.parametrize("quantise", [True, False], ids=["saved_uint8", "decoded_float"])
def test_counts_equal_the_ground_truth_in_every_frame(judge, videos, quantise):
    seen_counts = set()
    for video in videos:
        counted, truth = _counts(judge, video_frames(video.latent, quantise=quantise)), video.counts()
        for noun in world.NOUNS:
            expected = [int(truth[noun][t]) for t in LATENT_FRAME_OF]
            assert counted[noun] == expected, (video.prompt, noun, counted, {n: truth[n].tolist() for n in truth})
            seen_counts.update(expected)
    assert seen_counts >= set(range(0, world.MAX_COUNT + 1)), "the videos should cover every count 0..8"


def test_it_agrees_with_the_latent_counter_on_the_worlds_latents(judge, videos):
    for video in videos[:40]:
        latent_counts, counted = counter.count_latent(video.latent), _counts(judge, video_frames(video.latent))
        for noun in world.NOUNS:
            assert counted[noun] == [int(latent_counts[noun][t]) for t in LATENT_FRAME_OF]


def test_every_noun_with_every_colour_and_count_is_recognised(judge):
    rng = np.random.default_rng(8)
    for noun in world.NOUNS:
        for colour in world.COLOURS:
            for count in (1, 4, 8):
                video = world.video_for([world.Target(count, colour, noun)], rng)
                counted = _counts(judge, video_frames(video.latent))
                assert counted[noun] == [count] * 5, (colour, noun, counted)
                assert all(counted[other] == [0] * 5 for other in world.NOUNS if other != noun)


def test_nouns_are_asked_as_the_prompt_writes_them_in_the_asked_order(judge):
    video = world.video_for([world.Target(1, "red", "circles"), world.Target(3, "blue", "triangles")],
                            np.random.default_rng(4))
    frames = video_frames(video.latent)
    boxes = judge.detect(frames, ["triangles", "circle", "Squares"])
    assert [[len(b) for b in per_frame] for per_frame in boxes] == [[3, 1, 0]] * 5


@pytest.mark.parametrize("noun", ["red circles", "apples", "circless", ""])
def test_an_unknown_noun_is_refused_clearly(judge, noun):
    frames = video_frames(world.video_for([world.Target(1, "red", "circles")], np.random.default_rng(0)).latent)
    with pytest.raises(NuminaInputError, match="knows only the world's nouns"):
        judge.detect(frames, ["circles", noun])


def test_frames_that_are_not_an_upscaled_countworld_latent_are_refused(judge):
    with pytest.raises(NuminaInputError, match="integer upscale"):
        judge.detect(torch.full((1, 250, 250, 3), 0.5), ["circles"])
    with pytest.raises(NuminaInputError, match=r"\[frames, height, width, 3\]"):
        judge.detect(torch.full((256, 256, 3), 0.5), ["circles"])


def test_an_empty_frame_gives_no_boxes(judge):
    empty = np.broadcast_to(world.CODEBOOK.background[:, None, None, None], (16, 2, 32, 32)).copy()
    assert judge.detect(video_frames(empty), list(world.NOUNS)) == [[[], [], []]] * 5
    assert judge.detect(torch.full((2, 256, 256, 3), 0.5), ["circles"]) == [[[]], [[]]]


def test_specks_are_not_objects(judge):
    latent = np.broadcast_to(world.CODEBOOK.background[:, None, None, None], (16, 2, 32, 32)).copy()
    latent[:, :, 5, 5] = world.CODEBOOK.codes[("red", "circles")][:, None]                    # 1 latent px
    latent[:, :, 20:22, 20:22] = world.CODEBOOK.codes[("red", "circles")][:, None, None, None]  # 4 < MIN_AREA
    assert _counts(judge, video_frames(latent)) == {noun: [0] * 5 for noun in world.NOUNS}


def test_boxes_lie_inside_the_frame_and_cover_their_objects(judge, videos):
    scale = 8
    for video in videos[:30]:
        frames = video_frames(video.latent, quantise=False)    # uint8 may move a half-covered core pixel
        boxes = judge.detect(frames, list(world.NOUNS))
        for f, t in enumerate(LATENT_FRAME_OF):
            for per_noun in boxes[f]:
                for box in per_noun:
                    assert 0 <= box.x0 < box.x1 <= frames.shape[2] and 0 <= box.y0 < box.y1 <= frames.shape[1]
            for i, obj in enumerate(video.objects):
                ys, xs = np.nonzero(video.instances[t] == i + 1)
                y0, y1, x0, x1 = ys.min() * scale, (ys.max() + 1) * scale, xs.min() * scale, (xs.max() + 1) * scale
                # a core pixel at coverage 0.5 may lie nearer the background code: one latent px of slack
                covering = [b for b in boxes[f][world.NOUNS.index(obj.noun)]
                            if b.x0 <= x0 + scale and b.y0 <= y0 + scale and b.x1 >= x1 - scale and b.y1 >= y1 - scale]
                assert len(covering) == 1, (video.prompt, obj, boxes[f])
                box = covering[0]          # tight: the box is the object's core, not more than its rim
                assert box.x1 - box.x0 <= x1 - x0 + 2 * scale and box.y1 - box.y0 <= y1 - y0 + 2 * scale


def test_upscale_4_counts_as_upscale_8_does(judge, videos):
    for video in videos[:30]:
        small, large = video_frames(video.latent, upscale=4), video_frames(video.latent, upscale=8)
        assert small.shape[1:3] == (128, 128)
        b4, b8 = judge.detect(small, list(world.NOUNS)), judge.detect(large, list(world.NOUNS))
        for f in range(5):
            for n in range(3):
                assert sorted((b.x0 * 2, b.y0 * 2, b.x1 * 2, b.y1 * 2) for b in b4[f][n]) == \
                       sorted((b.x0, b.y0, b.x1, b.y1) for b in b8[f][n])


def test_check_frames_scores_a_world_video_as_right(judge):
    from numina_ops.prompt import parse_targets

    video = world.video_for([world.Target(2, "red", "circles"), world.Target(3, "green", "squares")],
                            np.random.default_rng(12))
    check = check_frames(video_frames(video.latent), parse_targets(video.prompt), judge)
    assert check.all_right and check.score == 1.0 and check.frames == 5, check.describe()


# ----------------------------------------------------------------------------- ErringCounter
def _noun_frame_counts(boxes):
    return [[len(b) for b in per_frame] for per_frame in boxes]


def test_erring_counter_at_rate_0_is_the_inner_counter_exactly(judge, videos):
    erring = ErringCounter(judge, rate=0.0, seed=3)
    for video in videos[:5]:
        frames = video_frames(video.latent)
        assert erring.detect(frames, list(world.NOUNS)) == judge.detect(frames, list(world.NOUNS))


def test_erring_counter_at_rate_1_changes_every_frame_noun_by_exactly_one(judge, videos):
    erring = ErringCounter(judge, rate=1.0, seed=5)
    adds = drops = 0
    for video in videos[:20]:
        frames = video_frames(video.latent)
        right, wrong = _noun_frame_counts(judge.detect(frames, list(world.NOUNS))), \
            _noun_frame_counts(erring.detect(frames, list(world.NOUNS)))
        for r_frame, w_frame in zip(right, wrong):
            for r, w in zip(r_frame, w_frame):
                assert abs(r - w) == 1
                assert w >= 0
                adds += w > r
                drops += w < r
    assert adds > 0 and drops > 0


def test_erring_counter_is_deterministic_and_independent_of_call_order(judge, videos):
    frames_a, frames_b = video_frames(videos[0].latent), video_frames(videos[1].latent)
    first = ErringCounter(judge, rate=0.5, seed=11)
    a1 = first.detect(frames_a, list(world.NOUNS))
    b1 = first.detect(frames_b, list(world.NOUNS))
    second = ErringCounter(judge, rate=0.5, seed=11)
    b2 = second.detect(frames_b, list(world.NOUNS))           # other order, fresh counter
    a2 = second.detect(frames_a, list(world.NOUNS))
    assert a1 == a2 and b1 == b2
    # one noun asked alone, or the nouns in another order: the same mistakes per noun
    alone = second.detect(frames_a, ["squares"])
    assert [f[0] for f in alone] == [f[1] for f in a1]
    reordered = second.detect(frames_a, ["triangles", "circles"])
    assert [[f[1], f[0]] for f in reordered] == [[f[0], f[2]] for f in a1]
    # identical frames (the 4 copies of a latent frame) get identical mistakes
    assert a1[1] == a1[2] == a1[3] == a1[4]
    # another seed, other mistakes
    assert ErringCounter(judge, rate=0.5, seed=12).detect(frames_a, list(world.NOUNS)) != a1 or \
        ErringCounter(judge, rate=0.5, seed=13).detect(frames_a, list(world.NOUNS)) != a1


def test_erring_counter_measured_error_rate_is_near_the_rate(judge, videos):
    erring = ErringCounter(judge, rate=0.2, seed=0)
    wrong = total = 0
    for video in videos:
        frames = video_frames(video.latent)[:2]                   # the two distinct frames
        right = _noun_frame_counts(judge.detect(frames, list(world.NOUNS)))
        seen = _noun_frame_counts(erring.detect(frames, list(world.NOUNS)))
        for r_frame, w_frame in zip(right, seen):
            for r, w in zip(r_frame, w_frame):
                wrong += r != w
                total += 1
    assert total >= 500
    assert abs(wrong / total - 0.2) < 0.05, wrong / total


def test_erring_counter_describes_its_inner_judge_rate_and_seed(judge):
    text = ErringCounter(judge, rate=0.25, seed=7).describe()
    assert judge.describe() in text and "0.25" in text and "seed 7" in text
    with pytest.raises(ValueError):
        ErringCounter(judge, rate=1.5)


def test_added_boxes_lie_inside_the_frame(judge, videos):
    erring = ErringCounter(judge, rate=1.0, seed=2)
    for video in videos[:10]:
        for per_frame in erring.detect(video_frames(video.latent), list(world.NOUNS)):
            for box in (b for per_noun in per_frame for b in per_noun):
                assert isinstance(box, Box)
                assert 0 <= box.x0 < box.x1 <= 256 and 0 <= box.y0 < box.y1 <= 256


# ----------------------------------------------------------------------------- the testing nodes
@pytest.fixture(scope="module")
def testing_nodes(comfy_booted):
    from numina_testing import countworld_counter, latent_rgb_decode

    return countworld_counter, latent_rgb_decode


def test_the_countworld_vae_decodes_code_pictures_as_a_wan_vae_shapes_frames(testing_nodes):
    import nodes

    countworld_counter, _ = testing_nodes
    rng = np.random.default_rng(2)
    normalised = torch.from_numpy(np.stack([world.sample_video(rng, empty_fraction=0.0).latent for _ in range(2)]))
    samples = counter.to_latent_space(normalised)                                     # [2, 16, 2, 32, 32]
    vae = countworld_counter.NuminaCountWorldVAE.execute().result[0]
    decoded = vae.decode(samples)
    assert decoded.shape == (2, 5, 256, 256, 3)
    for b in range(2):       # the raw <-> normalised round trip tips rim pixels at coverage 0.5 (a tie
        differ = (decoded[b] - video_frames(normalised[b].numpy(), quantise=False)).abs().amax(-1) > 1e-5
        assert differ.float().mean() < 0.05             # between a code and the background); counts: below
    image = nodes.VAEDecode().decode(vae, {"samples": samples})[0]                   # ComfyUI's own reshape
    assert torch.equal(image, decoded.reshape(-1, 256, 256, 3))
    small = countworld_counter.NuminaCountWorldVAE.execute(upscale=4).result[0].decode(samples)
    assert small.shape == (2, 5, 128, 128, 3)
    judge = CountWorldFrameCounter()
    for b in range(2):
        latent_counts = counter.count_latent(normalised[b])
        counted = _counts(judge, decoded[b])
        assert counted == {n: [int(latent_counts[n][t]) for t in LATENT_FRAME_OF] for n in world.NOUNS}


def test_the_latent_rgb_decode_shows_the_worlds_own_pictures(testing_nodes):
    import comfy.latent_formats

    _, latent_rgb_decode = testing_nodes
    video = world.sample_video(np.random.default_rng(3), empty_fraction=0.0)
    samples = counter.to_latent_space(torch.from_numpy(video.latent[None]))

    class Model:   # what latent_rgb reads of a MODEL
        class model:
            latent_format = comfy.latent_formats.Wan21()

    frames = latent_rgb_decode.latent_rgb(Model, samples, 8)
    expected = torch.from_numpy(world.decode_rgb(video.latent, 8)).float() / 255.0
    assert torch.allclose(frames[[0, 1]], expected, atol=1 / 255 + 1e-4)


def test_counter_loader_gives_the_frame_counter_or_an_erring_one(testing_nodes):
    countworld_counter, _ = testing_nodes
    node = countworld_counter.NuminaCountWorldCounterLoader
    schema = node.GET_SCHEMA()
    assert schema.category == "NUMINA/testing"
    plain = node.execute(error_rate=0.0, error_seed=0).result[0]
    assert isinstance(plain, CountWorldFrameCounter)
    erring = node.execute(error_rate=0.3, error_seed=4).result[0]
    assert isinstance(erring, ErringCounter) and erring.rate == 0.3 and erring.seed == 4
    assert isinstance(erring, ObjectCounter)
