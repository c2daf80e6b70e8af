"""A ComfyUI server as the CountBench runner sees it: its HTTP API and nothing else.

Routes used (ComfyUI's own, as every API client uses them): GET /system_stats (is it ComfyUI?),
GET /object_info (its nodes and the files its loaders offer), GET /queue (its load, other users'
jobs included), POST /prompt (queue a graph), GET /history/<id> (a job's outputs and status
messages), GET /view (an output file).  Standard library only, so the runner installs nothing.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Optional


class ServerDown(OSError):
    """The server did not answer (refused, reset, timed out): its jobs go to the others."""


class ServerRefused(ValueError):
    """The server answered, but cannot run the benchmark: what is missing, named."""


@dataclass
class JobStatus:
    """A queued job as /history and /queue tell it: still waiting or running, done, or failed."""
    state: str                                  # "waiting", "done", "error", "unknown"
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: Optional[float] = None             # execution start to end, from the status messages
    error: str = ""


class ComfyServer:
    """One ComfyUI server, by URL (e.g. http://127.0.0.1:8188)."""

    def __init__(self, url: str, timeout: float = 30.0, client_id: str = "numina-countbench") -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = client_id
        self._object_info: Optional[dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"ComfyServer({self.url})"

    # ------------------------------------------------------------------ HTTP
    def _open(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:     # an answer: the server is up
            body = e.read().decode(errors="replace")
            raise ServerRefused(f"{self.url}{urllib.parse.urlparse(request.full_url).path} answered "
                                f"{e.code}: {body[:2000]}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            raise ServerDown(f"{self.url} does not answer: {e}") from None

    def get(self, route: str) -> Any:
        data = self._open(urllib.request.Request(self.url + route))
        try:
            return json.loads(data)
        except ValueError:
            raise ServerRefused(f"{self.url}{route} did not answer JSON: is it a ComfyUI server?") from None

    def get_bytes(self, route: str) -> bytes:
        return self._open(urllib.request.Request(self.url + route))

    def post(self, route: str, payload: Any) -> Any:
        request = urllib.request.Request(self.url + route, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        return json.loads(self._open(request))

    # ------------------------------------------------------------------ what it is
    def system_stats(self) -> dict[str, Any]:
        try:
            stats = self.get("/system_stats")
        except ServerRefused as e:
            raise ServerRefused(f"{self.url} is not a ComfyUI server (GET /system_stats: {e})") from None
        if not isinstance(stats, dict) or "system" not in stats or "devices" not in stats:
            raise ServerRefused(f"{self.url} is not a ComfyUI server: /system_stats has no 'system' and 'devices'")
        return stats

    def object_info(self) -> dict[str, Any]:
        if self._object_info is None:
            self._object_info = self.get("/object_info")
        return self._object_info

    def check_graph(self, graph: dict[str, Any]) -> list[str]:
        """What this server lacks to run `graph`: node classes, and files (or any other option) a
        node's list input does not offer.  Empty when it can run it."""
        info = self.object_info()
        missing = []
        for node_id, node in sorted(graph.items()):
            kind = node["class_type"]
            if kind not in info:
                pack = " (the NUMINA pack: put this repository in ComfyUI/custom_nodes/ and restart)" \
                    if kind.startswith("Numina") else ""
                missing.append(f"node {kind}{pack}")
                continue
            spec = {**info[kind]["input"].get("required", {}), **info[kind]["input"].get("optional", {})}
            for name, value in node["inputs"].items():
                options = combo_options(spec.get(name))
                if options is not None and isinstance(value, str) and value not in options:
                    what = "file" if any(value.endswith(x) for x in (".safetensors", ".pt", ".pth", ".ckpt", ".gguf")) \
                        else "option"
                    missing.append(f"{kind}.{name} {what} {value!r} (it offers {sorted(options)[:8]}"
                                   f"{' ...' if len(options) > 8 else ''})")
        return missing

    # ------------------------------------------------------------------ jobs
    def load(self) -> int:
        """Jobs running or waiting on this server, whoever queued them."""
        q = self.get("/queue")
        return len(q.get("queue_running", [])) + len(q.get("queue_pending", []))

    def queued_ids(self) -> set[str]:
        q = self.get("/queue")
        return {item[1] for key in ("queue_running", "queue_pending") for item in q.get(key, [])}

    def queue(self, graph: dict[str, Any], prompt_id: Optional[str] = None) -> str:
        """POST /prompt; `prompt_id` chosen by the caller (ComfyUI takes it) so it can be recorded first."""
        payload = {"prompt": graph, "client_id": self.client_id}
        if prompt_id:
            payload["prompt_id"] = prompt_id
        answer = self.post("/prompt", payload)
        if answer.get("node_errors"):
            raise ServerRefused(f"{self.url} refused the graph: {json.dumps(answer['node_errors'])[:2000]}")
        return answer["prompt_id"]

    def status(self, prompt_id: str) -> JobStatus:
        """done / error from /history; waiting while /queue still holds it; unknown otherwise (a server
        restarted since: the job is gone)."""
        route = f"/history/{urllib.parse.quote(prompt_id)}"
        entry = self.get(route).get(prompt_id)
        if entry is None:
            if prompt_id in self.queued_ids():
                return JobStatus("waiting")
            entry = self.get(route).get(prompt_id)      # it may have finished between the two calls
            if entry is None:
                return JobStatus("unknown")
        status = entry.get("status", {})
        messages = {kind: data for kind, data in status.get("messages", [])}
        seconds = None
        if "execution_start" in messages and ("execution_success" in messages or "execution_error" in messages):
            end = messages.get("execution_success", messages.get("execution_error"))
            seconds = (end["timestamp"] - messages["execution_start"]["timestamp"]) / 1000.0
        if status.get("status_str") == "error" or "execution_error" in messages:
            e = messages.get("execution_error", {})
            return JobStatus("error", seconds=seconds, error=f"{e.get('node_type', '?')}: "
                             f"{e.get('exception_message', 'failed')}".strip())
        if status.get("completed"):
            return JobStatus("done", entry.get("outputs", {}), seconds)
        return JobStatus("waiting")

    def view(self, image: dict[str, str]) -> bytes:
        """An output file as /history names it ({filename, subfolder, type})."""
        query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                                        "type": image.get("type", "output")})
        return self.get_bytes(f"/view?{query}")


def combo_options(spec: Any) -> Optional[list[str]]:
    """The options of a list (combo) input in /object_info: [[...], {...}] (0.3.x) or
    ["COMBO", {"options": [...]}] (newer); None for any other input."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    if isinstance(spec[0], list):
        return [str(o) for o in spec[0]]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return [str(o) for o in spec[1].get("options", [])]
    return None
