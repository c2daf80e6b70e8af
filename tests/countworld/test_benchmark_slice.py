"""A small, fast slice of the CountWorld benchmark: its pieces work end to end (not its figures)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def _slice(tmp_path, *options):
    """The benchmark on 2 prompts x 1 seed at 6 steps: (the finished process, its report JSON)."""
    out = tmp_path / "slice.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "countworld_benchmark.py"), "--limit", "2", "--seeds", "1",
         "--steps", "6", *options, "--json", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


def test_benchmark_slice_runs_every_method_in_two_workers_and_reports(tmp_path):
    done, report = _slice(tmp_path, "--jobs", "2")
    assert set(report["summaries"]) == {"plain", "numina", "numina_published", "best_of_2", "best_of_3",
                                        "best_of_4", "numina_best_of_2"}
    for name, summary in report["summaries"].items():
        assert summary["videos"] == 2 and summary["prompts"] == 2
        assert 0.0 <= summary["count_accuracy"] <= 1.0
        assert summary["seconds_per_video"] > 0
    cost = {name: s["evaluations_per_video"] for name, s in report["summaries"].items()}
    assert cost["plain"] == 6 and [cost[f"best_of_{n}"] for n in (2, 3, 4)] == [12, 18, 24]
    assert 6 <= cost["numina"] <= 6 + 4 + 6, "a NUMINA run costs N, or k + 1 + N evaluations when it guides"
    assert cost["numina_best_of_2"] >= 2 * 6
    for n in (2, 3, 4):   # an oracle pick over more draws of the same seeds is never worse
        assert report["summaries"][f"best_of_{n}"]["count_accuracy"] >= report["summaries"]["plain"]["count_accuracy"]
    gain = report["gain_over_plain"]["numina"]["published_metric"]
    assert gain["low"] <= gain["gain"] <= gain["high"]
    reads = report["layout_reads"]
    assert len(reads) == 2 and all(r["read"] for r in reads), "each NUMINA run must record the layout it read"
    assert report["method_settings"]["numina"]["bias"] == "calibrated"
    assert report["method_settings"]["numina_published"]["bias"] == "published"
    assert "K=" in done.stdout and "layout read" in done.stdout and "bootstrap" in done.stdout


def test_the_benchmarks_default_preset_is_what_the_nodes_default_to(comfy_booted):
    """'numina' in the benchmark is what a user gets by dropping the nodes in: every preset value
    is the node input's own default."""
    from numina_dev import comfy_runtime

    import countworld_benchmark as bench

    defaults = {}
    for node in ("NuminaAttentionCapture", "NuminaLayoutInfer", "NuminaSampler"):
        schema = getattr(comfy_runtime.pack_module(node), node).define_schema()
        defaults.update({i.id: i.default for i in schema.inputs if getattr(i, "default", None) is not None})
    for key, value in bench.PRESETS["defaults"].items():
        assert defaults[key] == value, key


def test_bootstrap_interval_pairs_videos_and_covers_the_mean():
    from countworld.evaluate import VideoResult

    import countworld_benchmark as bench

    def video(prompt, seed, count):
        return VideoResult(prompt, seed, (("circles", 2),), {"circles": [count, count]}, 1.0)
    base = [video(f"p{i}", s, 1) for i in range(10) for s in range(2)]
    better = [video(f"p{i}", s, 2 if i < 5 else 1) for i in range(10) for s in range(2)]
    gain = bench.bootstrap_gain(better, base)
    assert gain["gain"] == pytest.approx(0.5) and gain["low"] < 0.5 < gain["high"] and gain["prompts"] == 10
    assert bench.bootstrap_gain(base, base) == {"gain": 0.0, "low": 0.0, "high": 0.0, "prompts": 10}
    with pytest.raises(ValueError):
        bench.bootstrap_gain(better[::-1], base)


def test_best_of_n_at_a_cost_mixes_the_two_neighbouring_n():
    import countworld_benchmark as bench

    summaries = {"plain": {"evaluations_per_video": 25.0, "count_accuracy": 0.3},
                 "best_of_2": {"evaluations_per_video": 50.0, "count_accuracy": 0.4},
                 "best_of_3": {"evaluations_per_video": 75.0, "count_accuracy": 0.45},
                 "numina": {"evaluations_per_video": 35.0, "count_accuracy": 0.9}}
    assert bench.best_of_at_cost(summaries, 35.0) == pytest.approx(0.34)
    assert bench.best_of_at_cost(summaries, 62.5) == pytest.approx(0.425)
    assert bench.best_of_at_cost(summaries, 25.0) == pytest.approx(0.3)
    assert bench.best_of_at_cost(summaries, 80.0) is None


def test_benchmark_slice_runs_the_checked_sampler_with_both_judges(tmp_path):
    """The closed loop through the real graph (NuminaCheckedSampler, the CountWorld VAE and judge):
    at most N whole NUMINA runs a video, N = 3 costing at least what N = 2 costs."""
    _, report = _slice(tmp_path, "--methods", "plain,checked_2,checked_3,checked_erring_3")
    summaries = report["summaries"]
    assert set(summaries) == {"plain", "checked_2", "checked_3", "checked_erring_3"}
    cost = {name: s["evaluations_per_video"] for name, s in summaries.items()}
    one_run = 6 + 4 + 6                                   # k + 1 + N at most
    assert 6 <= cost["checked_2"] <= cost["checked_3"] <= 3 * one_run and cost["checked_erring_3"] <= 3 * one_run


def test_fewer_tries_are_the_first_tries_of_a_longer_run():
    """checked_2 is read off a 3-try run: the best of its first two tries, their costs summed."""
    import torch

    import countworld_benchmark as bench
    from numina_ops.judge import CheckedRun, CountCheck, TryResult

    def attempt(seed, score_counts, cost):
        check = CountCheck(nouns=("circles",), targets=(2,), counts=(tuple(score_counts),),
                           boxes=tuple(((),) for _ in score_counts), judge="test")
        return TryResult(seed=seed, check=check, evaluations=cost, guided=True, samples=torch.full((1,), seed))
    run = CheckedRun(tries=(attempt(0, (1, 2), 10), attempt(1, (2, 2), 11), attempt(2, (2, 2), 12)), max_tries=3)
    samples, cost = bench.checked_prefix(run, 2)
    assert samples.item() == 1 and cost == 21
    samples, cost = bench.checked_prefix(run, 1)
    assert samples.item() == 0 and cost == 10
    samples, cost = bench.checked_prefix(run, 3)
    assert samples.item() == 1 and cost == 33, "the earliest of equal scores is kept"


def test_benchmark_slice_samples_at_four_steps_with_the_distillation_lora(tmp_path):
    """Where users sample: the model's step-distillation LoRA through LoraLoaderModelOnly, shift 5,
    4 steps, in the plain run and inside the NUMINA graph; a NUMINA run costs 4 or k + 1 + 4."""
    from countworld.distill import lora_name

    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "countworld_benchmark.py"), "--limit", "2", "--seeds", "1",
         "--steps", "4", "--shift", "5", "--lora", "auto", "--methods", "plain,numina", "--json",
         str(tmp_path / "fast.json")], capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "fast.json").read_text())
    assert report["lora"] == lora_name("countworld_wan21_t2v.safetensors") and report["shift"] == 5.0
    cost = {name: s["evaluations_per_video"] for name, s in report["summaries"].items()}
    assert cost["plain"] == 4 and 4 <= cost["numina"] <= 4 + 3 + 4
    assert "LoRA countworld_wan21_t2v_lightx2v_4step_lora.safetensors" in done.stdout
