"""Layout previews and reports on the NUMINA nodes themselves (V3 ui outputs): a graph capture ->
infer -> refine, run by ComfyUI's own executor, shows on Infer and Refine the layout animated over
the latent frames, each frame titled with noun, count and target, and the counts as text."""
import importlib
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from numina_dev import comfy_runtime
from numina_dev.graphs import plain_graph

PROMPT = "three red circles drifting on a grey background"
CAPTURE, INFER, REFINE = "10", "11", "12"


def layout_graph(prompt=PROMPT, override="circles: 5"):
    """plain_graph's loaders, text and latent, then capture -> infer -> refine and nothing else:
    Infer and Refine are output nodes, so this runs to inspect the layout before a guided run."""
    graph = {k: v for k, v in plain_graph(prompt=prompt).items() if k in ("1", "2", "3", "4", "5")}
    graph["5"]["inputs"].update(width=192, height=192)
    graph[CAPTURE] = {"class_type": "NuminaAttentionCapture", "inputs": {
        "model": ["1", 0], "clip": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent": ["5", 0],
        "seed": 11, "steps": 4, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple", "prompt": prompt,
        "count_override": override, "reference_step": -1, "block": -1}}
    graph[INFER] = {"class_type": "NuminaLayoutInfer", "inputs": {"capture": [CAPTURE, 0], "mode": "default"}}
    graph[REFINE] = {"class_type": "NuminaLayoutRefine", "inputs": {"layout": [INFER, 0]}}
    return graph


def _pack_module(pack, name):
    """A module of the pack by its path in the repository ("nodes.preview"), as ComfyUI imported it."""
    package = pack.module("NuminaLayoutInfer").__name__.rsplit(".", 2)[0]
    return importlib.import_module(f"{package}.{name}")


@pytest.fixture(scope="module")
def preview_module(pack):
    return _pack_module(pack, "nodes.preview")


class ProgressTextServer:
    """What `report_ui` needs of PromptServer.instance; records what each node was sent."""

    def __init__(self):
        self.shown = []

    def send_progress_text(self, text, node_id, sid=None):
        self.shown.append((str(node_id), text))


@pytest.fixture(scope="module")
def executed(comfy):
    """The graph run once through the executor: (executor, [(node id, progress text)])."""
    import server

    stub_server = ProgressTextServer()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server.PromptServer, "instance", stub_server, raising=False)
        executor, stub = comfy_runtime.execute_graph(layout_graph())
    assert executor.success, comfy_runtime.execution_error(stub)
    return executor, stub_server.shown


def _frames(entry, durations=None, suffix=".webp"):
    """The pictures of a ui image entry (and, into `durations`, each one's display time in ms)."""
    import folder_paths

    assert entry["type"] == "temp" and entry["filename"].endswith(suffix)
    path = os.path.join(folder_paths.get_temp_directory(), entry["subfolder"], entry["filename"])
    with Image.open(path) as animation:
        frames = []
        for index in range(getattr(animation, "n_frames", 1)):
            animation.seek(index)
            animation.load()
            frames.append(np.asarray(animation.convert("RGB")))
            if durations is not None:
                durations.append(animation.info.get("duration"))
    return frames


@pytest.mark.parametrize("node", [INFER, REFINE])
def test_infer_and_refine_show_the_layout_animated_over_the_latent_frames(executed, node):
    executor, _ = executed
    ui = executor.history_result["outputs"][node]
    layout, preview, counts = (slot[0] for slot in comfy_runtime.cached_outputs(executor, node))
    assert layout.grid.frames == 2 and preview.shape[0] == layout.grid.frames   # 5 video frames: 2 latent
    assert ui["animated"] == [True] and len(ui["images"]) == 1, "one animated file the browser plays"
    durations = []
    frames = _frames(ui["images"][0], durations)
    assert len(frames) == layout.grid.frames
    assert durations == [250] * len(frames), "4 latent frames a second: the video's own timing at 16 fps"
    for frame, expected in zip(frames, preview):   # lossless: the file is the preview IMAGE output
        assert np.array_equal(frame, (expected.numpy() * 255).round().astype(np.uint8))
    assert max(preview.shape[1:3]) <= 1024


@pytest.mark.parametrize("node", [INFER, REFINE])
def test_each_frame_carries_noun_count_and_target(executed, preview_module, node):
    executor, _ = executed
    layout, preview, _ = (slot[0] for slot in comfy_runtime.cached_outputs(executor, node))
    noun = layout.nouns[0]
    frames = _frames(executor.history_result["outputs"][node]["images"][0])
    for f, frame in enumerate(frames):
        title = preview_module.frame_title(noun, f)
        assert title.startswith(f"circles: {noun.counts[f]} / target 5")
        assert np.array_equal(frame, _expected_with_title(preview_module, frame, title))


def _expected_with_title(preview, frame, title):
    """The frame with its title strip redrawn from `title` alone: equal iff that text is drawn there."""
    font = ImageFont.load_default()
    width = frame.shape[1]
    lines = preview._title_lines(title, width, font)
    strip = 2 * preview.TITLE_MARGIN + len(lines) * preview._line_height(font)
    image = Image.fromarray(frame.copy())
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, strip - 1), fill=(0, 0, 0))
    for k, line in enumerate(lines):
        draw.text((preview.TITLE_MARGIN, preview.TITLE_MARGIN + k * preview._line_height(font)), line,
                  fill=(255, 255, 255), font=font)
    return np.asarray(image)


@pytest.mark.parametrize("node", [INFER, REFINE])
def test_the_counts_show_as_text_on_the_node(executed, node):
    executor, shown = executed
    _, _, counts = (slot[0] for slot in comfy_runtime.cached_outputs(executor, node))
    assert counts.startswith("circles: target 5, per-frame counts")
    assert executor.history_result["outputs"][node]["text"] == [counts]
    assert (node, counts) in shown, "sent as the node's progress text, which the frontend draws under it"


def test_refine_preview_differs_from_infer_where_instances_were_added(executed):
    executor, _ = executed
    inferred = comfy_runtime.cached_outputs(executor, INFER)[0][0]
    refined = comfy_runtime.cached_outputs(executor, REFINE)[0][0]
    assert inferred.nouns[0].counts != refined.nouns[0].counts
    first, second = (_frames(executor.history_result["outputs"][n]["images"][0]) for n in (INFER, REFINE))
    assert not np.array_equal(first[0], second[0])


# ----------------------------------------------------------------------------- the rendering alone
def _layout(records, counts=((2, 3),), nouns=("apples",), targets=(3,), frames=2, height=30, width=52):
    labels = torch.zeros(frames, height, width, dtype=torch.int32)
    labels[:, 4:10, 4:10] = 1
    labels[1, 14:20, 20:26] = 2
    items = tuple(records.CountTarget(noun=n, count=t, span=(0, len(n))) for n, t in zip(nouns, targets))
    noun_layouts = tuple(records.NounLayout(noun=n, target=t, token_positions=(i + 1,), labels=labels.clone(),
                                            counts=c) for i, (n, t, c) in enumerate(zip(nouns, targets, counts)))
    return records.Layout(grid=records.TokenGrid(frames, height, width),
                          targets=records.Targets(prompt="p", items=items), nouns=noun_layouts)


@pytest.fixture(scope="module")
def records(pack):
    return _pack_module(pack, "numina_ops.records")


def test_rendering_writes_noun_count_and_target_into_each_frame(preview_module, records):
    layout = _layout(records)
    frames = preview_module.render_frames(layout)
    assert len(frames) == 2
    titles = [preview_module.frame_title(layout.nouns[0], f) for f in range(2)]
    assert titles == ["apples: 2 / target 3 [fix] frame 0", "apples: 3 / target 3 [ok] frame 1"]
    font = ImageFont.load_default()
    for frame, title in zip(frames, titles):
        pixels = np.asarray(frame)
        assert np.array_equal(pixels, _expected_with_title(preview_module, pixels, title))
        strip = pixels[: 2 * preview_module.TITLE_MARGIN + preview_module._line_height(font)]
        assert (strip.min(axis=-1) > 128).sum() > 50, "light text on the black title strip"
    assert not np.array_equal(np.asarray(frames[0])[:20], np.asarray(frames[1])[:20]), "each frame its own count"


def test_rendering_is_bounded_and_fast_for_a_long_832x480_video(preview_module, records):
    import time

    nouns = ("apples", "dogs", "cats", "hot air balloons", "birds")
    frames = 21   # 81 video frames at 832x480: a 21 x 30 x 52 token grid
    layout = _layout(records, counts=[tuple([2] * frames)] * 5, nouns=nouns, targets=(3,) * 5, frames=frames)
    maps = {n: torch.rand(frames, 30, 52) for n in nouns}
    start = time.perf_counter()
    image = preview_module.render_layout(layout, maps)
    elapsed = time.perf_counter() - start
    assert image.shape[0] == frames and image.shape[2] <= preview_module.MAX_ROW_WIDTH and image.shape[1] <= 400
    assert elapsed < 5.0, f"{elapsed:.1f} s"
    panel = (image.shape[2] + preview_module.GAP) // len(nouns) - preview_module.GAP
    font = ImageFont.load_default()
    lines = preview_module._title_lines(preview_module.frame_title(layout.nouns[3], 0), panel, font)
    assert lines == ["hot air balloons: 2 / target 3", "[fix] frame 0"], "a long title wraps, not cut"
    one = preview_module.render_layout(_layout(records, counts=[tuple([2] * frames)], frames=frames), maps)
    assert 240 <= one.shape[2] <= 320, "one noun: about PANEL_MIN_WIDTH pixels wide"


def test_report_ui_is_text_on_the_node(preview_module, monkeypatch):
    import server
    from comfy_execution.utils import CurrentNodeContext

    stub_server = ProgressTextServer()
    monkeypatch.setattr(server.PromptServer, "instance", stub_server, raising=False)
    assert preview_module.report_ui("no node runs") == {"text": ["no node runs"]} and not stub_server.shown
    with CurrentNodeContext("prompt", "42"):
        assert preview_module.report_ui("NUMINA capture: 3 x circles") == {"text": ["NUMINA capture: 3 x circles"]}
    assert stub_server.shown == [("42", "NUMINA capture: 3 x circles")]
    monkeypatch.setattr(server.PromptServer, "instance", None, raising=False)
    with CurrentNodeContext("prompt", "42"):
        assert preview_module.report_ui("no server") == {"text": ["no server"]}   # never fails the run


def test_a_preview_that_cannot_be_written_falls_back_and_never_fails(preview_module, records, monkeypatch):
    from comfy_api.latest import ui

    image = preview_module.render_layout(_layout(records))
    def broken(*args, **kwargs):
        raise OSError("no encoder")
    monkeypatch.setattr(ui.ImageSaveHelper, "save_animated_webp", staticmethod(broken))
    shown = preview_module.layout_ui(image, "apples: target 3")
    assert shown["animated"] == [True] and shown["text"] == ["apples: target 3"]
    assert len(_frames(shown["images"][0], suffix=".png")) == 2, "an animated PNG instead"
    monkeypatch.setattr(ui.ImageSaveHelper, "save_animated_png", staticmethod(broken))
    assert preview_module.layout_ui(image, "apples: target 3") == {"text": ["apples: target 3"]}
