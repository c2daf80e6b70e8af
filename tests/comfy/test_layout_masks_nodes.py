"""Hand-editable layouts through ComfyUI: a real layout of the tiny Wan as a MASK, edited with
ComfyUI's own mask nodes, read back, and accepted by the guide."""
import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from numina_dev import comfy_runtime
from numina_dev.graphs import TINY_TEXT, TINY_WAN
from numina_dev.node_runs import CFG, PROMPT, SEED, STEPS

PPT = 16            # the tiny Wan is a Wan2.1: 16 video pixels per token


def core(comfy, name, **inputs):
    """A core node's first output, whether it is a V1 class (0.3.75) or a V3 one (newer)."""
    cls = comfy[name]
    if hasattr(cls, "define_schema"):
        return cls.execute(**inputs).result[0]
    return getattr(cls(), cls.FUNCTION)(**inputs)[0]


def to_mask(comfy, layout, noun="", frames="video"):
    return comfy["NuminaLayoutToMask"].execute(layout, noun, frames).result[0]


def to_layout(comfy, layout, mask, noun=""):
    return comfy["NuminaMaskToLayout"].execute(layout, mask, noun).result


def free_square(layout, size=2, margin=1):
    """Top-left token of a size x size square with `margin` free tokens around it in every frame."""
    busy = (layout.nouns[0].labels != 0).any(0).numpy()
    busy = ndimage.binary_dilation(busy, np.ones((3, 3), bool), iterations=margin)
    span = size + 2 * margin
    h, w = busy.shape
    for y in range(0, h - span + 1):
        for x in range(0, w - span + 1):
            if not busy[y:y + span, x:x + span].any():
                return y + margin, x + margin
    pytest.fail("the pipeline's layout has no free 4 x 4 tokens: choose another seed for this test")


def test_a_pipeline_layout_round_trips_through_a_mask(run, comfy):
    _, _, refined, _, _ = run.pipeline()
    grid = refined.grid
    mask = to_mask(comfy, refined)
    assert tuple(mask.shape) == (4 * (grid.frames - 1) + 1, grid.height * PPT, grid.width * PPT)
    assert mask.dtype == torch.float32 and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert tuple(to_mask(comfy, refined, frames="latent").shape) == (grid.frames, grid.height * PPT, grid.width * PPT)
    for frames in ("video", "latent"):
        layout, preview, counts = to_layout(comfy, refined, to_mask(comfy, refined, "circles", frames), "circles")
        assert torch.equal(layout.nouns[0].labels, refined.nouns[0].labels)
        assert layout.nouns[0].counts == refined.nouns[0].counts and layout.refined
        assert preview.shape[0] == grid.frames and "circles: target 5" in counts


def test_a_blob_painted_with_core_mask_nodes_adds_an_instance_the_guide_biases(run, comfy, tiny_model):
    _, inferred, _, _, _ = run.pipeline()
    assert not inferred.refined
    with pytest.raises(ValueError, match="not refined"):
        run.guide(inferred)
    y, x = free_square(inferred)
    grid = inferred.grid
    width, height = grid.width * PPT, grid.height * PPT
    canvas = core(comfy, "SolidMask", value=0.0, width=width, height=height)
    square = core(comfy, "SolidMask", value=1.0, width=2 * PPT, height=2 * PPT)
    blob = core(comfy, "MaskComposite", destination=canvas, source=square, x=x * PPT, y=y * PPT, operation="add")
    blob = core(comfy, "GrowMask", mask=blob, expand=4, tapered_corners=True)   # a 4 px rim: under half a token
    painted = core(comfy, "MaskComposite", destination=to_mask(comfy, inferred), source=blob, x=0, y=0,
                   operation="or")
    edited, preview, counts = to_layout(comfy, inferred, painted)
    before, after = inferred.nouns[0], edited.nouns[0]
    assert after.counts == tuple(c + 1 for c in before.counts)
    new = after.labels[:, y:y + 2, x:x + 2]
    assert bool((new >= 100).all()) and len(new.unique()) == 1, "one added instance, same label in every frame"
    assert int((after.labels != before.labels).sum()) == 4 * grid.frames, "exactly the 2 x 2 painted tokens"
    assert edited.refined and preview.shape[0] == grid.frames and "edited by hand" in counts
    model, report = run.guide(edited)
    assert model is not tiny_model and "biasing circles" in report
    assert run.sample(model).shape == run.sample(tiny_model).shape


def test_erasing_an_instance_with_core_mask_nodes_removes_it(run, comfy):
    _, _, refined, _, _ = run.pipeline()
    labels = refined.nouns[0].labels[0].numpy()
    for label in np.unique(labels[labels > 0]):
        rows, cols = np.nonzero(labels == label)
        box = labels[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        if set(np.unique(box[box > 0]).tolist()) == {label}:
            break
    else:
        pytest.fail("no instance of frame 0 has a bounding box of its own: choose another seed for this test")
    eraser = core(comfy, "SolidMask", value=0.0, width=(cols.max() - cols.min() + 1) * PPT,
                  height=(rows.max() - rows.min() + 1) * PPT)
    mask = to_mask(comfy, refined, frames="latent")
    erased = core(comfy, "MaskComposite", destination=mask, source=eraser, x=int(cols.min()) * PPT,
                  y=int(rows.min()) * PPT, operation="multiply")
    edited, _, counts = to_layout(comfy, refined, erased)
    after = edited.nouns[0].labels
    assert bool((after[0][torch.from_numpy(labels == label)] == -1).all()) and not bool((after[0] == label).any())
    assert edited.nouns[0].counts[0] == refined.nouns[0].counts[0] - 1
    on = erased.reshape(refined.grid.frames, refined.grid.height, PPT, refined.grid.width, PPT).amax(dim=(2, 4)) > 0
    assert torch.equal(after > 0, on), "the live tokens are exactly the mask's"
    assert "removed" in counts


def test_a_single_frame_mask_applies_to_every_frame(run, comfy):
    _, _, refined, _, _ = run.pipeline()
    grid = refined.grid
    nothing = core(comfy, "SolidMask", value=0.0, width=grid.width * PPT, height=grid.height * PPT)
    edited, _, _ = to_layout(comfy, refined, nothing)
    before, after = refined.nouns[0].labels, edited.nouns[0].labels
    assert edited.nouns[0].counts == (0,) * grid.frames
    assert torch.equal(after == -1, (before > 0) | (before == -1))
    model, report = run.guide(edited)
    assert "biasing circles" in report


def test_wan22_5b_layouts_use_32_pixels_a_token(run, comfy):
    _, _, refined, _, _ = run.pipeline()
    five_b = dataclasses.replace(refined, model_family="wan22_ti2v")
    grid = five_b.grid
    mask = to_mask(comfy, five_b, frames="latent")
    assert tuple(mask.shape) == (grid.frames, grid.height * 32, grid.width * 32)
    assert torch.equal(to_layout(comfy, five_b, mask)[0].nouns[0].labels, refined.nouns[0].labels)


def test_bad_masks_and_nouns_are_named(run, comfy):
    _, _, refined, _, _ = run.pipeline()
    grid = refined.grid
    wrong = core(comfy, "SolidMask", value=1.0, width=100, height=100)
    with pytest.raises(ValueError, match=f"{grid.width * PPT} x {grid.height * PPT} pixels"):
        to_layout(comfy, refined, wrong)
    three = to_mask(comfy, refined)[:3]
    with pytest.raises(ValueError, match="use 1 "):
        to_layout(comfy, refined, three)
    with pytest.raises(ValueError, match="'circles'"):
        to_mask(comfy, refined, "dogs")
    with pytest.raises(ValueError, match="'circles'"):
        to_layout(comfy, refined, to_mask(comfy, refined), "dogs")


def test_a_prompt_without_nouns_gives_an_empty_mask_and_passes_through(run, comfy):
    capture, _, _ = run.capture("a grey background")
    layout, _, _ = run.layout(capture)
    mask = to_mask(comfy, layout)
    assert tuple(mask.shape) == (4 * (capture.grid.frames - 1) + 1, capture.grid.height * PPT,
                                 capture.grid.width * PPT) and float(mask.sum()) == 0
    edited, _, counts = to_layout(comfy, layout, mask)
    assert edited.refined and "nothing to count" in counts


def test_the_edit_runs_as_a_graph_through_comfyuis_executor(comfy):
    """Capture -> infer -> refine -> layout to mask -> core mask nodes -> mask to layout -> guide ->
    KSampler -> preview, validated (socket types) and run by ComfyUI's own executor."""
    sampler = {"seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": "euler", "scheduler": "simple"}
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN, "weight_dtype": "default"}},
        "2": {"class_type": "NuminaTinyTextEncoderLoader", "inputs": {"text_encoder": TINY_TEXT}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 192, "height": 192, "length": 5,
                                                                  "batch_size": 1}},
        "6": {"class_type": "NuminaAttentionCapture", "inputs": {
            "model": ["1", 0], "clip": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent": ["5", 0],
            **sampler, "prompt": PROMPT, "count_override": "circles: 4", "reference_step": -1, "block": -1}},
        "7": {"class_type": "NuminaLayoutInfer", "inputs": {"capture": ["6", 0], "mode": "default"}},
        "8": {"class_type": "NuminaLayoutRefine", "inputs": {"layout": ["7", 0]}},
        "9": {"class_type": "NuminaLayoutToMask", "inputs": {"layout": ["8", 0], "noun": "", "frames": "video"}},
        "10": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 16, "height": 16}},
        "11": {"class_type": "MaskComposite", "inputs": {"destination": ["9", 0], "source": ["10", 0],
                                                         "x": 0, "y": 0, "operation": "or"}},
        "12": {"class_type": "NuminaMaskToLayout", "inputs": {"layout": ["8", 0], "mask": ["11", 0],
                                                              "noun": "circles"}},
        "13": {"class_type": "NuminaCrossAttnGuide", "inputs": {"model": ["1", 0], "layout": ["12", 0],
                                                                "bias_form": "auto"}},
        "14": {"class_type": "KSampler", "inputs": {"model": ["13", 0], **sampler, "positive": ["3", 0],
                                                    "negative": ["4", 0], "latent_image": ["5", 0],
                                                    "denoise": 1.0}},
        "15": {"class_type": "NuminaLatentRGBDecode", "inputs": {"model": ["1", 0], "samples": ["14", 0],
                                                                 "upscale": 8}},
        "16": {"class_type": "PreviewImage", "inputs": {"images": ["15", 0]}},
    }
    executor, server = comfy_runtime.execute_graph(graph)
    assert executor.success, comfy_runtime.execution_error(server)
    layout = comfy_runtime.cached_outputs(executor, "12")[0][0]
    assert layout.refined and layout.nouns[0].noun == "circles"
    assert bool((layout.nouns[0].labels[:, 0, 0] > 0).all()), "the painted corner token is live"
    assert "biasing circles" in comfy_runtime.cached_outputs(executor, "13")[1][0]
    assert comfy_runtime.cached_outputs(executor, "14") is not None, "the guided KSampler ran"
