"""The four NUMINA nodes on the tiny Wan through ComfyUI's real sampler, as specifications."""
import pytest
import torch

from numina_dev.node_runs import CFG, PROMPT, SEED, STEPS


def test_capture_reads_only_the_chosen_block_and_step(run, pack, tiny_model):
    capture, reference, report = run.capture(step=2, block=1, cross_attention_blocks="capture block")
    patch = pack.module("NuminaAttentionCapture").attention_patch
    session = patch.CaptureSession(patch.wan_info(tiny_model), capture.grid, 1, 2, {"circles": (2,)})
    run.sample(patch.install(tiny_model, session))            # a whole run: only one step matches
    assert session.last_run.reads == [(2, 1, "self"), (2, 1, "cross")]
    assert "self-attention in block 1/2 and cross-attention in the same block at step 2/4" in report
    assert capture.cross_blocks == (1,)
    assert (capture.grid.frames, capture.grid.height, capture.grid.width) == (2, 12, 12)
    assert capture.self_features.shape == (2, 144, 3)
    assert [n.noun for n in capture.nouns] == ["circles"]
    assert capture.nouns[0].cross_attention.shape == (2, 12, 12)
    assert capture.nouns[0].token_positions == (2,)   # "▁three ▁red ▁circles": the noun is piece 2
    assert reference["samples"].shape == (1, 16, 2, 24, 24)
    assert "3 x circles" in report


def test_by_default_cross_attention_is_the_mean_over_every_block_at_the_step(run, pack, tiny_model):
    capture, _, report = run.capture(step=2, block=1)
    patch = pack.module("NuminaAttentionCapture").attention_patch
    session = patch.CaptureSession(patch.wan_info(tiny_model), capture.grid, 1, 2, {"circles": (2,)},
                                   cross_blocks=(0, 1))
    run.sample(patch.install(tiny_model, session))
    assert sorted(session.last_run.reads) == [(2, 0, "cross"), (2, 1, "cross"), (2, 1, "self")]
    assert "cross-attention in every block" in report and capture.cross_blocks == (0, 1)
    one_block = {b: run.capture(step=2, block=b, cross_attention_blocks="capture block")[0] for b in (0, 1)}
    mean = (one_block[0].nouns[0].cross_attention + one_block[1].nouns[0].cross_attention) / 2
    assert torch.allclose(capture.nouns[0].cross_attention, mean, atol=1e-6)
    assert not torch.allclose(one_block[0].nouns[0].cross_attention, one_block[1].nouns[0].cross_attention)


def test_default_reference_step_and_block_scale_the_published_ones(run):
    capture, _, _ = run.capture()
    assert capture.step_index == round(STEPS * 20 / 50)
    assert capture.block_index == 1  # block 15 of 30 scaled to the tiny model's 2 blocks


def test_layout_preview_and_counts(run):
    capture, _, _ = run.capture()
    layout, preview, counts = run.layout(capture)
    assert preview.ndim == 4 and preview.shape[0] == capture.grid.frames and preview.shape[-1] == 3
    assert float(preview.min()) >= 0.0 and float(preview.max()) <= 1.0
    assert "circles: target 3" in counts
    assert len(layout.nouns[0].counts) == capture.grid.frames


def test_refined_layout_meets_the_target_and_guide_patches_a_clone(run, pack, tiny_model):
    _, layout, refined, model, report = run.pipeline()
    noun = refined.nouns[0]
    assert noun.target == 5
    assert refined.refined and refined.needs_guidance
    for f, count in enumerate(noun.counts):   # every frame meets the target, or its note says why not
        assert count == 5 or any(note.startswith(f"frame {f}: no room") for note in noun.notes), (f, count, noun.notes)
    patch = pack.module("NuminaCrossAttnGuide").attention_patch
    assert model is not tiny_model and patch.session_of(model) is not None
    assert patch.session_of(tiny_model) is None, "the input MODEL must carry no NUMINA patch"
    assert "biasing circles" in report


def test_guided_run_differs_and_the_input_model_is_left_untouched(run, tiny_model):
    before = run.sample(tiny_model)
    *_, guided_model, _ = run.pipeline()
    guided = run.sample(guided_model)
    after = run.sample(tiny_model)
    assert not torch.equal(guided, before)
    assert torch.equal(before, after), "a plain run after NUMINA must equal the plain run before it"


def test_same_seed_same_layout_same_output_and_no_leak_between_prompts(run):
    first = run.pipeline()
    other = run.pipeline("two blue squares on a grey background", "squares: 4", fresh=True)
    again = run.pipeline(fresh=True)
    assert torch.equal(first[2].nouns[0].labels, again[2].nouns[0].labels)
    a, b = run.sample(first[3]), run.sample(again[3])
    assert torch.equal(a, b), "a run with another prompt in between must not change this one"
    assert other[2].nouns[0].noun == "squares" and first[2].nouns[0].noun == "circles"


def test_no_change_needed_gives_the_plain_run_bit_for_bit(run, tiny_model):
    """A layout that needs no edit (here the inferred one, accepted as it is: what a run whose
    counts are right gets from refinement) returns the MODEL itself: the plain run, bit for bit."""
    import dataclasses
    capture, _, _ = run.capture()
    layout, _, _ = run.layout(capture)
    untouched = dataclasses.replace(layout, refined=True)
    assert not untouched.needs_guidance
    model, report = run.guide(untouched)
    assert model is tiny_model and "no change needed" in report
    assert torch.equal(run.sample(model), run.sample(tiny_model))


@pytest.mark.parametrize("form", ["sparse", "dense", "fast"])
def test_guide_touches_cond_rows_at_layout_positions_only(run, pack, form):
    patch = pack.module("NuminaCrossAttnGuide").attention_patch
    _, _, refined, _, _ = run.pipeline()
    info = patch.WanInfo("wan21", 2, 2, (1, 2, 2), 16)
    session = patch.GuideSession(info, refined, form)
    tokens, heads, d = refined.grid.tokens, 2, 16
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, heads * d, generator=g) for n in (tokens, 512, 512))
    steps = len(refined.schedule) - 1
    forward = patch.ForwardContext(grid=refined.grid, text_tokens=512, image_tokens=0, video_offset=0,
                                   cond=patch.cond_slices([1, 0], 2), step=1, steps=steps,
                                   strength=session.strength_at(1, steps))
    options = {patch.FORWARD_KEY: forward, "block_index": 0}

    def plain(q, k, v, heads, **kw):
        b, n, _ = q.shape
        split = lambda t: t.view(b, -1, heads, d).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        return out.transpose(1, 2).reshape(b, n, heads * d)

    out = session.attention(plain, None, (q, k, v), {"heads": heads, "transformer_options": options})
    reference = plain(q, k, v, heads)
    assert torch.equal(out[0], reference[0]), "uncond rows must be bit-identical"
    changed = (out[1] - reference[1]).abs().amax(-1) > 1e-6
    labels = refined.nouns[0].labels.reshape(-1)
    edited = (labels == -1) | (labels >= 100)
    assert bool(edited.any()), "the pipeline's layout must have edits"
    assert bool(changed[edited].any()), "edited positions must be biased"
    assert not bool(changed[~edited].any()), "only rows at the layout's edited positions may change"


def test_added_boost_changes_only_the_added_instances_bias_and_the_default_is_published(run, tiny_model):
    """added_boost 0 (the default, the published bias) gives the same output as leaving it out;
    a boost changes the guided run; the cross readout lays out the same capture too."""
    capture, _, refined, published_model, _ = run.pipeline()
    boosted_model, _ = run.guide(refined, added_boost=15.0)
    zero_model, _ = run.guide(refined, added_boost=0.0)
    published, zero, boosted = (run.sample(m) for m in (published_model, zero_model, boosted_model))
    assert torch.equal(published, zero)
    assert not torch.equal(published, boosted)
    layout, preview, counts = run.layout(capture, mode="cross")
    assert layout.meta["mode"] == "cross" and "circles" in counts and preview.shape[0] == capture.grid.frames


# ----------------------------------------------------------------------------------- bad input

def test_prompt_without_countable_noun_is_a_plain_noop(run, tiny_model):
    capture, _, report = run.capture("a grey background")
    assert capture.nouns == () and "nothing to count" in report
    layout, preview, counts = run.layout(capture)
    assert "nothing to count" in counts and preview.shape[0] == capture.grid.frames
    refined, _, _ = run.refine(layout)
    model, report = run.guide(refined)
    assert model is tiny_model and "no change needed" in report


def test_override_naming_a_word_not_in_the_prompt_names_it(run):
    with pytest.raises(ValueError, match="dogs"):
        run.capture(override="dogs: 2")


def test_reference_step_beyond_the_steps_names_the_fix(run):
    with pytest.raises(ValueError, match="reference_step"):
        run.capture(step=STEPS)


def test_latent_size_differing_from_the_capture_is_refused_with_the_fix(run):
    *_, model, _ = run.pipeline()
    with pytest.raises(Exception, match="same width, height and length"):
        run.sample(model, latent=run.latent(width=128, height=128))


def test_non_wan_model_is_refused(run):
    import comfy.model_patcher
    not_wan = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="Wan"):
        run.capture(model=not_wan)


def test_reference_latent_continued_to_the_end_equals_the_plain_run(run, comfy, tiny_model):
    """When no count needs fixing, finishing the capture's reference latent with KSamplerAdvanced
    (add_noise disable, start_at_step = reference step + 1) costs only the remaining steps and
    gives the plain run (euler: a single-step sampler)."""
    capture, reference, _ = run.capture()
    continued = comfy["KSamplerAdvanced"]().sample(
        tiny_model, "disable", SEED, STEPS, CFG, "euler", "simple", run.cond(PROMPT), run.cond(""), reference,
        capture.step_index + 1, 10000, "disable")[0]["samples"]
    plain = run.sample(tiny_model)
    assert torch.allclose(continued, plain, atol=1e-4, rtol=1e-4), float((continued - plain).abs().max())


def test_a_node_that_skips_blocks_leaves_the_mean_over_the_blocks_that_ran_and_says_so(run, tiny_model):
    """A block-skipping node (here a dit replace patch that passes block 0 through): the capture's
    cross-attention is the mean over the blocks that ran, and the report names how many."""
    skipping = tiny_model.clone()
    skipping.set_model_patch_replace(lambda args, extra: {"img": args["img"]}, "dit", "double_block", 0)
    capture, _, report = run.capture(step=2, block=1, model=skipping)
    assert capture.cross_blocks == (1,)
    assert "cross-attention in 1 of 2 blocks" in report
    alone = run.capture(step=2, block=1, model=skipping, cross_attention_blocks="capture block")[0]
    assert torch.equal(capture.nouns[0].cross_attention, alone.nouns[0].cross_attention)
