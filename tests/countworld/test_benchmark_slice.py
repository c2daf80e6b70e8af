"""A small, fast slice of the CountWorld benchmark: its pieces work end to end (not its figures)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_benchmark_slice_runs_every_method_in_two_workers_and_reports(tmp_path):
    out = tmp_path / "slice.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "countworld_benchmark.py"), "--limit", "2", "--seeds", "1",
         "--steps", "6", "--jobs", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["summaries"]) == {"plain", "numina", "numina_published", "best_of_n"}
    for summary in report["summaries"].values():
        assert summary["videos"] == 2 and summary["prompts"] == 2
        assert 0.0 <= summary["count_accuracy"] <= 1.0
        assert summary["seconds_per_video"] > 0
    assert report["best_of_n_mean_n"] >= 1
    reads = report["layout_reads"]
    assert len(reads) == 2 and all(r["read"] for r in reads), "each NUMINA run must record the layout it read"
    assert report["numina_settings"]["reference_step"] == 3, "the tuned step 12 of 25, scaled to 6 steps"
    assert "K=" in done.stdout and "layout read" in done.stdout
