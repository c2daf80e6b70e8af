"""A real ComfyUI server on 127.0.0.1 for the tests: started and stopped by its PID."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from . import comfy_runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """real_frontend: serve the installed comfyui-frontend-package as main.py does for users
    (otherwise a dummy page via --front-end-root); args: more main.py arguments."""

    def __init__(self, real_frontend: bool = False, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.frontend = None
        if not real_frontend:
            self.frontend = tempfile.mkdtemp(prefix="numina_frontend_")
            with open(os.path.join(self.frontend, "index.html"), "w") as f:
                f.write("<html><body>NUMINA tests</body></html>")
        self.args = tuple(args)
        self.log = tempfile.NamedTemporaryFile(prefix="numina_server_", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "ComfyServer":
        path = comfy_runtime.comfyui_path()
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             *(("--front-end-root", self.frontend) if self.frontend else ()), "--disable-api-nodes",
             *self.args],
            cwd=path, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.read_log()}")
            try:
                self.get("/system_stats")
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"ComfyUI did not answer within 120 s:\n{self.read_log()}")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def read_log(self) -> str:
        with open(self.log.name) as f:
            return f.read()[-4000:]

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.loads(r.read())

    def post(self, route: str, payload) -> dict:
        request = urllib.request.Request(self.url + route, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def run(self, graph: dict, timeout: float = 300) -> dict:
        """POST a graph to /prompt and wait for its /history entry."""
        prompt_id = self.post("/prompt", {"prompt": graph, "client_id": "numina-tests"})["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                return history[prompt_id]
            if prompt_id in history and history[prompt_id].get("status", {}).get("status_str") == "error":
                return history[prompt_id]
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.read_log()}")
