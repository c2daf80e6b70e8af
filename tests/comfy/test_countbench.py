"""CountBench through ComfyUI servers (benchmarks/countbench.py), on two real `main.py --cpu` servers
on 127.0.0.1: CountWorld prompts, the CountWorld model, the CountWorld frame judge.

The runner's figures equal the in-process benchmark's for the same prompts and seeds; a server
killed mid-run loses nothing; a run killed and restarted makes no video twice; a server without
the pack, a model file, or ComfyUI itself is refused before any job is queued."""
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from numina_dev.comfy_server import ComfyServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

STEPS = 8
PROMPTS = 3
METHODS = "plain,numina,checked_2"
SERVER_COUNTER = json.dumps({"class_type": "NuminaCountWorldCounterLoader", "inputs": {"error_rate": 0.0,
                                                                                      "error_seed": 0}})


def countworld_template(unet: str = "countworld_wan21_t2v.safetensors") -> dict:
    """The in-process benchmark's NUMINA graph (nodes' defaults), its latent decoded by the CountWorld
    VAE (code pictures, as the frame judge reads them): an API-format template."""
    import countworld_benchmark as bench

    graph = bench.numina_graph("three red circles", 0, STEPS, 1.0, "unused", bench.PRESETS["defaults"], unet)
    del graph["11"]
    graph["12"] = {"class_type": "NuminaCountWorldVAE", "inputs": {"upscale": 8}}
    graph["13"] = {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["12", 0]}}
    return graph


@pytest.fixture(scope="module")
def servers():
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with ComfyServer() as a, ComfyServer() as b:
            yield a, b
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def template_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("countbench") / "countworld_template.json"
    path.write_text(json.dumps(countworld_template()))
    return str(path)


def runner_argv(urls, template, out, methods=METHODS, prompts=PROMPTS):
    argv = []
    for url in urls:
        argv += ["--server", url]
    return argv + ["--workflow", template, "--prompts", "countworld-heldout", "--limit", str(prompts),
                   "--methods", methods, "--seeds", "1", "--judge", "countworld", "--server-counter", SERVER_COUNTER,
                   "--out", str(out), "--poll", "0.2"]


def executions(server, prompt_ids):
    """How many times each job ran on this server, among the jobs these prompt ids name (its
    /history, by the frames' file prefix)."""
    found = {}
    for prompt_id, entry in server.get("/history?max_items=1000").items():
        node = entry["prompt"][2].get("countbench_frames")
        if node and prompt_id in prompt_ids:
            key = prefix_key(node["inputs"]["filename_prefix"])
            found[key] = found.get(key, 0) + 1
    return found


def video_frames(latent_counts: list) -> list:
    return latent_counts[:1] + [c for c in latent_counts[1:] for _ in range(4)]


def prefix_key(prefix: str) -> str:
    method, seed, index = prefix.split("/")[-1].rsplit("_", 2)
    return f"{method}/{int(seed[1:])}/{int(index[1:])}"


def test_the_runners_table_equals_the_in_process_benchmark(servers, template_file, tmp_path):
    import countbench

    report = countbench.main(runner_argv([s.url for s in servers], template_file, tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == PROMPTS * 3 and {r["server"] for r in rows} == {s.url for s in servers}, \
        "every job is judged once, and both servers got work"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "countworld_benchmark.py"), "--limit", str(PROMPTS),
         "--seeds", "1", "--steps", str(STEPS), "--methods", "plain,numina,checked_2", "--json",
         str(tmp_path / "bench.json")], capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    for method in ("plain", "numina", "checked_2"):
        ours = sorted((r for r in rows if r["method"] == method), key=lambda r: r["index"])
        theirs = bench["videos"][method]
        assert [r["prompt"] for r in ours] == [v["prompt"] for v in theirs]
        # the benchmark counts latent frames, the runner (as the paper) every decoded frame: latent
        # frame 0 is video frame 0, each later one four video frames (Wan's temporal stride)
        expected = [{noun: video_frames(v["counts"][noun]) for noun in r["targets"]} for r, v in zip(ours, theirs)]
        assert [r["counts"] for r in ours] == expected, method
        assert [r["evaluations"] for r in ours] == [v["evaluations"] for v in theirs], method
        accuracy = sum(sum(sum(c[f] == k for n, c in e.items() for k in [r["targets"][n]]) / len(e)
                           for f in range(5)) / 5 for e, r in zip(expected, ours)) / len(ours)
        assert report["summaries"][method]["count_accuracy"] == pytest.approx(accuracy)
    table = (tmp_path / "run" / "report.md").read_text()
    assert "| plain |" in table and "| numina |" in table and "gain over plain" in table
    assert (tmp_path / "run" / "report.png").stat().st_size > 0


def test_a_server_killed_mid_run_loses_nothing(template_file, tmp_path):
    import countbench
    from comfy_client import ComfyServer as Client

    os.environ["OMP_NUM_THREADS"] = "1"
    with ComfyServer() as doomed, ComfyServer() as healthy:
        killed = []

        def log(message):
            if message.startswith("[") and not killed:      # the first judged video: kill one server
                os.killpg(doomed.process.pid, signal.SIGKILL)
                killed.append(message)

        args = countbench.parse_args(runner_argv([doomed.url, healthy.url], template_file, tmp_path / "run",
                                                 methods="plain,numina"))
        store = countbench.Store(args.out)
        judge, device = countbench.load_judge("countworld")
        runner = countbench.Runner([Client(doomed.url), Client(healthy.url)], countworld_template(),
                                   ["plain", "numina"], store, judge, device,
                                   countbench.parse_counter(args.server_counter), depth=2, poll=0.2, log=log)
        jobs = [countbench.Job(m, item, 0) for item in countbench.load_items("countworld-heldout")[:PROMPTS]
                for m in ("plain", "numina")]
        runner.run(jobs)
        assert killed, "the run never got to kill the server"
        assert sorted(store.results) == sorted(j.key for j in jobs)
        assert doomed.url not in runner.alive
        late = [r for r in store.results.values() if r["server"] == healthy.url]
        assert len(late) >= len(jobs) - 1, "the killed server's jobs were made on the other one"


def test_a_run_killed_and_restarted_makes_no_video_twice(servers, template_file, tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, os.path.join(ROOT, "benchmarks", "countbench.py"),
            *runner_argv([s.url for s in servers], template_file, out, methods="plain,numina", prompts=4)]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results, journal = out / "results.jsonl", out / "journal.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 2):
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    judged = results.read_text().count("\n")
    in_flight = {json.loads(line)["key"] for line in journal.read_text().splitlines()} - \
        {json.loads(line)["key"] for line in results.read_text().splitlines()}
    assert 2 <= judged < 8 and in_flight, "killed mid-run, with jobs still on the servers"
    second = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == sorted({r["key"] for r in rows}) and len(rows) == 8
    ours = {json.loads(line)["prompt_id"] for line in journal.read_text().splitlines() if '"queued"' in line}
    made = {}
    for server in servers:          # (the servers also ran the other tests' jobs: only this run's ids count)
        for key, n in executions(server, ours).items():
            made[key] = made.get(key, 0) + n
    assert made == {r["key"]: 1 for r in rows}, "every video was generated exactly once"


def test_servers_that_cannot_run_it_are_refused_before_anything_is_queued(servers, tmp_path):
    import countbench

    missing_model = tmp_path / "missing.json"
    missing_model.write_text(json.dumps(countworld_template("wan2.1_t2v_1.3B_fp16.safetensors")))
    with pytest.raises(SystemExit, match=r"lacks: .*UNETLoader.unet_name file 'wan2.1_t2v_1.3B_fp16.safetensors'"):
        countbench.main(runner_argv([servers[0].url], str(missing_model), tmp_path / "a", methods="plain"))
    assert servers[0].get("/queue")["queue_pending"] == []

    class NotComfy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotComfy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    template = tmp_path / "t.json"
    template.write_text(json.dumps(countworld_template()))
    try:
        with pytest.raises(SystemExit, match="is not a ComfyUI server"):
            countbench.main(runner_argv([f"http://127.0.0.1:{httpd.server_port}"], str(template), tmp_path / "b",
                                        methods="plain"))
    finally:
        httpd.shutdown()

    import countbench_graphs

    no_pack = {k: v for k, v in servers[0].get("/object_info").items() if not k.startswith("Numina")}
    graph = countbench_graphs.method_graph(countbench_graphs.load_template(countworld_template()), "numina",
                                           "two red circles", {"circles": 2}, 0, "x")
    from comfy_client import ComfyServer as Client

    client = Client(servers[0].url)
    client._object_info = no_pack
    assert any("NuminaAttentionCapture (the NUMINA pack" in m for m in client.check_graph(graph))


def test_the_shipped_wan_workflow_is_the_template_and_the_server_names_the_missing_wan_files(servers, tmp_path):
    """The default template is the shipped Wan 2.1 1.3B workflow (UI format), converted with the
    server's /object_info; a server without the Wan files is refused with each file named."""
    import countbench
    import countbench_graphs
    from comfy_client import ComfyServer as Client

    with pytest.raises(SystemExit) as refused:
        countbench.main(["--server", servers[0].url, "--methods", "plain,numina,checked_3", "--server-counter",
                         "grounding-dino-tiny", "--limit", "1", "--out", str(tmp_path / "a")])
    message = str(refused.value)
    for name in ("wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                 "wan_2.1_vae.safetensors"):
        assert name in message
    # (the counter loader always offers GroundingDINO tiny / base, so a missing detector folder is named
    # by the first checked job's error, with its download command)
    assert not (tmp_path / "a" / "journal.jsonl").exists(), "nothing was queued"

    with open(countbench.DEFAULT_WORKFLOW) as f:
        template = countbench_graphs.load_template(json.load(f), Client(servers[0].url).object_info())
    item = countbench.load_items("countbench")[1]                   # 'A single tiger walking through a jungle.'
    graphs = {m: countbench_graphs.method_graph(template, m, item.prompt, item.counts, 7, "p",
                                                countbench_graphs.parse_counter("grounding-dino-tiny"))
              for m in ("plain", "numina", "checked_3")}
    kinds = {m: sorted(n["class_type"] for n in g.values()) for m, g in graphs.items()}
    assert "KSampler" in kinds["plain"] and not any(k.startswith("Numina") for k in kinds["plain"])
    assert {"NuminaAttentionCapture", "NuminaSampler", "SaveImage"} <= set(kinds["numina"])
    assert {"NuminaCheckedSampler", "NuminaCounterLoader"} <= set(kinds["checked_3"])
    assert "SaveVideo" not in kinds["numina"], "frames are written losslessly for the judge"
    plain_sampler = next(n for n in graphs["plain"].values() if n["class_type"] == "KSampler")["inputs"]
    capture = graphs["numina"][template.capture]["inputs"]
    assert (plain_sampler["seed"], plain_sampler["steps"], plain_sampler["cfg"]) == (7, capture["steps"], capture["cfg"])
    assert capture["prompt"] == item.prompt and graphs["numina"][template.positive]["inputs"]["text"] == item.prompt
