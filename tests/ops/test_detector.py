"""The paper's judge through transformers (numina_ops/detector.py), on a tiny random GroundingDINO
built offline (testing/numina_dev/tiny_grounding_dino.py).  Its boxes mean nothing; what is
checked is how they are asked for (one caption per noun, thresholds, batches) and how they come
back (pixels of the frame, one box = one counted object)."""
from __future__ import annotations

import copy
import os
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file

from numina_dev.tiny_grounding_dino import build_tiny_grounding_dino
from numina_ops.detector import GroundingDinoCounter, load_grounding_dino
from numina_ops.judge import PAPER_BOX_THRESHOLD, PAPER_TEXT_THRESHOLD, Box, ObjectCounter, check_frames
from numina_ops.records import CountTarget, NuminaInputError, Targets

NOUNS = ["apples", "triangles", "dogs"]


@pytest.fixture(scope="module", autouse=True)
def _offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return build_tiny_grounding_dino(str(tmp_path_factory.mktemp("gd") / "grounding-dino-tiny-random"))


@pytest.fixture(scope="module")
def counter(folder) -> GroundingDinoCounter:
    return load_grounding_dino(folder)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    # non-square, so height and width cannot be swapped unnoticed
    return torch.rand(5, 96, 160, 3, generator=torch.Generator().manual_seed(0))


def _with(counter: GroundingDinoCounter, **changes) -> GroundingDinoCounter:
    """The same model and processor with other settings (no reload)."""
    settings = dict(box_threshold=counter.box_threshold, text_threshold=counter.text_threshold,
                    frames_per_batch=counter.frames_per_batch) | changes
    return GroundingDinoCounter(counter.model, counter.processor, counter.name, **settings)


def _counts(boxes) -> list[list[int]]:
    return [[len(per_noun) for per_noun in per_frame] for per_frame in boxes]


def _targets(**counts: int) -> Targets:
    items = tuple(CountTarget(noun=noun, count=c, span=(0, len(noun))) for noun, c in counts.items())
    return Targets(prompt=" ".join(f"{c} {n}" for n, c in counts.items()), items=items)


class _ForwardSpy:
    """Records the text and the batch of every forward of the model."""

    def __init__(self, model, tokenizer):
        self.tokenizer = tokenizer
        self.calls: list[tuple[list[str], int, torch.dtype]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs["input_ids"]
        self.calls.append(([self.tokenizer.decode(row) for row in ids], kwargs["pixel_values"].shape[0],
                           kwargs["pixel_values"].dtype))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# --- loading ------------------------------------------------------------------------------------------

def test_loads_folder_on_cpu_fp32_eval_with_paper_thresholds(counter, folder):
    assert isinstance(counter, ObjectCounter)
    assert isinstance(counter.model, torch.nn.Module) and not counter.model.training
    assert {p.dtype for p in counter.model.parameters()} == {torch.float32}
    assert {p.device.type for p in counter.model.parameters()} == {"cpu"}
    assert counter.box_threshold == PAPER_BOX_THRESHOLD and counter.text_threshold == PAPER_TEXT_THRESHOLD
    assert counter.frames_per_batch == 8
    assert counter.name == os.path.basename(folder)
    assert counter.describe() == f"GroundingDINO {os.path.basename(folder)}, box threshold 0.32, text threshold 0.25"


def test_loads_and_detects_without_network(folder, frames, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the judge tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    counter = load_grounding_dino(folder, frames_per_batch=2)
    assert len(counter.detect(frames[:2], ["apples"])) == 2


def test_builder_is_deterministic_per_seed(folder, tmp_path):
    same = load_file(os.path.join(build_tiny_grounding_dino(str(tmp_path / "a"), seed=0), "model.safetensors"))
    other = load_file(os.path.join(build_tiny_grounding_dino(str(tmp_path / "b"), seed=1), "model.safetensors"))
    reference = load_file(os.path.join(folder, "model.safetensors"))
    assert same.keys() == reference.keys()
    assert all(torch.equal(same[k], reference[k]) for k in reference)
    assert not all(torch.equal(other[k], reference[k]) for k in reference)


def test_refuses_missing_folder(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(NuminaInputError) as e:
        load_grounding_dino(missing)
    assert missing in str(e.value) and "huggingface-cli download IDEA-Research/grounding-dino-tiny" in str(e.value)


def _copy_without(folder: str, target, *left_out: str) -> str:
    os.makedirs(target)
    for name in os.listdir(folder):
        if name not in left_out:
            shutil.copy(os.path.join(folder, name), target)
    return str(target)


def test_refuses_pickle_only_weights(folder, tmp_path):
    pickled = _copy_without(folder, tmp_path / "bin", "model.safetensors")
    with open(os.path.join(pickled, "pytorch_model.bin"), "wb") as f:
        f.write(b"not to be unpickled")
    with pytest.raises(NuminaInputError) as e:
        load_grounding_dino(pickled)
    message = str(e.value)
    assert "only model.safetensors is read" in message and "pytorch_model.bin" in message
    assert f"huggingface-cli download IDEA-Research/grounding-dino-tiny model.safetensors --local-dir {pickled}" in message


@pytest.mark.parametrize("left_out, named", [
    (("config.json",), "config.json"),
    (("model.safetensors",), "model.safetensors"),
    (("preprocessor_config.json",), "preprocessor_config.json"),
    (("tokenizer.json", "vocab.txt"), "tokenizer"),
])
def test_refuses_incomplete_folder_naming_what_is_missing(folder, tmp_path, left_out, named):
    partial = _copy_without(folder, tmp_path / "partial", *left_out)
    with pytest.raises(NuminaInputError) as e:
        load_grounding_dino(partial)
    assert partial in str(e.value) and named in str(e.value) and "--local-dir" in str(e.value)


def test_refuses_a_folder_of_another_model(folder, tmp_path):
    other = _copy_without(folder, tmp_path / "other", "config.json")
    with open(os.path.join(other, "config.json"), "w") as f:
        f.write('{"model_type": "owlv2"}')
    with pytest.raises(NuminaInputError, match="'owlv2' model, not GroundingDINO"):
        load_grounding_dino(other)


@pytest.mark.parametrize("box, text", [(0, 0.25), (0.32, 0), (-0.1, 0.25), (1.5, 0.25), (0.32, 1.01),
                                       (float("nan"), 0.25), ("0.3", 0.25), (True, 0.25)])
def test_refuses_thresholds_outside_zero_one(folder, box, text):
    with pytest.raises(NuminaInputError, match=r"in \(0, 1\].*0\.32.*0\.25"):
        load_grounding_dino(folder, box_threshold=box, text_threshold=text)


@pytest.mark.parametrize("per_batch", [0, -1, 1.5, True])
def test_refuses_bad_batch_size(counter, per_batch):
    with pytest.raises(NuminaInputError, match="frames_per_batch"):
        _with(counter, frames_per_batch=per_batch)


# --- what is asked ------------------------------------------------------------------------------------

def test_one_caption_per_noun_lower_cased_like_the_authors(counter, frames):
    with _ForwardSpy(counter.model, counter.processor.tokenizer) as spy:
        boxes = counter.detect(frames[:3], ["Apples", "dogs"])
    assert [texts for texts, _, _ in spy.calls] == [["[CLS] apples. [SEP]"] * 3, ["[CLS] dogs. [SEP]"] * 3]
    assert len(boxes) == 3 and all(len(per_frame) == 2 for per_frame in boxes)


def test_caption_is_noun_space_dot():
    assert GroundingDinoCounter.caption("Apples") == "apples ."
    assert GroundingDinoCounter.caption(" hot air balloons ") == "hot air balloons ."


def test_noun_split_into_word_pieces_is_one_caption(counter, frames):
    assert counter.processor.tokenizer.tokenize("triangles") == ["tri", "##angles"]
    with _ForwardSpy(counter.model, counter.processor.tokenizer) as spy:
        boxes = counter.detect(frames[:2], ["triangles"])
    assert [texts for texts, _, _ in spy.calls] == [["[CLS] triangles. [SEP]"] * 2]
    assert len(boxes) == 2 and len(boxes[0]) == 1
    assert all(isinstance(b, Box) for per_frame in boxes for b in per_frame[0])


def test_frames_go_in_batches_of_frames_per_batch(counter, frames):
    with _ForwardSpy(counter.model, counter.processor.tokenizer) as spy:
        _with(counter, frames_per_batch=2).detect(frames, ["apples", "dogs"])
    assert [size for _, size, _ in spy.calls] == [2, 2, 2, 2, 1, 1]   # per batch, each noun


def test_batch_size_does_not_change_the_boxes(counter, frames):
    one = _with(counter, frames_per_batch=1).detect(frames, NOUNS)
    four = _with(counter, frames_per_batch=4).detect(frames, NOUNS)
    assert _counts(one) == _counts(four)
    assert sum(map(sum, _counts(one))) > 0
    for f in range(len(frames)):
        for n in range(len(NOUNS)):
            for a, b in zip(one[f][n], four[f][n]):
                assert (a.x0, a.y0, a.x1, a.y1, a.score) == pytest.approx((b.x0, b.y0, b.x1, b.y1, b.score), abs=1e-4)


def test_inputs_follow_the_model_dtype(counter, frames):
    double = _with(counter)
    double.model = copy.deepcopy(counter.model).double()
    with _ForwardSpy(double.model, counter.processor.tokenizer) as spy:
        boxes64 = double.detect(frames[:2], ["apples"], device=torch.device("cpu"))
    assert spy.calls[0][2] == torch.float64
    boxes32 = counter.detect(frames[:2], ["apples"])
    assert _counts(boxes64) == _counts(boxes32)
    assert next(double.model.parameters()).device.type == "cpu"


def test_frames_are_not_changed(counter, frames):
    before = frames.clone()
    counter.detect(frames[:2], ["apples"])
    assert torch.equal(frames, before)


# --- what comes back ----------------------------------------------------------------------------------

def test_boxes_are_pixels_inside_the_frame(frames, counter):
    low = _with(counter, box_threshold=0.05)
    boxes = low.detect(frames, NOUNS)
    every = [b for per_frame in boxes for per_noun in per_frame for b in per_noun]
    assert every
    height, width = frames.shape[1:3]
    for b in every:
        assert 0 <= b.x0 <= b.x1 <= width and 0 <= b.y0 <= b.y1 <= height
        assert 0.05 < b.score <= 1
    assert max(b.x1 for b in every) > 1 and max(b.y1 for b in every) > 1   # pixels, not fractions


def test_box_threshold_one_finds_nothing_and_counts_zero(counter, frames):
    none = _with(counter, box_threshold=1.0).detect(frames, NOUNS)
    assert _counts(none) == [[0, 0, 0]] * len(frames)
    check = check_frames(frames, _targets(apples=0, dogs=1), _with(counter, box_threshold=1.0))
    assert check.counts == ((0,) * 5, (0,) * 5)
    assert check.frame_scores == (0.5,) * 5


def test_lower_box_threshold_never_finds_fewer(counter, frames):
    thresholds = [0.05, 0.2, PAPER_BOX_THRESHOLD, 0.6, 0.9, 1.0]
    found = [_with(counter, box_threshold=t).detect(frames, NOUNS) for t in thresholds]
    for lower, higher in zip(found, found[1:]):
        for f in range(len(frames)):
            for n in range(len(NOUNS)):
                kept = {(b.x0, b.y0, b.x1, b.y1) for b in lower[f][n]}
                assert {(b.x0, b.y0, b.x1, b.y1) for b in higher[f][n]} <= kept
    totals = [sum(map(sum, _counts(b))) for b in found]
    assert totals[0] > totals[-1] == 0


def test_text_threshold_does_not_change_counts(counter, frames):
    """The authors count every box of the caption; the text threshold only names the phrase."""
    strict = _with(counter, text_threshold=0.99).detect(frames, NOUNS)
    assert _counts(strict) == _counts(counter.detect(frames, NOUNS))


def test_counts_through_check_frames_are_box_numbers(counter, frames):
    boxes = counter.detect(frames, NOUNS)
    counts = _counts(boxes)
    target = counts[0][0]                                  # apples exact in frame 0 at least
    check = check_frames(frames, _targets(apples=target, triangles=counts[0][1] + 1), counter)
    assert check.counts[0] == tuple(counts[f][0] for f in range(len(frames)))
    assert check.counts[1] == tuple(counts[f][1] for f in range(len(frames)))
    expected = [((counts[f][0] == target) + (counts[f][1] == counts[0][1] + 1)) / 2 for f in range(len(frames))]
    assert check.frame_scores == pytest.approx(expected)
    assert check.score == pytest.approx(sum(expected) / len(expected))
    assert check.all_right is False                        # triangles is off by one in frame 0
    assert check.judge == counter.describe() and check.frame_size == (96, 160)


def test_no_nouns_and_bad_input(counter, frames):
    assert counter.detect(frames[:2], []) == [[], []]
    with pytest.raises(NuminaInputError, match="IMAGE"):
        counter.detect(frames.permute(0, 3, 1, 2), ["apples"])
    with pytest.raises(NuminaInputError, match="nouns"):
        counter.detect(frames, ["apples", " "])
    with pytest.raises(NuminaInputError, match="nouns"):
        counter.detect(frames, "apples")


def test_memory_estimate_grows_with_the_batch_up_to_frames_per_batch(counter):
    four = _with(counter, frames_per_batch=4)
    one, two, cap, more = (four.estimated_memory_bytes((f, 480, 832, 3)) for f in (1, 2, 4, 81))
    assert 0 < one < two < cap == more
    assert isinstance(one, int)
