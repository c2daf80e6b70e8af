"""The guide inside the graphs users build: other attention patches before or after it, I2V and
FLF2V models, cond and uncond batched or apart, compiled and cached models, context windows.
Every case either keeps guiding exactly as alone, or stops with a message naming the feature."""
import logging

import pytest
import torch

from numina_dev.node_runs import CFG, PROMPT, SEED, STEPS


@pytest.fixture(scope="module")
def samples(run, tiny_model):
    *_, model, _ = run.pipeline()
    return {"model": model, "guided": run.sample(model), "plain": run.sample(tiny_model)}


def _with_override(model, calls):
    """What attention-backend nodes do (core ModelAttentionBackend, KJNodes' sage patch, loaders
    with a sage option): set their own override on a clone, replacing whatever was there."""
    patched = model.clone()

    def other_backend(func, *args, **kwargs):
        calls.append(args[1].shape[1])
        return func(*args, **kwargs)
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = other_backend
    return patched


def _with_block_patches(model, calls, blocks=2):
    """What block-replacing nodes do (skip-layer guidance, KJNodes' uncond skip): a `dit` /
    `double_block` replace patch per block that runs the original block itself."""
    patched = model.clone()
    for index in range(blocks):
        def block(args, extra, index=index):
            calls.append(index)
            return extra["original_block"](args)
        patched.set_model_patch_replace(block, "dit", "double_block", index)
    return patched


def test_an_attention_backend_node_after_the_guide_keeps_the_guidance(run, samples):
    calls = []
    after = run.sample(_with_override(samples["model"], calls))
    assert calls, "the other backend must still run (chained under NUMINA)"
    assert torch.equal(after, samples["guided"]), "guidance must act exactly as without the other node"
    assert not torch.equal(after, samples["plain"])


def test_an_attention_backend_node_before_the_guide_keeps_the_guidance(run, tiny_model, samples):
    calls = []
    backend_first = _with_override(tiny_model, calls)
    _, _, refined, _, _ = run.pipeline()
    model, _ = run.guide(refined, model=backend_first)
    assert torch.equal(run.sample(model), samples["guided"]) and calls


@pytest.mark.parametrize("order", ["after", "before"])
def test_a_block_replace_patch_before_or_after_the_guide_keeps_the_guidance(run, tiny_model, samples, order):
    calls = []
    if order == "after":
        model = _with_block_patches(samples["model"], calls)
    else:
        _, _, refined, _, _ = run.pipeline()
        model, _ = run.guide(refined, model=_with_block_patches(tiny_model, calls))
    assert torch.equal(run.sample(model), samples["guided"])
    assert sorted(set(calls)) == [0, 1], "the other node's block patches must still run"


def test_the_run_reports_how_many_calls_it_biased(run, tiny_model, caplog):
    *_, model, report = run.pipeline()
    assert "how many cross-attention calls were biased" in report
    with caplog.at_level(logging.INFO, logger="numina"):
        run.sample(model)
    # 2 blocks x 4 steps, the strength on at every step of a 4-step schedule, cond rows only
    assert "biased 8 of 8 text cross-attention calls in 4 model evaluations" in caplog.text


def _cross_attention_outside_the_override(model):
    """What a node that swaps Wan's attention modules does (instead of ComfyUI's attention
    override): an object patch whose cross-attention calls a backend directly."""
    from comfy.ldm.modules.attention import attention_pytorch
    patched = model.clone()
    for index, block in enumerate(model.model.diffusion_model.blocks):
        attn = block.cross_attn

        def forward(x, context, transformer_options={}, attn=attn, **kwargs):
            q, k, v = attn.norm_q(attn.q(x)), attn.norm_k(attn.k(context)), attn.v(context)
            return attn.o(attention_pytorch(q, k, v, heads=attn.num_heads))
        patched.add_object_patch(f"diffusion_model.blocks.{index}.cross_attn.forward", forward)
    return patched


def test_a_guided_run_that_biased_nothing_says_so(run, caplog):
    *_, model, _ = run.pipeline()
    with caplog.at_level(logging.WARNING, logger="numina"):
        run.sample(_cross_attention_outside_the_override(model))
    assert "no cross-attention call was biased" in caplog.text and "equals a plain run" in caplog.text


def test_a_compiled_model_guides_every_step_like_the_eager_one(run, samples):
    """torch.compile (ComfyUI's own compile wrapper; the `eager` backend needs no compiler here)
    must never run NUMINA with a step or strength frozen at trace time."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    import torch._dynamo
    compiled = samples["model"].clone()
    set_torch_compile_wrapper(compiled, backend="eager")
    torch._dynamo.reset()
    try:
        out = run.sample(compiled)
    finally:
        torch._dynamo.reset()
    assert torch.allclose(out, samples["guided"], atol=1e-5, rtol=1e-5), float((out - samples["guided"]).abs().max())
    assert not torch.allclose(out, samples["plain"], atol=1e-3)


@pytest.mark.parametrize("node", ["EasyCache", "LazyCache"])
def test_a_step_cache_keeps_guiding_the_steps_it_computes(run, comfy, tiny_model, samples, node, caplog):
    """EasyCache / LazyCache skip whole model evaluations on some steps and reuse a cached change;
    the steps that run are guided (the log counts them), so the result differs from the cached
    plain run."""
    cache = comfy[node]
    cached_guided = cache.execute(samples["model"], 0.2, 0.0, 1.0, False).result[0]
    cached_plain = cache.execute(tiny_model, 0.2, 0.0, 1.0, False).result[0]
    with caplog.at_level(logging.INFO, logger="numina"):
        guided = run.sample(cached_guided)
    assert "biased" in caplog.text and "no cross-attention call was biased" not in caplog.text
    assert not torch.equal(guided, run.sample(cached_plain))


def test_context_windows_stop_with_a_message_naming_them(run, comfy, samples):
    import inspect
    node = comfy["ContextWindowsManual"]
    settings = dict(model=samples["model"], context_length=1, context_overlap=0, context_schedule="standard_static",
                    context_stride=1, closed_loop=False, fuse_method="pyramid", dim=2, freenoise=False)
    accepted = inspect.signature(node.execute).parameters      # newer ComfyUI added freenoise
    windows = node.execute(**{k: v for k, v in settings.items() if k in accepted}).result[0]
    with pytest.raises(Exception, match="context windows"):
        run.sample(windows)


# ----------------------------------------------------------------------------- calls by structure

def _tiny_wan(kind: str, reference_tokens: bool = False):
    """A real ComfyUI WanModel (random weights): T2V, I2V (257 image tokens) or FLF2V (514); with
    ``reference_tokens`` it prepends a reference image's tokens (``ref_conv``)."""
    import comfy.ldm.wan.model as wan
    import comfy.ops
    torch.manual_seed(0)
    model = wan.WanModel(model_type="t2v" if kind == "t2v" else "i2v", dim=64, ffn_dim=128, num_heads=2,
                         num_layers=2, in_dim=16, out_dim=16, text_dim=32, freq_dim=32,
                         flf_pos_embed_token_number=514 if kind == "flf2v" else None,
                         in_dim_ref_conv=16 if reference_tokens else None,
                         operations=comfy.ops.disable_weight_init)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def _layout_for(grid):
    from numina_ops.records import CountTarget, Layout, NounLayout, Targets
    labels = torch.zeros(grid.frames, grid.height, grid.width, dtype=torch.int32)
    labels[0, 0:2, 0:2] = 1
    labels[0, 2:4, 2:4] = 100
    labels[1, 1:3, 0:2] = -1
    noun = NounLayout(noun="cats", target=2, token_positions=(3,), labels=labels, counts=(2, 0))
    return Layout(grid=grid, targets=Targets("two cats", (CountTarget("cats", 2, (4, 8)),)), nouns=(noun,),
                  refined=True, schedule=(1.0, 0.5, 0.0))


@pytest.fixture
def guide_calls(pack, monkeypatch):
    """Every call NUMINA biases: (key tokens, batch rows, query tokens, first query token)."""
    patch = pack.module("NuminaCrossAttnGuide").attention_patch
    seen = []
    original = patch.modulation.rebias_rows

    def spy(q, k, v, heads, plan, delta, out, form="sparse", **kw):
        first_token = (q.storage_offset() // q.stride(1)) % (q.stride(0) // q.stride(1))   # of the full sequence
        seen.append((k.shape[1], q.shape[0], q.shape[1], first_token))
        return original(q, k, v, heads, plan, delta, out, form, **kw)
    monkeypatch.setattr(patch.modulation, "rebias_rows", spy)
    return patch, seen


def _forward(patch, model, session, cond_or_uncond, kind, seed=1, **extra):
    import comfy.patcher_extension as ext
    batch = len(cond_or_uncond)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 2, 8, 8, generator=gen).repeat(batch, 1, 1, 1, 1)
    context = torch.randn(1, 24, 32, generator=gen).repeat(batch, 1, 1)
    clip = {"t2v": None, "i2v": 257, "flf2v": 514}[kind]
    clip_fea = None if clip is None else torch.randn(1, clip, 1280, generator=gen).repeat(batch, 1, 1)
    wrappers = {ext.WrappersMP.DIFFUSION_MODEL: {"numina": [patch._eager(session.wrap_forward, recursive=False)]}}
    options = {"wrappers": wrappers, "cond_or_uncond": list(cond_or_uncond), "sigmas": torch.tensor([1.0]),
               "sample_sigmas": torch.tensor([1.0, 0.5, 0.0])}
    with torch.no_grad():
        return model(x, torch.full((batch,), 999.0), context, clip_fea=clip_fea, transformer_options=options, **extra)


@pytest.mark.parametrize("kind", ["t2v", "i2v", "flf2v"])
def test_only_text_cross_attention_is_biased_whatever_the_model_kind(guide_calls, kind):
    patch, seen = guide_calls
    model = _tiny_wan(kind)
    info = patch.WanInfo("wan21", 2, 2, (1, 2, 2), 16)
    grid = patch.TokenGrid(2, 4, 4)
    session = patch.GuideSession(info, _layout_for(grid), "sparse")
    _forward(patch, model, session, [1, 0], kind)
    assert [k for k, *_ in seen] == [24, 24], "one text call (24 context tokens) per block, never self or image"
    assert session.counts.unknown_calls == 0 and session.counts.text_calls == 2


def test_cond_and_uncond_batched_or_apart_bias_only_the_cond_rows(guide_calls):
    """MultiGPU runs cond and uncond in separate threads on clones; batched CFG runs them together."""
    import threading
    patch, seen = guide_calls
    model = _tiny_wan("t2v")
    session = patch.GuideSession(patch.WanInfo("wan21", 2, 2, (1, 2, 2), 16), _layout_for(patch.TokenGrid(2, 4, 4)), "sparse")
    together = _forward(patch, model, session, [1, 0], "t2v")
    assert [rows for _, rows, *_ in seen] == [1, 1]
    seen.clear()
    results = {}
    threads = [threading.Thread(target=lambda c=c: results.__setitem__(c, _forward(patch, model, session, [c], "t2v")))
               for c in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2, "only the cond thread's two blocks are biased"
    assert torch.allclose(results[0][0], together[1], atol=1e-5) and torch.allclose(results[1][0], together[0], atol=1e-5)


def test_the_capture_reads_the_text_call_of_its_block_in_an_flf2v_model(pack):
    patch = pack.module("NuminaAttentionCapture").attention_patch
    model = _tiny_wan("flf2v")
    grid = patch.TokenGrid(2, 4, 4)
    session = patch.CaptureSession(patch.WanInfo("wan21", 2, 2, (1, 2, 2), 16), grid, 1, 0, {"cats": (3,)})
    _forward(patch, model, session, [1, 0], "flf2v")
    assert session.counts.reads == [(0, 1, "self"), (0, 1, "cross")]
    assert session.cross_maps["cats"].shape == (2, 4, 4)


def test_a_call_is_classified_from_its_shapes_alone(pack):
    patch = pack.module("NuminaCrossAttnGuide").attention_patch
    grid = patch.TokenGrid(2, 4, 4)

    def forward(image=0, offset=0, text=512):
        return patch.ForwardContext(grid=grid, text_tokens=text, image_tokens=image, video_offset=offset,
                                    cond=(slice(0, 1),), step=0, steps=4)
    assert patch.classify_call(32, 32, forward()) == patch.SELF
    assert patch.classify_call(32, 512, forward()) == patch.TEXT
    assert patch.classify_call(32, 257, forward(image=257)) == patch.IMAGE
    assert patch.classify_call(32, 514, forward(image=514)) == patch.IMAGE
    assert patch.classify_call(32, 514, forward()) == patch.UNKNOWN          # no image context this forward
    assert patch.classify_call(48, 48, forward(offset=16)) == patch.SELF      # reference tokens before the video
    assert patch.classify_call(32, 32, forward(text=32)) == patch.UNKNOWN     # as many video as text tokens ...
    model = _tiny_wan("t2v")                                                  # ... unless the caller is known
    assert patch.classify_call(32, 32, forward(text=32), model.blocks[0].self_attn) == patch.SELF
    assert patch.classify_call(32, 32, forward(text=32), model.blocks[0].cross_attn) == patch.TEXT
    assert patch.cond_slices([1, 0], 2) == (slice(1, 2),)
    assert patch.cond_slices([0, 1, 0], 6) == (slice(0, 2), slice(4, 6))
    assert patch.cond_slices([1], 1) == ()


def test_reference_image_tokens_before_the_video_are_skipped(guide_calls):
    """A model with ref_conv prepends a reference latent's tokens (16 here): the bias lands on
    the video tokens after them, never on the reference tokens."""
    patch, seen = guide_calls
    model = _tiny_wan("t2v", reference_tokens=True)
    session = patch.GuideSession(patch.WanInfo("wan21", 2, 2, (1, 2, 2), 16), _layout_for(patch.TokenGrid(2, 4, 4)), "sparse")
    reference = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    _forward(patch, model, session, [1, 0], "t2v", reference_latent=reference)
    assert [k for k, *_ in seen] == [24, 24] and session.counts.unknown_calls == 0
    assert all((tokens, first) == (32, 16) for _, _, tokens, first in seen), "the 32 video tokens after the 16"
