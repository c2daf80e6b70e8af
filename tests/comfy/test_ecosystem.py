"""ComfyUI ecosystem conventions: a help page for every node where ComfyUI's frontend looks for it,
search aliases where the Schema supports them, the ComfyUI version the pack needs in pyproject.toml.

Where the frontend looks (ComfyUI_frontend, src/services/nodeHelpService.ts and
src/workbench/utils/nodeHelpUtil.ts; docs.comfy.org/custom-nodes/help_page): for a node whose
`python_module` is `custom_nodes.<pack>[@version]...` it fetches
`/extensions/<pack>/docs/<node id>/<locale>.md`, then `/extensions/<pack>/docs/<node id>.md`, and
ignores a text/html answer; ComfyUI serves a pack's WEB_DIRECTORY at `/extensions/<pack>/`."""
import dataclasses
import os
import re
import urllib.error
import urllib.request

import pytest

from numina_dev import ROOT

SEARCH_WORDS = ("count objects", "number of objects", "object count")


def help_url(name: str, python_module: str) -> str:
    """The frontend's fallback (non-locale) help URL of a custom node."""
    parts = python_module.split(".")
    assert len(parts) >= 2 and parts[0] == "custom_nodes", python_module
    return f"/extensions/{parts[1].split('@')[0]}/docs/{name}.md"


@pytest.fixture(scope="module")
def numina_nodes(comfy):
    """The NUMINA pack's registered nodes (not the testing pack's): {node id: class}."""
    module = comfy["NuminaAttentionCapture"].RELATIVE_PYTHON_MODULE
    found = {name: cls for name, cls in comfy.items() if getattr(cls, "RELATIVE_PYTHON_MODULE", None) == module}
    assert {"NuminaAttentionCapture", "NuminaLayoutInfer", "NuminaLayoutRefine", "NuminaCrossAttnGuide",
            "NuminaSampler", "NuminaLayoutToMask", "NuminaMaskToLayout"} <= set(found)
    return found


def page_file(name: str, cls) -> str:
    """The file ComfyUI would serve at the node's help URL."""
    import nodes

    url = help_url(name, cls.RELATIVE_PYTHON_MODULE)
    pack = url.split("/")[2]
    assert pack in nodes.EXTENSION_WEB_DIRS, f"ComfyUI serves no web folder for the pack {pack!r} (WEB_DIRECTORY)"
    return os.path.join(nodes.EXTENSION_WEB_DIRS[pack], "docs", f"{name}.md")


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {title}' section"
    return match.group(1)


def test_every_node_has_a_help_page_where_the_frontend_looks(numina_nodes):
    for name, cls in numina_nodes.items():
        path = page_file(name, cls)
        assert os.path.isfile(path), f"{name}: no help page at {path}"
        assert os.path.realpath(path) == os.path.realpath(os.path.join(ROOT, "web", "docs", f"{name}.md"))


def test_each_page_names_the_node_and_every_input_and_output(numina_nodes):
    for name, cls in numina_nodes.items():
        schema = cls.define_schema()
        text = open(page_file(name, cls), encoding="utf-8").read()
        assert text.startswith(f"# {schema.display_name}\n"), name
        inputs, outputs = section(text, "Inputs"), section(text, "Outputs")
        for socket in schema.inputs:
            assert re.search(rf"\b{socket.id}\b", inputs), f"{name}: input {socket.id} is not described"
        for socket in schema.outputs:
            shown = socket.display_name or socket.io_type
            assert re.search(rf"\b{re.escape(shown)}\b", outputs), f"{name}: output {shown} is not described"
        for title in ("Typical wiring", "Common errors and fixes"):
            section(text, title)


def test_help_pages_are_published_to_the_registry():
    """`comfy node publish` drops .comfyignore's patterns (tests/test_published_files.py): never web/docs."""
    import subprocess

    ignored = subprocess.run(["git", "-C", ROOT, "-c", "core.excludesFile=.comfyignore", "check-ignore", "--no-index",
                              "web/docs/NuminaAttentionCapture.md"], capture_output=True, text=True)
    assert ignored.returncode == 1, f"web/docs is excluded from the published pack: {ignored.stdout}"


def test_search_aliases_where_the_schema_has_them(numina_nodes):
    from comfy_api.latest import io

    supported = "search_aliases" in {f.name for f in dataclasses.fields(io.Schema)}
    for name, cls in numina_nodes.items():
        info = cls.GET_NODE_INFO_V1()
        if supported:          # ComfyUI 0.33
            assert set(SEARCH_WORDS) <= set(info["search_aliases"]), name
        else:                  # 0.3.75: no such field, and the Schema was built without it
            assert not info.get("search_aliases"), name


def test_pyproject_names_the_comfyui_the_pack_needs():
    """As ComfyUI's own pyproject reader (comfy_config) and the registry read it: [tool.comfy]."""
    from comfy_config import config_parser
    from comfyui_version import __version__
    from packaging.specifiers import SpecifierSet

    config = config_parser.extract_node_configuration(ROOT)
    assert config.project.supported_comfyui_version == ">=0.3.75"
    assert __version__ in SpecifierSet(config.project.supported_comfyui_version)


def test_the_server_serves_every_help_page(server):
    object_info = server.get("/object_info")
    module = object_info["NuminaAttentionCapture"]["python_module"]
    pack_nodes = [name for name, info in object_info.items() if info["python_module"] == module]
    assert len(pack_nodes) >= 7
    for name in pack_nodes:
        url = help_url(name, object_info[name]["python_module"])
        with urllib.request.urlopen(server.url + url, timeout=30) as answer:
            assert answer.status == 200, url
            assert "text/html" not in answer.headers.get("Content-Type", ""), url   # the frontend drops HTML
            assert answer.read().decode("utf-8") == open(os.path.join(ROOT, "web", "docs", f"{name}.md"),
                                                         encoding="utf-8").read()
        with pytest.raises(urllib.error.HTTPError) as missing:      # no locale page: the frontend falls back
            urllib.request.urlopen(server.url + url[:-3] + "/en.md", timeout=30)
        assert missing.value.code == 404
    if "search_aliases" in object_info["NuminaAttentionCapture"]:
        assert set(SEARCH_WORDS) <= set(object_info["NuminaAttentionCapture"]["search_aliases"] or [])
