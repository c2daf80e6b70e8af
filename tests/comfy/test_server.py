"""The pack inside a real `main.py --cpu` server on 127.0.0.1, as users run ComfyUI."""
import urllib.parse
import urllib.request

import pytest

from numina_dev.graphs import plain_graph


def test_server_lists_the_pack_nodes(server):
    info = server.get("/object_info")
    assert "NuminaTinyTextEncoderLoader" in info
    assert info["NuminaTinyTextEncoderLoader"]["category"] == "NUMINA/testing"


def test_server_runs_a_tiny_wan_graph(server):
    """The plain tiny-Wan graph (loader -> text -> latent -> KSampler -> decode -> save), once: through
    the server's prompt executor, its frames saved where /view serves them."""
    entry = server.run(plain_graph(prefix="numina_server_graph"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["9"]["images"]
    assert len(images) == 5  # 5 frames from a 2-frame latent (Wan's 4x temporal stride)
    for image in images:
        query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"],
                                        "type": image["type"]})
        with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=30) as response:
            assert response.headers["Content-Type"] == "image/png" and len(response.read()) > 0
