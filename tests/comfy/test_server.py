"""The pack inside a real `main.py --cpu` server on 127.0.0.1, as users run ComfyUI."""
import pytest

from numina_dev.comfy_server import ComfyServer
from numina_dev.graphs import plain_graph


@pytest.fixture(scope="module")
def server():
    with ComfyServer() as s:
        yield s


def test_server_lists_the_pack_nodes(server):
    info = server.get("/object_info")
    assert "NuminaTinyTextEncoderLoader" in info
    assert info["NuminaTinyTextEncoderLoader"]["category"] == "NUMINA/testing"


def test_server_runs_a_tiny_wan_graph(server):
    entry = server.run(plain_graph(prefix="numina_server_graph"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert len(entry["outputs"]["9"]["images"]) == 5
