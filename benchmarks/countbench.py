"""CountBench on your own GPUs: the paper's evaluation, run through ComfyUI servers.

    python benchmarks/countbench.py --server http://127.0.0.1:8188 --server http://127.0.0.1:8189 \
        --workflow example_workflows/numina_wan21_t2v_1.3B.json --judge models/grounding-dino/grounding-dino-tiny \
        --methods plain,numina,checked_3 --server-counter grounding-dino-tiny --seeds 1 --out countbench_run

Every (method, prompt, seed) is one job: a graph made from the workflow template
(benchmarks/countbench_graphs.py) queued on a server with a free slot (POST /prompt), followed
through /history, its frames fetched from /view and judged here on every frame, as the paper
does (GroundingDINO, box threshold 0.32, text threshold 0.25; the CountWorld frame judge with
`--judge countworld` for the tests).  One server per GPU: ComfyUI runs one job at a time, so a
server is given at most `--depth` jobs (its own queue, other users' jobs included, counts).

Nothing is lost or run twice: `<out>/journal.jsonl` records every job queued (server, prompt id)
before it can finish, `<out>/results.jsonl` every judged video as it arrives.  A rerun with the same
--out skips what is judged, takes back the jobs still queued or finished on a live server, and
queues the rest.  A server that stops answering has its jobs queued on the others.  Before any
job is queued every server is checked: it must be ComfyUI and hold every node and file the graphs
name (the missing piece is named).

At the end: `<out>/report.json`, `<out>/report.md` (the paper's table: accuracy per method, gain over
plain with a 95 % bootstrap interval, by nouns per prompt and by count; model evaluations and
seconds per video) and `<out>/report.png`.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE, os.path.join(ROOT, "testing")):
    if p not in sys.path:
        sys.path.insert(0, p)

from comfy_client import ComfyServer, ServerDown, ServerRefused  # noqa: E402
from countbench_graphs import cost_node, load_template, method_graph, parse_counter  # noqa: E402

COUNTBENCH = os.path.join(HERE, "data", "countbench")
DEFAULT_WORKFLOW = os.path.join(ROOT, "example_workflows", "numina_wan21_t2v_1.3B.json")
RETRIES = 2          # a job that fails on a server is tried on another this many more times


# ----------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Item:
    index: int
    prompt: str
    counts: dict[str, int]


def load_items(source: str) -> list[Item]:
    """CountBench (a folder with prompts.txt and noun_counts.jsonl; `countbench` = the shipped copy) or
    CountWorld's prompt sets (`countworld-heldout`, `countworld-tuning`)."""
    if source.startswith("countworld-"):
        from countworld import world
        from countworld.prompts import heldout_prompts, tuning_prompts

        prompts = {"countworld-heldout": heldout_prompts, "countworld-tuning": tuning_prompts}[source]()
        return [Item(i, p, {t.noun: t.count for t in world.parse_prompt(p)}) for i, p in enumerate(prompts)]
    folder = COUNTBENCH if source == "countbench" else source
    with open(os.path.join(folder, "prompts.txt")) as f:
        prompts = [line.strip() for line in f if line.strip()]
    with open(os.path.join(folder, "noun_counts.jsonl")) as f:
        counts = [json.loads(line) for line in f if line.strip()]
    if len(prompts) != len(counts):
        raise SystemExit(f"{folder}: {len(prompts)} prompts but {len(counts)} noun_counts lines (they match 1:1)")
    return [Item(i, p, {str(k): int(v) for k, v in c.items()}) for i, (p, c) in enumerate(zip(prompts, counts))]


@dataclass(frozen=True)
class Job:
    method: str
    item: Item
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}/{self.seed}/{self.item.index}"


# ----------------------------------------------------------------------------- judging
def load_judge(spec: str, device: Optional[str] = None):
    """`countworld`: CountWorld's frame counter; otherwise a GroundingDINO folder (the paper's judge)."""
    if spec == "countworld":
        from countworld.frame_counter import CountWorldFrameCounter

        return CountWorldFrameCounter(), torch.device("cpu")
    from numina_ops.detector import load_grounding_dino

    judge = load_grounding_dino(spec)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return judge, target


def frames_from_pngs(files: Sequence[bytes]) -> torch.Tensor:
    """IMAGE [frames, H, W, 3] in 0..1 from SaveImage's PNGs, in frame order."""
    from PIL import Image

    pictures = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0 for b in files]
    return torch.from_numpy(np.stack(pictures))


def judge_video(judge, device, frames: torch.Tensor, counts: dict[str, int]):
    """The judge's CountCheck of the video: per counted noun its count in every frame, and the
    paper's frame scores."""
    from numina_ops.judge import check_frames
    from numina_ops.records import CountTarget, Targets

    targets = Targets(prompt="", items=tuple(CountTarget(noun=n, count=k, span=(0, 0), source="override")
                                             for n, k in counts.items()))
    return check_frames(frames, targets, judge, device)


# ----------------------------------------------------------------------------- bookkeeping
class Store:
    """results.jsonl (one judged video a line) and journal.jsonl (queued / dropped jobs), appended and
    flushed as things happen, so a stopped run loses nothing."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.results_path = os.path.join(folder, "results.jsonl")
        self.journal_path = os.path.join(folder, "journal.jsonl")
        self.results = {r["key"]: r for r in self._read(self.results_path)}
        self.in_flight: dict[str, dict[str, Any]] = {}      # key -> {server, prompt_id}
        for entry in self._read(self.journal_path):
            if entry["event"] == "queued":
                self.in_flight[entry["key"]] = entry
            elif entry["event"] == "dropped":
                self.in_flight.pop(entry["key"], None)
        for key in self.results:
            self.in_flight.pop(key, None)

    @staticmethod
    def _read(path: str) -> list[dict[str, Any]]:
        if not os.path.exists(path):
            return []
        rows = []
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:      # a line cut by a kill: the job is redone or taken back
                    pass
        return rows

    def _append(self, path: str, row: dict[str, Any]) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def queued(self, key: str, server: str, prompt_id: str) -> None:
        entry = {"event": "queued", "key": key, "server": server, "prompt_id": prompt_id, "time": time.time()}
        self._append(self.journal_path, entry)
        self.in_flight[key] = entry

    def dropped(self, key: str, why: str) -> None:
        self._append(self.journal_path, {"event": "dropped", "key": key, "why": why, "time": time.time()})
        self.in_flight.pop(key, None)

    def result(self, row: dict[str, Any]) -> None:
        self._append(self.results_path, row)
        self.results[row["key"]] = row
        self.in_flight.pop(row["key"], None)


# ----------------------------------------------------------------------------- running
class Runner:
    def __init__(self, servers: Sequence[ComfyServer], template_source: dict[str, Any], methods: Sequence[str],
                 store: Store, judge, judge_device, counter: Optional[dict[str, Any]] = None, depth: int = 2,
                 poll: float = 0.5, log: Callable[[str], None] = print) -> None:
        self.servers = list(servers)
        self.methods = list(methods)
        self.store, self.judge, self.judge_device = store, judge, judge_device
        self.counter, self.depth, self.poll, self.log = counter, depth, poll, log
        self.template = load_template(template_source, self.servers[0].object_info()
                                      if "nodes" in template_source else None)
        self.alive = {s.url: s for s in self.servers}
        self.failures: dict[str, int] = defaultdict(int)

    def graph(self, job: Job) -> dict[str, Any]:
        prefix = f"countbench/{job.method}_s{job.seed}_p{job.item.index:04d}"
        return method_graph(self.template, job.method, job.item.prompt, job.item.counts, job.seed, prefix,
                            self.counter)

    def preflight(self, jobs: Sequence[Job]) -> None:
        """Refuse, before anything is queued, a server that is not ComfyUI or lacks a node or file."""
        samples = {}
        for job in jobs:
            samples.setdefault(job.method, job)
        problems = []
        for server in self.servers:
            try:
                server.system_stats()
                missing = sorted({m for job in samples.values() for m in server.check_graph(
                    fill_defaults(self.graph(job), server.object_info()))})
            except (ServerDown, ServerRefused) as e:
                problems.append(str(e))
                continue
            if missing:
                problems.append(f"{server.url} lacks: " + "; ".join(missing))
        if problems:
            raise SystemExit("cannot run CountBench:\n  " + "\n  ".join(problems))

    def run(self, jobs: Sequence[Job]) -> None:
        by_key = {j.key: j for j in jobs}
        todo = [j for j in jobs if j.key not in self.store.results]
        pending = [j for j in todo if j.key not in self.store.in_flight]
        flying: dict[str, dict[str, Any]] = {}                    # key -> {server, prompt_id}
        for key, entry in list(self.store.in_flight.items()):      # taken back from an earlier run
            if key not in by_key:
                continue
            if entry["server"] in self.alive:
                flying[key] = entry
            else:
                self.store.dropped(key, f"server {entry['server']} is not in this run")
                pending.append(by_key[key])
        attempts: dict[str, int] = defaultdict(int)
        total, start, finished_here = len(todo), time.time(), 0
        if todo:
            self.log(f"{len(todo)} videos to make ({len(jobs) - len(todo)} already judged, {len(flying)} taken back "
                     f"from the servers) on {len(self.alive)} server(s)")
        while pending or flying:
            if not self.alive:
                raise SystemExit(f"every server is down; {len(pending) + len(flying)} videos not made (rerun with the "
                                 f"same --out to go on)")
            for url, server in list(self.alive.items()):          # fill the free slots
                if pending:
                    self._fill(url, server, pending, flying, by_key)
            for key, entry in list(flying.items()):               # follow the jobs
                server = self.alive.get(entry["server"])
                if server is None:
                    continue
                try:
                    status = server.status(entry["prompt_id"])
                    if status.state == "waiting":
                        continue
                    del flying[key]
                    if status.state == "done":
                        self._judge(by_key[key], server, entry["prompt_id"], status)
                        finished_here += 1
                        self._progress(len(self.store.results), len(jobs), finished_here, total, start)
                    else:
                        attempts[key] += 1
                        why = status.error or "the server no longer knows the job (restarted?)"
                        self.store.dropped(key, f"{entry['server']}: {why}")
                        if status.state == "error" and attempts[key] > RETRIES:
                            raise SystemExit(f"{key} failed {attempts[key]} times; last: {why}")
                        self.log(f"{key} failed on {entry['server']} ({why}); queued again")
                        pending.append(by_key[key])
                except ServerDown as e:
                    flying[key] = entry
                    self._down(entry["server"], str(e), flying, pending, by_key)
            time.sleep(self.poll)

    def _fill(self, url: str, server: ComfyServer, pending: list, flying: dict, by_key: dict) -> None:
        """Queue pending jobs on this server up to --depth jobs (its own queue counts).  The job's id is
        chosen here and journaled before the POST, so a run killed at any moment can take it back."""
        mine = sum(1 for e in flying.values() if e["server"] == url)
        try:
            free = self.depth - max(mine, server.load())
        except ServerDown as e:
            self._down(url, str(e), flying, pending, by_key)
            return
        while free > 0 and pending:
            job = pending.pop(0)
            prompt_id = str(uuid.uuid4())
            self.store.queued(job.key, url, prompt_id)
            flying[job.key] = self.store.in_flight[job.key]
            try:
                server.queue(fill_defaults(self.graph(job), server.object_info()), prompt_id)
            except ServerDown as e:
                self._down(url, str(e), flying, pending, by_key)
                return
            free -= 1

    def _down(self, url: str, why: str, flying: dict, pending: list, by_key: dict) -> None:
        """Three failed calls in a row (or a refused connection): the server's jobs go to the others."""
        self.failures[url] += 1
        if self.failures[url] < 3 and "refused" not in why.lower():
            return
        self.alive.pop(url, None)
        moved = [k for k, e in flying.items() if e["server"] == url]
        for key in moved:
            del flying[key]
            self.store.dropped(key, f"server {url} down")
            pending.insert(0, by_key[key])
        self.log(f"server {url} is down ({why}); {len(moved)} of its jobs go to the other servers")

    def _judge(self, job: Job, server: ComfyServer, prompt_id: str, status) -> None:
        self.failures[server.url] = 0
        images = status.outputs.get("countbench_frames", {}).get("images", [])
        if not images:
            raise SystemExit(f"{job.key}: the server returned no frames (outputs: {sorted(status.outputs)})")
        frames = frames_from_pngs([server.view(image) for image in images])
        check = judge_video(self.judge, self.judge_device, frames, job.item.counts)
        node = cost_node(self.template, job.method)
        if node is None:
            evaluations = int(self.template.settings["steps"])
        else:
            evaluations = int(status.outputs.get(node, {}).get("model_evaluations", [0])[0])
        self.store.result({"key": job.key, "method": job.method, "index": job.item.index, "seed": job.seed,
                           "prompt": job.item.prompt, "targets": job.item.counts,
                           "counts": {n: list(c) for n, c in zip(check.nouns, check.counts)},
                           "frame_scores": list(check.frame_scores), "score": check.score,
                           "frames": int(frames.shape[0]), "seconds": status.seconds, "evaluations": evaluations,
                           "server": server.url, "prompt_id": prompt_id})

    def _progress(self, done: int, all_jobs: int, here: int, total: int, start: float) -> None:
        elapsed = time.time() - start
        eta = elapsed / here * (total - here) if here else 0.0
        self.log(f"[{done}/{all_jobs}] {'#' * int(30 * done / all_jobs):30s} "
                 f"{elapsed / 60:5.1f} min, ETA {eta / 60:5.1f} min")


def fill_defaults(graph: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """Required widget inputs a graph leaves out, at the server's defaults (ComfyUI refuses a graph
    without them)."""
    for node in graph.values():
        info = object_info.get(node["class_type"])
        if info is None:
            continue
        for name, spec in info["input"].get("required", {}).items():
            if name not in node["inputs"] and isinstance(spec, (list, tuple)) and len(spec) > 1 \
                    and isinstance(spec[1], dict) and "default" in spec[1]:
                node["inputs"][name] = spec[1]["default"]
    return graph


# ----------------------------------------------------------------------------- report
def video_results(rows: Iterable[dict[str, Any]]):
    from countworld.evaluate import VideoResult

    return [VideoResult(prompt=r["prompt"], seed=r["seed"], targets=tuple(r["targets"].items()),
                        counts=r["counts"], seconds=float(r["seconds"] or 0.0), evaluations=int(r["evaluations"]))
            for r in rows]


def summarise(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Per method: the published metric and its breakdowns (countworld.evaluate.summarise, the same
    rule), and the gain over plain with a bootstrap interval over prompts (paired videos)."""
    from countworld.evaluate import summarise as summarise_videos
    from countworld_benchmark import bootstrap_gain

    by_method: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for r in sorted(rows, key=lambda r: (r["index"], r["seed"])):
        if r["method"] in by_method:
            by_method[r["method"]].append(r)
    summaries = {m: summarise_videos(video_results(rs)) for m, rs in by_method.items() if rs}
    gains = {}
    if "plain" in summaries:
        plain = {(r["index"], r["seed"]): r for r in by_method["plain"]}
        for m in summaries:
            if m == "plain":
                continue
            paired = [(r, plain[(r["index"], r["seed"])]) for r in by_method[m] if (r["index"], r["seed"]) in plain]
            if paired:
                gains[m] = bootstrap_gain(video_results(a for a, _ in paired), video_results(b for _, b in paired))
    return {"summaries": summaries, "gain_over_plain": gains}


def markdown(report: dict[str, Any]) -> str:
    s, g = report["summaries"], report["gain_over_plain"]
    nouns = sorted({int(k) for v in s.values() for k in v["accuracy_by_nouns_per_prompt"]})
    counts = sorted({int(k) for v in s.values() for k in v["exact_by_target_count"]})
    lines = [f"CountBench through ComfyUI: {report['prompts']} prompts x {report['seeds']} seed(s), "
             f"{report['workflow']}, judge {report['judge']}, {report['date']}", "",
             "| method | accuracy | gain over plain (95 % interval) | " + " | ".join(f"{n} noun{'s' * (n > 1)}"
                                                                          for n in nouns)
             + " | model evaluations / video | seconds / video |",
             "|---" * (5 + len(nouns)) + "|"]
    for m, v in s.items():
        gain = g.get(m)
        by_n = v["accuracy_by_nouns_per_prompt"]
        lines.append(f"| {m} | {v['count_accuracy']:.3f} | "
                     + (f"{100 * gain['gain']:+.1f} ({100 * gain['low']:+.1f}, {100 * gain['high']:+.1f})" if gain else "")
                     + " | " + " | ".join(f"{by_n.get(n, by_n.get(str(n), float('nan'))):.3f}" for n in nouns)
                     + f" | {v['evaluations_per_video']:.1f} | {v['seconds_per_video']:.1f} |")
    lines += ["", "Exact-count rate by asked count (noun-frames):", "",
              "| method | " + " | ".join(f"{k}" for k in counts) + " |", "|---" * (1 + len(counts)) + "|"]
    for m, v in s.items():
        e = v["exact_by_target_count"]
        lines.append(f"| {m} | " + " | ".join(f"{e.get(k, e.get(str(k), float('nan'))):.2f}" for k in counts) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["summaries"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for m, v in s.items():
        left.scatter(v["evaluations_per_video"], v["count_accuracy"], s=50)
        left.annotate(m, (v["evaluations_per_video"], v["count_accuracy"]), fontsize=8, xytext=(4, 4),
                      textcoords="offset points")
    left.set_xlabel("model evaluations per video")
    left.set_ylabel("count accuracy (paper's metric)")
    counts = sorted({int(k) for v in s.values() for k in v["exact_by_target_count"]})
    width = 0.8 / max(1, len(s))
    for i, (m, v) in enumerate(s.items()):
        e = v["exact_by_target_count"]
        right.bar([c + (i - (len(s) - 1) / 2) * width for c in counts],
                  [e.get(c, e.get(str(c), 0.0)) for c in counts], width, label=m)
    right.set_xlabel("asked count")
    right.set_ylabel("exact-count rate")
    right.set_xticks(counts)
    right.legend(fontsize=8)
    fig.suptitle(f"CountBench through ComfyUI ({report['prompts']} prompts, judge {report['judge']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(store: Store, jobs: Sequence[Job], methods: Sequence[str], args: argparse.Namespace) -> dict:
    rows = [store.results[j.key] for j in jobs if j.key in store.results]
    report = {"date": time.strftime("%Y-%m-%d"), "workflow": os.path.basename(args.workflow), "judge": args.judge,
              "servers": args.server, "prompts": len({j.item.index for j in jobs}), "seeds": args.seeds,
              "methods": list(methods), "videos": len(rows), **summarise(rows, methods)}
    with open(os.path.join(store.folder, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(os.path.join(store.folder, "report.md"), "w") as f:
        f.write(table)
    plot(report, os.path.join(store.folder, "report.png"))
    return report


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", required=True, help="a ComfyUI URL (repeat: one per GPU)")
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW, help="a NUMINA workflow (UI or API format)")
    parser.add_argument("--prompts", default="countbench", help="countbench (shipped), a folder with prompts.txt "
                        "and noun_counts.jsonl, countworld-heldout or countworld-tuning")
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts")
    parser.add_argument("--methods", default="plain,numina", help="plain, numina, checked_N (comma-separated)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 added to the workflow's seed")
    parser.add_argument("--judge", default="countworld",
                        help="a GroundingDINO folder (the paper's judge) or countworld (tests)")
    parser.add_argument("--judge-device", default=None, help="default: cuda when there is one")
    parser.add_argument("--server-counter", default="", help="checked_N's counter on the servers: a "
                        "models/grounding-dino folder name, or a counter loader node as JSON")
    parser.add_argument("--depth", type=int, default=2, help="jobs queued per server at a time")
    parser.add_argument("--out", required=True, help="results folder (rerun with the same one to resume)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between /history polls")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    items = load_items(args.prompts)
    if args.limit:
        items = items[: args.limit]
    with open(args.workflow) as f:
        template_source = json.load(f)
    servers = [ComfyServer(url) for url in args.server]
    store = Store(args.out)
    judge, judge_device = load_judge(args.judge, args.judge_device)
    try:
        runner = Runner(servers, template_source, methods, store, judge, judge_device,
                        parse_counter(args.server_counter), args.depth, args.poll)
    except (ServerDown, ServerRefused) as e:      # a UI workflow is converted with the first server's nodes
        raise SystemExit(f"cannot read the first server's nodes to convert {args.workflow}: {e}") from None
    base_seed = int(runner.template.settings["seed"])
    jobs = [Job(m, item, base_seed + s) for s in range(args.seeds) for item in items for m in methods]
    runner.preflight(jobs)
    runner.run(jobs)
    report = write_report(store, jobs, methods, args)
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
