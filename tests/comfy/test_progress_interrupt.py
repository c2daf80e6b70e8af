"""The pack's long loops inside ComfyUI: Cancel (ComfyUI's interrupt flag) stops them, and they move
the node's progress bar.  The capture's attention reads run inside one sampler step, where no
ComfyUI op checks the flag between chunks: the read's own callback does."""
import os
import sys

import pytest

PROMPT = "three red circles drifting on a grey background"
PROGRESS_FILE = os.path.join("nodes", "progress.py")


@pytest.fixture
def interrupt():
    """Sets ComfyUI's interrupt flag on request; always cleared afterwards."""
    import comfy.model_management as mm

    yield lambda: mm.interrupt_current_processing(True)
    mm.interrupt_current_processing(False)


@pytest.fixture
def bar_updates():
    """Every progress-bar update sent by the pack's progress callback: (value, total)."""
    import comfy.utils

    updates = []

    def hook(value, total, preview, node_id=None, **_):
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_filename.endswith(PROGRESS_FILE):
            frame = frame.f_back
        if frame is not None:
            updates.append((value, total))

    before = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    yield updates
    comfy.utils.set_progress_bar_global_hook(before)


def capture(comfy, tiny_model, tiny_clip, override="", **optional):
    encode = comfy["CLIPTextEncode"]().encode
    latent = comfy["EmptyHunyuanLatentVideo"]().execute(192, 192, 5, 1)
    latent = latent.result[0] if hasattr(latent, "result") else latent[0]
    return comfy["NuminaAttentionCapture"].execute(
        tiny_model, tiny_clip, encode(tiny_clip, PROMPT)[0], encode(tiny_clip, "")[0], latent, 11, 4, 2.0,
        "euler", "simple", PROMPT, override, -1, -1, **optional).result


def test_interrupt_flag_stops_a_capture(comfy, tiny_model, tiny_clip, interrupt):
    import comfy.model_management as mm

    interrupt()
    with pytest.raises(mm.InterruptProcessingException):
        capture(comfy, tiny_model, tiny_clip)


def test_interrupt_during_the_attention_read_stops_it_after_the_chunk(comfy, pack, tiny_model, tiny_clip,
                                                                      interrupt, monkeypatch):
    import comfy.model_management as mm

    ops = pack.module("NuminaAttentionCapture").capture_ops
    real = ops.frame_attention
    chunks = []

    def first_chunk_then_cancel(q, k):        # the user presses Cancel while the first chunk is read
        chunks.append(q.shape[0])
        interrupt()
        return real(q, k)

    monkeypatch.setattr(ops, "heads_per_chunk", lambda *args: 1)   # one (frame, head) map a chunk: 4
    monkeypatch.setattr(ops, "frame_attention", first_chunk_then_cancel)
    with pytest.raises(mm.InterruptProcessingException) as raised:
        capture(comfy, tiny_model, tiny_clip)
    assert chunks == [1]                      # 1 of the 2 frames x 2 heads chunks
    assert "read_self_attention" in [entry.name for entry in raised.traceback]   # raised inside the read


def test_capture_layout_and_refinement_move_the_progress_bar(comfy, pack, tiny_model, tiny_clip, bar_updates,
                                                             monkeypatch):
    monkeypatch.setattr(pack.module("NuminaAttentionCapture").capture_ops, "heads_per_chunk", lambda *args: 1)
    captured, _, _ = capture(comfy, tiny_model, tiny_clip, override="circles: 5",
                             cross_attention_blocks="capture block")
    # the self-attention read (4 chunks; ComfyUI 0.33 may drop updates between the first and the
    # last), then the cross-attention read (one chunk of rows)
    assert bar_updates[0] == (1, 4) and (4, 4) in bar_updates and bar_updates[-1] == (1, 1), bar_updates
    bar_updates.clear()
    layout = comfy["NuminaLayoutInfer"].execute(captured, "default").result[0]
    assert bar_updates == [(1, 2), (2, 2)]    # one noun x 2 latent frames
    bar_updates.clear()
    comfy["NuminaLayoutRefine"].execute(layout)
    assert bar_updates == [(1, 2), (2, 2)]
