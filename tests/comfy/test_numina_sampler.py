"""NuminaSampler: one graph a user can trust.  A run whose counts are right, its reference pass on
the run's own steps (at 4 steps the default's are), costs exactly the plain run's model evaluations
and equals it bit for bit; with a shorter approach it costs fewer and keeps the plain run's
schedule from the reference step on; a run to fix costs the reference pass plus one guided pass;
every setting comes from the capture, and a guided MODEL sampled with other settings stops with
both values named."""
import dataclasses

import pytest
import torch

from numina_dev.node_runs import CFG, PROMPT, SEED, STEPS


def _counting(model):
    """A clone that counts its diffusion-model forwards (one per CFG batch and step)."""
    import comfy.patcher_extension as ext
    counted = model.clone()
    calls = []

    def count(executor, *args, **kwargs):
        calls.append(1)
        return executor(*args, **kwargs)
    counted.add_wrapper_with_key(ext.WrappersMP.DIFFUSION_MODEL, "count", count)
    return counted, calls


def _sampler(comfy, model, capture, layout, **optional):
    return comfy["NuminaSampler"].execute(model, capture, layout, "auto", **optional).result


def _untouched(layout):
    """The inferred layout accepted as it is (no edit): what a user whose counts are right has."""
    return dataclasses.replace(layout, refined=True)


def test_counts_right_costs_the_plain_run_and_equals_it_bit_for_bit(run, comfy, tiny_model):
    model, calls = _counting(tiny_model)
    capture, _, _ = run.capture(model=model)
    layout, _, _ = run.layout(capture)
    reference_calls = len(calls)
    assert reference_calls == capture.step_index + 1
    latent, report = _sampler(comfy, model, capture, _untouched(layout))
    assert len(calls) == STEPS, "capture + finish together: the plain run's model evaluations"
    assert "counts already right" in report
    plain = run.sample(tiny_model)
    assert torch.equal(latent["samples"], plain), float((latent["samples"] - plain).abs().max())


def test_a_count_to_fix_costs_the_reference_steps_plus_one_guided_pass(run, comfy, tiny_model):
    model, calls = _counting(tiny_model)
    capture, _, _ = run.capture(model=model, override="circles: 5")
    refined, _, _ = run.refine(run.layout(capture)[0])
    assert refined.needs_guidance
    latent, report = _sampler(comfy, model, capture, refined)
    assert len(calls) == capture.step_index + 1 + STEPS
    assert "guided pass" in report and "biased 8 of 8" in report
    guided_model, _ = run.guide(refined)                      # the same run through guide + KSampler
    assert torch.equal(latent["samples"], run.sample(guided_model))
    assert not torch.equal(latent["samples"], run.sample(tiny_model))


def test_two_experts_switch_at_the_given_step(run, comfy, tiny_model):
    """Wan2.2 A14B: the high-noise expert to switch_step, the low-noise one after (here the tiny
    model plays both). Counts right: the plain two-KSamplerAdvanced run, bit for bit."""
    advanced = comfy["KSamplerAdvanced"]()
    pos, neg = run.cond(PROMPT), run.cond("")
    high = advanced.sample(tiny_model, "enable", SEED, STEPS, CFG, "euler", "simple", pos, neg, run.latent(),
                           0, 2, "enable")[0]
    low = advanced.sample(tiny_model, "disable", SEED, STEPS, CFG, "euler", "simple", pos, neg, high,
                          2, 10000, "disable")[0]
    for step in (0, 1):                # the reference pass ends before the switch, or right at it
        capture, _, _ = run.capture(step=step)
        layout, _, _ = run.layout(capture)
        latent, _ = _sampler(comfy, tiny_model, capture, _untouched(layout), low_noise_model=tiny_model,
                             switch_step=2)
        assert torch.equal(latent["samples"], low["samples"]), step
    refined, _, _ = run.refine(run.layout(run.capture(step=1, override="circles: 5")[0])[0])
    fixed, report = _sampler(comfy, tiny_model, run.capture(step=1, override="circles: 5")[0], refined,
                             low_noise_model=tiny_model, switch_step=2)
    assert "Low-noise expert from step 2: biased 4 of 4" in report
    with pytest.raises(ValueError, match="switch_step between 1 and 3"):
        _sampler(comfy, tiny_model, capture, _untouched(layout), low_noise_model=tiny_model)


def test_at_2_plus_2_steps_the_default_reference_step_is_refused_with_the_step_to_set(run, comfy, tiny_model):
    """Wan2.2 A14B with a 4-step LoRA, 2 + 2 steps: the published step fraction (20 of 50) is step 2,
    the switch itself; the layout must be read on the high-noise expert, so both the finished and
    the guided run stop and name reference_step 1."""
    assert STEPS == 4
    right, _, _ = run.capture()                                         # reference_step -1: the default
    to_fix, _, _ = run.capture(override="circles: 5")
    assert right.step_index == to_fix.step_index == 2
    cases = ((right, _untouched(run.layout(right)[0])), (to_fix, run.refine(run.layout(to_fix)[0])[0]))
    for capture, layout in cases:
        with pytest.raises(ValueError, match=r"reference step \(2\) is not before switch_step \(2\).*reference_step to 1"):
            _sampler(comfy, tiny_model, capture, layout, low_noise_model=tiny_model, switch_step=2)


def test_a_guided_model_sampled_with_other_settings_names_both_values(run, comfy):
    *_, model, _ = run.pipeline()
    pos, neg = run.cond(PROMPT), run.cond("")
    with pytest.raises(Exception, match=f"seed is {SEED + 1} but the capture's is {SEED}"):
        comfy["KSampler"]().sample(model, SEED + 1, STEPS, CFG, "euler", "simple", pos, neg, run.latent())
    with pytest.raises(Exception, match=f"6 steps.*capture's schedule \\({STEPS} steps, scheduler simple"):
        comfy["KSampler"]().sample(model, SEED, 6, CFG, "euler", "simple", pos, neg, run.latent())
    with pytest.raises(Exception, match="sampler .* is not the capture's \\(euler"):
        comfy["KSampler"]().sample(model, SEED, STEPS, CFG, "heun", "simple", pos, neg, run.latent())


def test_a_layout_from_another_capture_is_refused(run, comfy, tiny_model):
    capture, _, _ = run.capture()
    other, _, _ = run.capture(override="circles: 5")
    refined, _, _ = run.refine(run.layout(other)[0])
    with pytest.raises(ValueError, match="was not read from this capture"):
        _sampler(comfy, tiny_model, capture, refined)


def test_prompt_text_and_conditioning_of_different_texts_are_refused(run, comfy, tiny_model, tiny_clip):
    node = comfy["NuminaAttentionCapture"]
    with pytest.raises(ValueError, match="not the text of its positive conditioning"):
        node.execute(tiny_model, tiny_clip, run.cond("two blue squares on a grey background"), run.cond(""),
                     run.latent(), SEED, STEPS, CFG, "euler", "simple", PROMPT, "", -1, -1)


def _plain_on_sigmas(run, model, indices):
    """The plain run on a subset of the run's own sigma schedule (ComfyUI's sampler, custom sigmas)."""
    import comfy.sample
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS)
    latent = comfy.sample.fix_empty_latent_channels(model, run.latent()["samples"])
    noise = comfy.sample.prepare_noise(latent, SEED)
    return comfy.sample.sample(model, noise, STEPS, CFG, "euler", "simple", run.cond(PROMPT), run.cond(""), latent,
                               sigmas=sigmas[list(indices)], seed=SEED)


def test_a_shorter_approach_reads_at_the_same_step_for_fewer_evaluations(run, comfy, tiny_model):
    """approach_steps=1 at 4 steps: one large step to the reference step's noise level, then the
    reference step itself (2 model evaluations instead of 3); counts right, the run finishes on the
    run's own last steps (3 + 1 = 4 evaluations, the plain run's cost: the same schedule less step 1)."""
    model, calls = _counting(tiny_model)
    capture, _, report = run.capture(model=model, approach_steps=1)
    assert capture.step_index == 2 and capture.reference.path == (0, 2, 3)
    assert len(calls) == capture.reference.evaluations == 2
    assert "reached in 1 larger steps" in report and "this pass took 2" in report
    output = comfy["NuminaSampler"].execute(model, capture, _untouched(run.layout(capture)[0]), "auto")
    latent, finished = output.result
    assert len(calls) == 3 and output.ui["model_evaluations"] == [3]
    assert "counts already right" in finished and "larger steps" in finished and "the plain run." not in finished
    expected = _plain_on_sigmas(run, tiny_model, (0, 2, 3, 4))
    assert torch.allclose(latent["samples"], expected, atol=1e-5), float((latent["samples"] - expected).abs().max())
    assert not torch.allclose(latent["samples"], run.sample(tiny_model), atol=1e-3), "it is not the plain run"


def test_a_shorter_approach_still_guides_the_whole_run(run, comfy, tiny_model):
    model, calls = _counting(tiny_model)
    capture, _, _ = run.capture(model=model, override="circles: 5", approach_steps=1)
    refined, _, _ = run.refine(run.layout(capture)[0])
    assert refined.needs_guidance
    output = comfy["NuminaSampler"].execute(model, capture, refined, "auto")
    assert len(calls) == 2 + STEPS and output.ui["model_evaluations"] == [2 + STEPS]
    guided_model, _ = run.guide(refined)                      # the guided pass is the run's own schedule
    assert torch.equal(output.result[0]["samples"], run.sample(guided_model))


def test_approach_steps_as_long_as_the_reference_step_is_the_exact_run(run, tiny_model):
    exact, _, _ = run.capture()
    long, _, report = run.capture(approach_steps=5)
    assert long.reference.exact and long.reference.evaluations == exact.step_index + 1
    assert torch.equal(long.reference.state, exact.reference.state)
    assert "reached in the run's own 2 steps" in report


@pytest.mark.parametrize("sampler_name", ["uni_pc", "dpmpp_2m"])
def test_the_shorter_approach_with_the_multistep_samplers_the_workflows_use(run, comfy, tiny_model, sampler_name):
    """The shipped Wan workflows sample with uni_pc: the reference pass's larger steps and the
    finish from them run through the same sampler (its history restarts at the finish)."""
    model, calls = _counting(tiny_model)
    steps = 10
    capture, _, _ = comfy["NuminaAttentionCapture"].execute(
        model, run.tiny_clip, run.cond(PROMPT), run.cond(""), run.latent(), SEED, steps, CFG, sampler_name, "simple",
        PROMPT, "", -1, -1).result
    assert capture.step_index == 4 and capture.reference.path == (0, 2, 4, 5) and len(calls) == 3
    latent, report = _sampler(comfy, model, capture, _untouched(run.layout(capture)[0]))
    assert len(calls) == 3 + steps - 5 and "counts already right" in report
    plain = comfy["KSampler"]().sample(tiny_model, SEED, steps, CFG, sampler_name, "simple", run.cond(PROMPT),
                                       run.cond(""), run.latent())[0]["samples"]
    assert torch.isfinite(latent["samples"]).all()
    # the same noise and layout, not the same pixels: far closer to the plain run than another seed is
    other = comfy["KSampler"]().sample(tiny_model, SEED + 1, steps, CFG, sampler_name, "simple", run.cond(PROMPT),
                                       run.cond(""), run.latent())[0]["samples"]
    assert (latent["samples"] - plain).norm() < 0.5 * (other - plain).norm(), float((latent["samples"] - plain).norm() / (other - plain).norm())
