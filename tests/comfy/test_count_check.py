"""The count check and the run that checks itself, on the real ComfyUI nodes.

The judge here is the CountWorld frame counter (testing pack) on a trained CountWorld model, or a
scripted judge where a test needs to decide what the judge says (how many tries, which is kept).
The GroundingDINO path is the real transformers model, tiny and random, built by the test."""
import os

import pytest
import torch

from countworld import evaluate, world
from numina_ops.judge import Box

PROMPT = "three red circles and two blue squares drifting on a grey background"
SEED, STEPS = 5, 25


class ScriptedJudge:
    """A judge that says what the test tells it: counts[video] per noun (every frame), in order."""

    frames_per_batch = 64        # a whole CountWorld video in one call: one call per video

    def __init__(self, counts_per_call):
        self.counts_per_call, self.calls = list(counts_per_call), 0

    def describe(self):
        return "scripted judge"

    def detect(self, frames, nouns, device=None):
        counts = self.counts_per_call[min(self.calls, len(self.counts_per_call) - 1)]
        self.calls += 1
        return [[[Box(0, 0, 4, 4)] * counts[noun] for noun in nouns] for _ in range(frames.shape[0])]


@pytest.fixture(scope="module")
def world_run(comfy):
    """The CountWorld model through the capture node, the RGB 'VAE' and the frame counter."""
    class WorldRun:
        pipeline = evaluate.ComfyPipeline()

        def capture(self, prompt=PROMPT, seed=SEED, model=None, **optional):
            p = self.pipeline
            return comfy["NuminaAttentionCapture"].execute(
                model or p.model, p.clip, p.encode(prompt), p.encode(""), p.empty_latent(), seed, STEPS, 1.0,
                "euler", "simple", prompt, "", -1, -1, **optional).result[0]

        vae = comfy["NuminaCountWorldVAE"].execute(8).result[0]
        counter = comfy["NuminaCountWorldCounterLoader"].execute(0.0, 0).result[0]

        def checked(self, capture, counter=None, tries=3, model=None, **optional):
            return comfy["NuminaCheckedSampler"].execute(model or self.pipeline.model, capture, self.vae,
                                                         counter or self.counter, tries, "auto", "auto",
                                                         **optional).result
    return WorldRun()


def _decode(world_run, latent):
    images = world_run.vae.decode(latent["samples"])
    return images.reshape(-1, *images.shape[-3:])


def test_the_check_counts_every_frame_and_scores_it_the_papers_way(comfy, world_run):
    capture = world_run.capture()
    layout = comfy["NuminaLayoutRefine"].execute(comfy["NuminaLayoutInfer"].execute(capture, "auto").result[0]).result[0]
    latent, _ = comfy["NuminaSampler"].execute(world_run.pipeline.model, capture, layout, "auto").result
    frames = _decode(world_run, latent)
    assert frames.shape[0] == world.VIDEO_LENGTH
    check, score, all_right, preview, report = comfy["NuminaCountCheck"].execute(frames, capture,
                                                                                  world_run.counter).result
    direct = world_run.counter.detect(frames, ("circles", "squares"))
    assert check.counts == tuple(tuple(len(direct[f][n]) for f in range(len(direct))) for n in range(2))
    want = (3, 2)
    frame_scores = [sum(check.counts[n][f] == want[n] for n in range(2)) / 2 for f in range(len(direct))]
    assert score == pytest.approx(sum(frame_scores) / len(frame_scores))
    assert all_right == (score == 1.0)
    assert preview.shape[0] == world.VIDEO_LENGTH and preview.shape[-1] == 3
    assert "circles: target 3" in report and "squares: target 2" in report
    # a layout of the same run knows the same nouns and targets
    again = comfy["NuminaCountCheck"].execute(frames, layout, world_run.counter).result[0]
    assert again.counts == check.counts


def test_frames_that_are_not_the_captures_video_are_refused_with_what_to_connect(comfy, world_run):
    # (NuminaInputError, a ValueError, as the pack's own module path defines it)
    capture = world_run.capture()
    frames = torch.zeros(world.VIDEO_LENGTH, world.VIDEO_HEIGHT, world.VIDEO_WIDTH, 3)
    for wrong in (frames[:3], torch.nn.functional.interpolate(frames.movedim(-1, 1), scale_factor=0.5).movedim(1, -1)):
        with pytest.raises(ValueError, match="not the video of this capture's run.*VAE Decode"):
            comfy["NuminaCountCheck"].execute(wrong, capture, world_run.counter)
    with pytest.raises(ValueError, match="NuminaAttentionCapture"):
        comfy["NuminaCountCheck"].execute(frames, "not a capture", world_run.counter)


def test_one_try_is_exactly_the_numina_sampler_run(comfy, world_run):
    capture = world_run.capture()
    layout = comfy["NuminaLayoutRefine"].execute(comfy["NuminaLayoutInfer"].execute(capture, "auto").result[0]).result[0]
    latent, _ = comfy["NuminaSampler"].execute(world_run.pipeline.model, capture, layout, "auto").result
    images, checked_latent, check, report, run = world_run.checked(capture, tries=1)
    assert torch.equal(checked_latent["samples"], latent["samples"])
    assert torch.equal(images, _decode(world_run, latent))
    assert len(run.tries) == 1 and run.tries[0].seed == SEED and "try 1" in report


def test_it_stops_at_the_first_try_whose_counts_are_all_right(world_run):
    capture = world_run.capture()
    judge = ScriptedJudge([{"circles": 2, "squares": 2}, {"circles": 3, "squares": 2}, {"circles": 3, "squares": 2}])
    *_, report, run = world_run.checked(capture, counter=judge, tries=3)
    assert [t.seed for t in run.tries] == [SEED, SEED + 1]
    assert run.chosen == 1 and run.tries[1].check.all_right
    assert "kept try 2 of 2" in report and "every count right" in report


def test_with_no_try_right_it_keeps_the_best_score_and_reports_every_try(world_run):
    capture = world_run.capture()
    judge = ScriptedJudge([{"circles": 0, "squares": 0}, {"circles": 3, "squares": 0}, {"circles": 1, "squares": 1}])
    images, latent, check, report, run = world_run.checked(capture, counter=judge, tries=3)
    assert [t.check.score for t in run.tries] == [0.0, 0.5, 0.0]
    assert run.chosen == 1 and check == run.tries[1].check
    assert torch.equal(latent["samples"], run.tries[1].samples)
    assert "no try had every count right in 3 tries" in report
    assert all(f"try {i}: seed {SEED + i - 1}" in report for i in (1, 2, 3))


def test_each_try_costs_a_whole_numina_run_counted_in_model_evaluations(world_run):
    capture = world_run.capture()
    judge = ScriptedJudge([{"circles": 0, "squares": 0}])
    *_, run = world_run.checked(capture, counter=judge, tries=2)
    k, reference = capture.step_index, capture.reference.evaluations     # the default path: larger steps to k
    assert reference < k + 1
    for t in run.tries:
        assert t.evaluations == (reference + STEPS if t.guided else reference + STEPS - k - 1)
    assert run.evaluations == sum(t.evaluations for t in run.tries)


def test_every_try_reaches_the_reference_step_the_captures_way(world_run):
    """A capture with approach_steps: every further try's reference pass takes the same larger
    steps (3 evaluations for path 0, 5, 10, 11), and each try is counted so."""
    capture = world_run.capture(approach_steps=2)
    assert capture.reference.path == (0, 5, 10, 11)
    judge = ScriptedJudge([{"circles": 0, "squares": 0}])
    *_, run = world_run.checked(capture, counter=judge, tries=2)
    for t in run.tries:
        assert t.evaluations == (3 + STEPS if t.guided else 3 + STEPS - 11)


def test_the_same_inputs_give_the_same_tries_and_fewer_tries_are_a_prefix(world_run):
    capture = world_run.capture()
    *_, three = world_run.checked(capture, counter=ScriptedJudge([{"circles": 0, "squares": 0}]), tries=3)
    *_, again = world_run.checked(capture, counter=ScriptedJudge([{"circles": 0, "squares": 0}]), tries=3)
    *_, two = world_run.checked(capture, counter=ScriptedJudge([{"circles": 0, "squares": 0}]), tries=2)
    for a, b in zip(three.tries, again.tries):
        assert torch.equal(a.samples, b.samples)
    for a, b in zip(three.tries, two.tries):
        assert a.seed == b.seed and torch.equal(a.samples, b.samples)
    # a retry is the whole cycle on the next seed: its own capture, not the first seed's again
    assert not torch.equal(three.tries[0].samples, three.tries[1].samples)


def test_an_interrupt_during_a_try_stops_the_run_and_leaves_no_patch_behind(world_run):
    import comfy.model_management as mm

    capture = world_run.capture()
    model = world_run.pipeline.model
    before = dict(model.model_options["transformer_options"])

    class InterruptingJudge(ScriptedJudge):
        def detect(self, frames, nouns, device=None):
            mm.interrupt_current_processing(True)
            return super().detect(frames, nouns, device)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            world_run.checked(capture, counter=InterruptingJudge([{"circles": 0, "squares": 0}]), tries=3)
    finally:
        mm.interrupt_current_processing(False)
    assert dict(model.model_options["transformer_options"]) == before


def test_a_prompt_with_nothing_to_count_is_refused_with_what_to_use(world_run):
    capture = world_run.capture(prompt="a grey background")
    with pytest.raises(ValueError, match="nothing to check"):
        world_run.checked(capture)


# ----------------------------------------------------------------------------- GroundingDINO from the model folder
@pytest.fixture(scope="module")
def dino_folder(comfy, tmp_path_factory):
    """A tiny random GroundingDINO in a registered grounding-dino model folder."""
    import folder_paths
    from numina_dev.tiny_grounding_dino import build_tiny_grounding_dino

    root = str(tmp_path_factory.mktemp("models_grounding_dino"))
    build_tiny_grounding_dino(os.path.join(root, "tiny-random-dino"))
    folder_paths.add_model_folder_path("grounding-dino", root)
    return root


def test_the_loader_reads_a_grounding_dino_folder_and_the_check_runs_it(comfy, world_run, dino_folder):
    schema = comfy["NuminaCounterLoader"].define_schema()
    names = next(i for i in schema.inputs if i.id == "model_name").options
    assert "tiny-random-dino" in names and "grounding-dino-tiny" in names
    counter = comfy["NuminaCounterLoader"].execute("tiny-random-dino", 0.32, 0.25, 2).result[0]
    assert "0.32" in counter.describe() and "0.25" in counter.describe()
    capture = world_run.capture()
    frames = torch.rand(world.VIDEO_LENGTH, world.VIDEO_HEIGHT, world.VIDEO_WIDTH, 3,
                        generator=torch.Generator().manual_seed(0))
    check = comfy["NuminaCountCheck"].execute(frames, capture, counter).result[0]
    assert check.nouns == ("circles", "squares") and len(check.counts[0]) == world.VIDEO_LENGTH
    assert next(counter.model.parameters()).device.type == "cpu", "the detector goes back to its offload device"
    strict = comfy["NuminaCounterLoader"].execute("tiny-random-dino", 1.0, 1.0, 2).result[0]
    empty = comfy["NuminaCountCheck"].execute(frames, capture, strict).result[0]
    assert empty.counts == ((0,) * world.VIDEO_LENGTH,) * 2 and not empty.all_right


def test_a_missing_detector_names_the_folder_and_how_to_get_the_files(comfy, dino_folder):
    with pytest.raises(ValueError, match=r"grounding-dino.*huggingface-cli download IDEA-Research/grounding-dino-tiny"):
        comfy["NuminaCounterLoader"].execute("grounding-dino-tiny", 0.32, 0.25, 8)
