"""Device correctness, checked without a GPU.

Users run the pack on CUDA; CI has only a CPU.  Two guards stand in for the GPU:
1. every tensor constructor in the product code names its device (a scan of the source), and
2. the whole method runs with torch's default device set to ``meta``: a tensor made without its
   inputs' device lands on ``meta`` and the first op mixing it with the CPU inputs fails, exactly
   as a CPU tensor mixed with CUDA inputs fails on a GPU.
"""
from __future__ import annotations

import ast
import os

import pytest
import torch

from numina_ops import capture as C
from numina_ops import modulation as M
from numina_ops.layout import MODES, infer_layout
from numina_ops.records import Capture, CountTarget, NounMaps, Targets, TokenGrid
from numina_ops.refine import refine_layout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRODUCT = ("numina_ops", "nodes")
# constructors that make a tensor from nothing: they take the default device unless told
CONSTRUCTORS = {"zeros", "ones", "full", "empty", "tensor", "as_tensor", "arange", "range", "linspace",
                "logspace", "eye", "rand", "randn", "randint", "randperm", "Generator", "empty_strided",
                "zeros_like_", "sparse_coo_tensor"}


def _constructor_calls_without_device(path: str) -> list[str]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in CONSTRUCTORS and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
                and not any(k.arg == "device" for k in node.keywords)):
            found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} torch.{node.func.attr}(...)")
    return found


def test_every_tensor_constructor_in_the_product_names_its_device():
    offenders = []
    for package in PRODUCT:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            offenders += [line for f in sorted(files) if f.endswith(".py")
                          for line in _constructor_calls_without_device(os.path.join(folder, f))]
    assert not offenders, "tensors made without a device (pass device=<the input's device>):\n" + "\n".join(offenders)


def test_the_scan_catches_a_constructor_without_device(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\ndef f(x):\n    return x + torch.zeros(3, dtype=x.dtype)\n"
                   "def g(x):\n    return x + torch.zeros(3, device=x.device)\n")
    assert _constructor_calls_without_device(str(bad)) == [f"{os.path.relpath(str(bad), ROOT)}:3 torch.zeros(...)"]


# ----------------------------------------------------------------------------- default device away

@pytest.fixture
def default_device_meta():
    """Tensors made without a device go to `meta`; the inputs stay on the CPU."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


GRID = TokenGrid(frames=2, height=6, width=8)
HEADS, HEAD_DIM, CONTEXT = 2, 8, 16


def _inputs(seed: int = 0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    shape = (1, GRID.tokens, HEADS * HEAD_DIM)
    q, k = (torch.randn(shape, generator=gen, device="cpu") for _ in range(2))
    kc, vc = (torch.randn(1, CONTEXT, HEADS * HEAD_DIM, generator=gen, device="cpu") for _ in range(2))
    return q, k, kc, vc


def _edited_layout(capture: Capture):
    layout = infer_layout(capture, mode="cross")
    labels = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32, device="cpu")
    labels[0, 0:2, 0:2] = 1
    labels[0, 3:5, 3:5] = 100          # added beside an existing instance (matched kind)
    labels[1, 1:3, 1:3] = 101          # added into an empty frame
    labels[1, 4:5, 5:7] = -1           # removed
    noun = layout.nouns[0]
    import dataclasses
    return dataclasses.replace(layout, refined=True, nouns=(dataclasses.replace(noun, labels=labels),))


def _capture(q, k, kc):
    targets = Targets(prompt="three cats", items=(CountTarget("cats", 3, (6, 10)),))
    reading = C.read_self_attention(q, k, HEADS, GRID)
    maps = C.read_cross_attention(q, kc, HEADS, GRID, {"cats": (3, 4)})
    return C.assemble_capture(reading, maps, targets, {"cats": (3, 4)}, step_index=1, total_steps=4)


def test_the_whole_method_follows_its_inputs_device(default_device_meta):
    q, k, kc, vc = _inputs()
    capture = _capture(q, k, kc)
    assert capture.self_features.device.type == "cpu"
    for mode in MODES:
        layout = infer_layout(capture, mode=mode)
        refine_layout(layout)
    for rule in M.RULES:
        plan = M.build_bias_plan(_edited_layout(capture), added_boost=2.0, modifier_positions={"cats": (5,)}, rule=rule)
        for form in M.FORMS:
            out = M.guided_cross_attention(q, kc, vc, HEADS, plan, 1.5, form=form)
            assert out.device.type == "cpu" and torch.isfinite(out).all()
        prepared = M.prepare_plan(plan, q.device)
        plain = M.plain_cross_attention(q, kc, vc, HEADS)
        M.rebias_rows(q, kc, vc, HEADS, prepared, 1.5, plain.clone(), "sparse")


def test_the_guard_fails_on_a_tensor_made_without_the_inputs_device(default_device_meta):
    q = torch.randn(4, 3, device="cpu")
    with pytest.raises((RuntimeError, NotImplementedError)):
        (q + torch.ones(3)).sum().item()     # what a forgotten device= looks like here


def test_the_sketch_is_the_same_numbers_on_every_device():
    """The seeded factorisation starts from the same Gaussian wherever it runs, so a GPU picks
    the same heads as the CPU."""
    cpu = C._sketch(30, 16, torch.device("cpu"))
    meta = C._sketch(30, 16, torch.device("meta"))
    assert meta.device.type == "meta" and cpu.shape == meta.shape
    gen = torch.Generator(device="cpu").manual_seed(C.SKETCH_SEED)
    assert torch.equal(cpu, torch.randn(30, 16, generator=gen, device="cpu"))


def test_records_cross_between_nodes_on_the_cpu():
    q, k, kc, _ = _inputs(1)
    capture = _capture(q.to(torch.float64), k.to(torch.float64), kc.to(torch.float64))
    assert all(t.device.type == "cpu" for t in (capture.self_features, capture.chosen_heads, capture.head_scores))
    assert capture.self_features.dtype == torch.float32
    assert all(n.cross_attention.device.type == "cpu" and n.cross_attention.dtype == torch.float32
               for n in capture.nouns)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_guided_rows_stay_close_to_float32(dtype):
    q, _, kc, vc = _inputs(2)
    capture = _capture(q, q, kc)
    for rule in M.RULES:
        plan = M.build_bias_plan(_edited_layout(capture), rule=rule)
        reference = M.guided_cross_attention(q, kc, vc, HEADS, plan, 1.5, form="dense")
        for form in M.FORMS:
            out = M.guided_cross_attention(q.to(dtype), kc.to(dtype), vc.to(dtype), HEADS, plan, 1.5, form=form)
            assert out.dtype == dtype
            assert (out.float() - reference).abs().max() < (2e-2 if dtype == torch.bfloat16 else 4e-3), (rule, form)
