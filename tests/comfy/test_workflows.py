"""The shipped workflows: consistent UI graphs generated from the node definitions, that ComfyUI
accepts; the CPU demo runs and its thumbnail is its result; the server lists them as the pack's
templates."""
import asyncio
import glob
import io
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from numina_dev import ROOT, comfy_runtime
from scripts import make_workflows, workflow_api

WORKFLOW_DIR = os.path.join(ROOT, "example_workflows")
EXPECTED = ["numina_cpu_demo", "numina_wan21_t2v_1.3B", "numina_wan21_t2v_1.3B_4step", "numina_wan21_t2v_1.3B_checked",
            "numina_wan21_t2v_1.3B_published", "numina_wan21_t2v_14B", "numina_wan22_t2v_A14B", "numina_wan22_ti2v_5B"]
CHECKED = "numina_wan21_t2v_1.3B_checked"      # capture -> NuminaCheckedSampler (no NuminaSampler)
ONE_PASS = [name for name in EXPECTED if name != CHECKED]
PUBLISHED_PRESET = "numina_wan21_t2v_1.3B_published"
NUMINA_SETTING_NODES = ("NuminaAttentionCapture", "NuminaLayoutInfer", "NuminaSampler")
REAL = [name for name in EXPECTED if name != "numina_cpu_demo"]
PATHS = sorted(glob.glob(os.path.join(WORKFLOW_DIR, "*.json")))
DEMO = os.path.join(WORKFLOW_DIR, "numina_cpu_demo.json")
SAMPLING = ("seed", "steps", "cfg", "sampler_name", "scheduler")
# outputs a workflow may leave unconnected: what the node shows on itself (reports as text, the
# layout's animated preview and counts) and the capture's reference latent (for inspection)
SHOWN_ON_THE_NODE = {("NuminaAttentionCapture", "report"), ("NuminaAttentionCapture", "reference_latent"),
                     ("NuminaLayoutInfer", "preview"), ("NuminaLayoutInfer", "counts"),
                     ("NuminaLayoutRefine", "preview"), ("NuminaLayoutRefine", "counts"),
                     ("NuminaSampler", "report")}


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def name_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def by_type(api, class_type):
    return {k: v for k, v in api.items() if v["class_type"] == class_type}


def only(api, class_type):
    found = list(by_type(api, class_type).values())
    assert len(found) == 1, f"expected one {class_type}, found {len(found)}"
    return found[0]


def origin(api, ref):
    return api[ref[0]]


@pytest.fixture(scope="module")
def object_info(comfy):
    return workflow_api.object_info_in_process()


@pytest.fixture(scope="module")
def api_graphs(object_info):
    return {name_of(p): workflow_api.ui_to_api(load(p), object_info) for p in PATHS}


@pytest.fixture(scope="module")
def standard_model_files(comfy):
    """Zero-byte files with the standard Comfy-Org names, so loader combos validate (nothing loads)."""
    import folder_paths

    root = tempfile.mkdtemp(prefix="numina_fake_models_")
    added = []
    for filename, (_, folder) in make_workflows.MODEL_URLS.items():
        path = os.path.join(root, folder)
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, filename), "wb").close()
        if (folder, path) not in added:
            folder_paths.add_model_folder_path(folder, path)
            added.append((folder, path))
    yield root
    for folder, path in added:
        folder_paths.folder_names_and_paths[folder][0].remove(path)
        folder_paths.filename_list_cache.pop(folder, None)
    shutil.rmtree(root)


@pytest.fixture
def one_thread():
    """The tiny models' small ops run ~8x faster on one thread than on two on this shared 2-core CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def comfyui_version():
    return make_workflows.live_comfyui_version()


# ----------------------------------------------------------------------------- the files
def test_the_eight_workflows_ship_in_example_workflows_with_a_thumbnail_each():
    assert [name_of(p) for p in PATHS] == EXPECTED
    assert not os.path.exists(os.path.join(ROOT, "workflows")), "the workflows moved to example_workflows/"
    for path in PATHS:
        with Image.open(path[:-5] + ".jpg") as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.size[0] >= 320 and thumbnail.size[1] >= 200
            assert len(set(thumbnail.convert("L").getdata())) > 16, "the thumbnail should show a picture"


def test_committed_workflows_are_what_the_generator_writes(tmp_path, object_info):
    """The generator reads the node signatures from this ComfyUI. On the ComfyUI the workflows were
    written with (the set-up's, recorded in extra.numina.comfyui) they must be byte-for-byte what it
    writes. A newer ComfyUI (0.33) gives some core nodes more outputs (save nodes pass their input
    through): there, everything else must be the same, and the same API prompt."""
    demo = {n["type"]: n["widgets_values"][0] for n in load(DEMO)["nodes"] if n["type"] in ("UNETLoader", "VAELoader")}
    choice = "countworld" if demo["UNETLoader"] == make_workflows.COUNTWORLD_MODEL else "tiny"
    written = make_workflows.write_workflows(str(tmp_path), demo_model=choice, demo_vae=demo.get("VAELoader"),
                                             object_info=object_info, thumbnails=False)
    assert sorted(name_of(p) for p in written) == EXPECTED
    here = comfyui_version()
    for path in PATHS:
        committed, generated = load(path), load(tmp_path / os.path.basename(path))
        stale = f"{os.path.basename(path)} is stale: run scripts/make_workflows.py"
        if committed["extra"]["numina"]["comfyui"] == here:
            assert generated == committed, stale
            continue
        assert generated["extra"]["numina"]["comfyui"] == here
        assert workflow_api.ui_to_api(generated, object_info) == workflow_api.ui_to_api(committed, object_info), stale
        assert generated["links"] == committed["links"], stale

        def without_outputs(workflow):
            return [{k: v for k, v in node.items() if k != "outputs"} for node in workflow["nodes"]]
        assert without_outputs(generated) == without_outputs(committed), stale
        for new, old in zip(generated["nodes"], committed["nodes"]):
            assert new["outputs"][:len(old["outputs"])] == old["outputs"], (stale, new["type"])
            assert all(not output["links"] for output in new["outputs"][len(old["outputs"]):])


def test_the_demo_uses_countworld_when_its_checkpoint_exists():
    expected = "countworld" if os.path.exists(make_workflows.COUNTWORLD_CHECKPOINT) else "tiny"
    unet = next(n for n in load(DEMO)["nodes"] if n["type"] == "UNETLoader")["widgets_values"][0]
    assert unet == make_workflows.demo_unet_choice(expected), "run scripts/make_workflows.py to pick up CountWorld"
    vaes = [n["widgets_values"][0] for n in load(DEMO)["nodes"] if n["type"] == "VAELoader"]
    if unet == make_workflows.COUNTWORLD_MODEL:     # a latent-space world: its code-picture "VAE"
        assert not vaes and any(n["type"] == "NuminaCountWorldVAE" for n in load(DEMO)["nodes"])
    else:
        assert vaes == [make_workflows.demo_vae_choice(None)], "run scripts/make_workflows.py for the CountWorld VAE"


@pytest.mark.parametrize("path", PATHS, ids=name_of)
def test_ui_format_has_the_frontend_fields(path):
    workflow = load(path)
    assert workflow["version"] == 0.4
    for key in ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra"):
        assert key in workflow
    ids = [n["id"] for n in workflow["nodes"]]
    assert len(set(ids)) == len(ids) and workflow["last_node_id"] >= max(ids)
    assert workflow["last_link_id"] >= max(link[0] for link in workflow["links"])
    assert sorted(n["order"] for n in workflow["nodes"]) == list(range(len(ids)))
    for node in workflow["nodes"]:
        for key in ("pos", "size", "flags", "mode", "inputs", "outputs", "properties", "widgets_values"):
            assert key in node, f"node {node['id']} lacks {key}"
        if node["type"] != "Note":
            assert node["properties"]["Node name for S&R"] == node["type"]


# ----------------------------------------------------------------------------- the generator
def _tiny_info():
    """A few /object_info entries shaped like the real ones, to check the generator's rules."""
    return {
        "Source": {"input": {"required": {}}, "output": ["IMAGE", "LATENT"], "output_name": ["IMAGE", "LATENT"]},
        "CoreSave": {"input": {"required": {"images": ["IMAGE"], "prefix": ["STRING", {"default": "x"}],
                                            "quality": ["INT", {"default": 80}]},
                               "optional": {"mask": ["MASK"], "bit_depth": ["INT", {"default": 8}]}},
                     "input_order": {"required": ["images", "prefix", "quality"], "optional": ["mask", "bit_depth"]},
                     "output": [], "output_name": [], "output_node": True},
        "NuminaThing": {"input": {"required": {"latent": ["LATENT"], "seed": ["INT", {"control_after_generate": True}],
                                               "mode": [["a", "b"]]},
                                  "optional": {"strength": ["FLOAT", {"default": 1.0}]}},
                        "input_order": {"required": ["latent", "seed", "mode"], "optional": ["strength"]},
                        "output": ["LATENT", "STRING"], "output_name": ["latent", "report"]},
    }


def test_generator_reads_sockets_widgets_and_outputs_from_the_definitions():
    info = _tiny_info()
    g = make_workflows.Graph("t", "t", "t", info, "test")
    source = g.add("Source", 0)
    thing = g.add("NuminaThing", 1, latent=source["LATENT"], seed=5, mode="b", strength=0.5)
    assert thing.widgets_values == [5, "fixed", "b", 0.5]          # definition order, control value after the seed
    saved = g.add("CoreSave", 2, images=source["IMAGE"], prefix="p")
    assert saved.widgets_values == ["p", 80]                       # a core node: defaults, trailing optional left out
    assert g.add("CoreSave", 2, images=source["IMAGE"], prefix="p", bit_depth=10).widgets_values == ["p", 80, 10]
    ui = g.to_ui()
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert [(s["name"], s["type"], s["link"]) for s in nodes[thing.id]["inputs"]] == [("latent", "LATENT", 1)]
    assert [(s["name"], s.get("shape")) for s in nodes[saved.id]["inputs"]] == [("images", None), ("mask", 7)]
    assert [o["name"] for o in nodes[thing.id]["outputs"]] == ["latent", "report"]
    assert ui["links"][0] == [1, source.id, 1, thing.id, 0, "LATENT"]
    assert thing["report"].type == "STRING"
    with pytest.raises(KeyError, match="no output 'preview'"):
        thing["preview"]


@pytest.mark.parametrize("change, error", [
    (lambda info: info["NuminaThing"]["input"]["required"].update(extra=["INT", {"default": 1}]), "'extra' needs"),
    (lambda info: info["NuminaThing"]["input"]["optional"].update(extra=["INT", {"default": 1}]), "'extra' needs"),
    (lambda info: info["NuminaThing"]["input"]["required"].update(mask=["MASK"]), "'mask' is not connected"),
    (lambda info: info["NuminaThing"]["input"]["required"].update(latent=["IMAGE"]), "takes IMAGE, got LATENT"),
    (lambda info: info["NuminaThing"]["input"]["required"].pop("mode"), "unknown inputs \\['mode'\\]"),
    (lambda info: info["CoreSave"]["input"]["required"].update(codec=["STRING", {}]), "'codec' has no default"),
])
def test_a_changed_signature_stops_the_generator_with_the_input_named(change, error):
    """What a node definition change does to the generator, when it is not simply written out
    differently (which the committed-workflows test catches): the pack's own nodes need every
    widget set in the example; a required socket must be connected; link types must fit."""
    info = _tiny_info()
    change(info)
    for entry in info.values():
        entry.pop("input_order", None)     # order as the sections list them
    g = make_workflows.Graph("t", "t", "t", info, "test")
    source = g.add("Source", 0)
    with pytest.raises((ValueError, TypeError), match=error):
        g.add("NuminaThing", 1, latent=source["LATENT"], seed=5, mode="b", strength=0.5)
        g.add("CoreSave", 2, images=source["IMAGE"], prefix="p")


def test_generator_writes_a_dynamic_combo_as_the_frontend_stores_it():
    info = _dynamic_node_info()
    info["VideoSource"] = {"input": {"required": {}}, "output": ["VIDEO"], "output_name": ["VIDEO"]}
    g = make_workflows.Graph("t", "t", "t", info, "test")
    video = g.add("VideoSource", 0)
    default = g.add("SaveLike", 1, video=video["VIDEO"], filename_prefix="v/x", format="mp4")
    assert default.widgets_values == ["v/x", "mp4", "auto"]          # format, then its option's codec
    chosen = g.add("SaveLike", 1, video=video["VIDEO"], filename_prefix="v/x", format="mp4",
                   **{"format.codec": "h264", "format.codec.encoding": "re-encode",
                      "format.codec.encoding.crf": 18.0})
    assert chosen.widgets_values == ["v/x", "mp4", "h264", "re-encode", 18.0, "auto"]
    api = workflow_api.ui_to_api(g.to_ui(), info)
    assert api[str(chosen.id)]["inputs"] == {
        "video": [str(video.id), 0], "filename_prefix": "v/x", "format": "mp4", "format.codec": "h264",
        "format.codec.encoding": "re-encode", "format.codec.encoding.crf": 18.0,
        "format.codec.encoding.color_space": "auto"}


def _shape(info):
    """A definition without its option lists (model file lists differ between processes)."""
    definition = make_workflows.Definition.from_info(info)

    def kind(spec):
        return "COMBO" if isinstance(spec[0], list) else spec[0]
    return (definition.sockets, [(w.name, kind(w.spec), w.optional) for w in definition.widgets],
            definition.outputs, definition.output_node)


def test_the_generators_definitions_are_what_the_server_serves(object_info, server):
    """make_workflows reads /object_info's data in-process (workflow_api.object_info_in_process):
    the same sockets, widgets and outputs as a running server's GET /object_info."""
    served = server.get("/object_info")
    used = {n["type"] for p in PATHS for n in load(p)["nodes"]} - set(make_workflows.UI_ONLY)
    assert used <= set(served)
    for node_type in sorted(used):
        assert _shape(object_info[node_type]) == _shape(served[node_type]), node_type


# ----------------------------------------------------------------------------- against ComfyUI
@pytest.mark.parametrize("path", PATHS, ids=name_of)
def test_every_node_type_is_registered(path, comfy):
    missing = {n["type"] for n in load(path)["nodes"]} - set(comfy) - workflow_api.UI_ONLY_TYPES
    assert not missing


@pytest.mark.parametrize("path", PATHS, ids=name_of)
def test_links_are_consistent_with_nodes_and_definitions(path, object_info):
    workflow = load(path)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    link_ids = [link[0] for link in workflow["links"]]
    assert len(set(link_ids)) == len(link_ids)
    for link_id, origin_id, origin_slot, target_id, target_slot, link_type in workflow["links"]:
        source, target = nodes[origin_id], nodes[target_id]
        output, socket = source["outputs"][origin_slot], target["inputs"][target_slot]
        assert link_id in output["links"] and socket["link"] == link_id
        # a socket of several types (io.MultiType: "NUMINA_CAPTURE,NUMINA_LAYOUT") takes any of them
        assert output["type"] == link_type and (socket["type"] == "*" or link_type in socket["type"].split(","))
        assert object_info[source["type"]]["output"][origin_slot] == link_type
        definition = {**object_info[target["type"]]["input"].get("required", {}),
                      **object_info[target["type"]]["input"].get("optional", {})}
        accepted = definition[socket["name"]][0]
        assert accepted == "*" or link_type in accepted.split(","), f"{target['type']}.{socket['name']}"
    for node in workflow["nodes"]:
        for socket in node["inputs"]:
            assert socket["link"] is None or socket["link"] in link_ids
        for output in node["outputs"]:
            assert all(workflow["links"][link_ids.index(i)][1] == node["id"] for i in output["links"])


@pytest.mark.parametrize("path", PATHS, ids=name_of)
def test_converted_workflow_passes_comfyuis_validation(path, object_info, standard_model_files):
    import execution

    workflow = load(path)
    api = workflow_api.ui_to_api(workflow, object_info)
    assert len(api) == sum(n["type"] not in workflow_api.UI_ONLY_TYPES for n in workflow["nodes"])
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(str(uuid.uuid4()), api, None))
    assert valid, (error, node_errors)
    assert set(outputs) == {k for k, v in api.items() if object_info[v["class_type"]].get("output_node")}


def test_converter_drops_the_control_value_and_maps_links(api_graphs):
    api = api_graphs["numina_wan21_t2v_1.3B"]
    capture = only(api, "NuminaAttentionCapture")["inputs"]
    assert capture["seed"] == make_workflows.REAL_SEED and capture["steps"] == 30
    assert origin(api, only(api, "NuminaSampler")["inputs"]["capture"])["class_type"] == "NuminaAttentionCapture"
    assert "fixed" not in json.dumps(api)


def test_converter_follows_reroutes_and_bypasses_and_skips_ui_only_nodes(object_info):
    def node(node_id, node_type, inputs=(), outputs=(), widgets=(), mode=0):
        return {"id": node_id, "type": node_type, "mode": mode, "widgets_values": list(widgets),
                "inputs": [{"name": n, "type": t, "link": l, **({"widget": {"name": n}} if w else {})}
                           for n, t, l, w in inputs],
                "outputs": [{"name": t, "type": t, "links": ls} for t, ls in outputs]}
    workflow = {"nodes": [
        node(1, "UNETLoader", outputs=[("MODEL", [1])], widgets=["numina_tiny_wan21_t2v.safetensors", "default"]),
        node(2, "Reroute", inputs=[("", "*", 1, False)], outputs=[("MODEL", [2])]),
        node(3, "ModelSamplingSD3", inputs=[("model", "MODEL", 2, False)], outputs=[("MODEL", [3])], widgets=[8.0],
             mode=4),
        node(4, "PrimitiveNode", outputs=[("INT", [4])], widgets=[99, "fixed"]),
        node(5, "KSampler", inputs=[("model", "MODEL", 3, False), ("positive", "CONDITIONING", None, False),
                                    ("negative", "CONDITIONING", None, False),
                                    ("latent_image", "LATENT", None, False), ("seed", "INT", 4, True)],
             outputs=[("LATENT", [])], widgets=[99, "randomize", 12, 4.5, "euler", "simple", 0.5]),
        node(6, "Note", widgets=["a note"]),
        node(7, "VAELoader", outputs=[("VAE", [])], widgets=["numina_tiny_wan21_vae.safetensors"], mode=2),
    ], "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 5, 0, "MODEL"],
                 [4, 4, 0, 5, 4, "INT"]]}
    api = workflow_api.ui_to_api(workflow, object_info)
    assert sorted(api) == ["1", "5"]
    assert api["5"]["inputs"] == {"model": ["1", 0], "seed": 99, "steps": 12, "cfg": 4.5, "sampler_name": "euler",
                                  "scheduler": "simple", "denoise": 0.5}
    with pytest.raises(workflow_api.WorkflowConversionError, match="NoSuchNode"):
        workflow_api.ui_to_api({"nodes": [node(1, "NoSuchNode")], "links": []}, object_info)


# ----------------------------------------------------------------------------- the NUMINA contract
@pytest.mark.parametrize("name", ONE_PASS)
def test_the_sampler_takes_everything_from_the_capture(name, api_graphs, object_info):
    """capture -> infer -> refine -> NuminaSampler -> decode -> save: the run's settings are entered
    once, on the capture; the sampler has none and samples the model the capture ran on."""
    api = api_graphs[name]
    sampler_widgets = {w.name for w in make_workflows.Definition.from_info(object_info["NuminaSampler"]).widgets}
    assert not sampler_widgets & {*SAMPLING, "denoise", "noise_seed", "prompt"}, "the sampler has no run settings"
    assert not by_type(api, "NuminaCrossAttnGuide") and not by_type(api, "KSamplerAdvanced")
    capture_key = next(iter(by_type(api, "NuminaAttentionCapture")))
    capture = api[capture_key]["inputs"]
    sampler = only(api, "NuminaSampler")["inputs"]
    refine = origin(api, sampler["layout"])
    assert refine["class_type"] == "NuminaLayoutRefine"
    infer = origin(api, refine["inputs"]["layout"])
    assert infer["class_type"] == "NuminaLayoutInfer" and infer["inputs"]["capture"] == [capture_key, 0]
    assert sampler["capture"] == [capture_key, 0]
    assert sampler["model"] == capture["model"], "the sampler samples the model the capture ran on"
    assert origin(api, capture["model"])["class_type"] == "ModelSamplingSD3"
    positive = origin(api, capture["positive"])["inputs"]["text"]
    assert capture["prompt"] == positive and capture["count_override"] == ""
    sampler_key = next(iter(by_type(api, "NuminaSampler")))
    decoders = [v for v in api.values() if v["inputs"].get("samples") == [sampler_key, 0]]
    assert len(decoders) == 1 and decoders[0]["class_type"] in ("VAEDecode", "NuminaLatentRGBDecode")
    samplers = by_type(api, "KSampler")
    if name in REAL:
        assert not samplers
    else:   # the demo's plain run for comparison: the capture's settings, the plain model
        plain = only(api, "KSampler")["inputs"]
        assert all(plain[key] == capture[key] for key in SAMPLING)
        assert (plain["model"], plain["positive"], plain["negative"], plain["latent_image"]) == \
            (capture["model"], capture["positive"], capture["negative"], capture["latent"])


@pytest.mark.parametrize("name", EXPECTED)
def test_the_nodes_show_previews_and_reports_themselves(name, api_graphs, object_info):
    """No PreviewImage / PreviewAny for the layout or the reports: NuminaLayoutInfer / Refine show
    the animated layout and the counts on the node (output nodes, so they run even when nothing reads
    them), capture and sampler their report text. In the real-model workflows their preview outputs
    stay free; the demo saves both layouts as files."""
    api = api_graphs[name]
    assert not by_type(api, "PreviewImage") and not by_type(api, "PreviewAny")
    assert object_info["NuminaLayoutInfer"]["output_node"] and object_info["NuminaLayoutRefine"]["output_node"]
    readers = {tuple(ref) for node in api.values() for ref in node["inputs"].values() if isinstance(ref, list)}
    for key, node in api.items():
        if node["class_type"] in ("NuminaLayoutInfer", "NuminaLayoutRefine"):
            saved = [v for v in api.values() if v["inputs"].get("images") == [key, 1]]
            if name in REAL:
                assert (key, 1) not in readers and (key, 2) not in readers
            else:
                assert [v["class_type"] for v in saved] == ["SaveImage"]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_node_runs_and_no_output_a_user_needs_is_left_unconnected(name, api_graphs, object_info):
    api = api_graphs[name]
    needed = {k for k, v in api.items() if object_info[v["class_type"]].get("output_node")}
    frontier = list(needed)
    while frontier:
        for ref in api[frontier.pop()]["inputs"].values():
            if isinstance(ref, list) and ref[0] not in needed:
                needed.add(ref[0])
                frontier.append(ref[0])
    assert needed == set(api), f"nodes that would never run: {sorted(set(api) - needed)}"
    read = {tuple(ref) for node in api.values() for ref in node["inputs"].values() if isinstance(ref, list)}
    for key, node in api.items():
        info = object_info[node["class_type"]]
        if info.get("output_node") and node["class_type"] not in ("NuminaLayoutInfer", "NuminaLayoutRefine"):
            continue   # a save node's pass-through output (0.33)
        for slot, output in enumerate(info["output_name"]):
            assert (key, slot) in read or (node["class_type"], output) in SHOWN_ON_THE_NODE, \
                f"{node['class_type']}.{output} is not connected"


@pytest.mark.parametrize("name", EXPECTED)
def test_example_prompts_ask_for_counts(name, api_graphs, pack):
    prompt = only(api_graphs[name], "NuminaAttentionCapture")["inputs"]["prompt"]
    targets = pack.module("NuminaAttentionCapture").parse_targets(prompt)
    assert targets.items and all(t.count >= 2 for t in targets.items), (prompt, targets)


def test_ui_seeds_are_fixed(object_info):
    """The examples reproduce, and a second queue after editing a layout or a sampler setting reuses
    the cached capture instead of drawing a new seed (the demo's plain run keeps the capture's)."""
    for path in PATHS:
        for node in load(path)["nodes"]:
            if node["type"] in make_workflows.UI_ONLY:
                continue
            at = 0
            for name, spec in workflow_api.widget_inputs(object_info[node["type"]]):
                at += 1
                if workflow_api.has_control_value(name, spec):
                    assert node["widgets_values"][at] == "fixed", f"{name_of(path)} node {node['id']}"
                    at += 1


def test_each_workflow_uses_its_published_models_and_settings(api_graphs):
    def loaded(api, class_type, key):
        return sorted(v["inputs"][key] for v in by_type(api, class_type).values())

    expected = {
        "numina_wan21_t2v_1.3B": (["wan2.1_t2v_1.3B_fp16.safetensors"], "wan_2.1_vae.safetensors", (832, 480, 81),
                                  (30, 6.0, "uni_pc", "simple")),
        PUBLISHED_PRESET: (["wan2.1_t2v_1.3B_fp16.safetensors"], "wan_2.1_vae.safetensors", (832, 480, 81),
                           (30, 6.0, "uni_pc", "simple")),
        "numina_wan21_t2v_14B": (["wan2.1_t2v_14B_fp16.safetensors"], "wan_2.1_vae.safetensors", (1280, 720, 81),
                                 (30, 6.0, "uni_pc", "simple")),
        "numina_wan22_ti2v_5B": (["wan2.2_ti2v_5B_fp16.safetensors"], "wan2.2_vae.safetensors", (1280, 704, 121),
                                 (20, 5.0, "uni_pc", "simple")),
        "numina_wan22_t2v_A14B": (["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                                   "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"], "wan_2.1_vae.safetensors",
                                  (1280, 720, 81), (20, 3.5, "euler", "simple")),
    }
    for name, (unets, vae, size, settings) in expected.items():
        api = api_graphs[name]
        assert loaded(api, "UNETLoader", "unet_name") == unets
        assert loaded(api, "VAELoader", "vae_name") == [vae]
        clip = only(api, "CLIPLoader")["inputs"]
        assert (clip["clip_name"], clip["type"]) == ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan")
        assert all(v["inputs"]["shift"] == 8.0 for v in by_type(api, "ModelSamplingSD3").values())
        capture = only(api, "NuminaAttentionCapture")["inputs"]
        assert capture["seed"] == make_workflows.REAL_SEED
        assert tuple(capture[key] for key in SAMPLING[1:]) == settings
        assert (capture["reference_step"], capture["block"]) == (-1, -1)      # the published step and block
        latent = origin(api, capture["latent"])
        assert (latent["inputs"]["width"], latent["inputs"]["height"], latent["inputs"]["length"]) == size
        if name == "numina_wan22_ti2v_5B":
            assert latent["class_type"] == "Wan22ImageToVideoLatent" and "start_image" not in latent["inputs"]
        assert any(v["class_type"] in ("SaveVideo", "SaveAnimatedWEBP") for v in api.values())


def test_the_4_step_workflow_loads_the_distillation_lora_as_users_do(api_graphs):
    """Wan 2.1 1.3B at 4 steps: the step-distillation LoRA (named as users name it) through
    LoraLoaderModelOnly between the model loader and ModelSamplingSD3 (shift 5), CFG 1, euler /
    simple; the capture keeps its default reference step; the file's download address rides along."""
    name = "numina_wan21_t2v_1.3B_4step"
    api = api_graphs[name]
    lora = only(api, "LoraLoaderModelOnly")["inputs"]
    assert lora["lora_name"] == make_workflows.FOUR_STEP_LORA and lora["strength_model"] == 1.0
    assert origin(api, lora["model"])["inputs"]["unet_name"] == "wan2.1_t2v_1.3B_fp16.safetensors"
    shifted = only(api, "ModelSamplingSD3")["inputs"]
    assert origin(api, shifted["model"])["class_type"] == "LoraLoaderModelOnly" and shifted["shift"] == 5.0
    capture = only(api, "NuminaAttentionCapture")["inputs"]
    assert tuple(capture[key] for key in SAMPLING[1:]) == (4, 1.0, "euler", "simple")
    assert capture["reference_step"] == -1 and origin(api, capture["model"])["class_type"] == "ModelSamplingSD3"
    ui = load(os.path.join(WORKFLOW_DIR, name + ".json"))
    entry = next(n for n in ui["nodes"] if n["type"] == "LoraLoaderModelOnly")["properties"]["models"][0]
    assert entry["directory"] == "loras" and entry["url"].endswith("/" + make_workflows.FOUR_STEP_LORA)
    note = next(n for n in ui["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "models/loras/" in note and make_workflows.FOUR_STEP_LORA in note


def numina_settings(api):
    """Every widget input of the NUMINA nodes that carry settings, by (node type, input)."""
    return {(node, key): value for node in NUMINA_SETTING_NODES for key, value in only(api, node)["inputs"].items()
            if not isinstance(value, list)}


def node_defaults(pack, node):
    return {i.id: i.default for i in pack.module(node).__dict__[node].define_schema().inputs
            if getattr(i, "default", None) is not None}


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != PUBLISHED_PRESET])
def test_workflows_use_the_nodes_own_defaults_for_every_numina_setting(name, api_graphs, pack):
    """Nothing is chosen per model: the real-model workflows and the CPU demo leave every NUMINA setting
    at the node's default (what a user who drops the nodes in gets), the run's own settings aside."""
    run_settings = set(SAMPLING) | {"prompt", "count_override", "memory_budget_mb", "switch_step"}
    settings = numina_settings(api_graphs[name]) if name != CHECKED else {
        (node, key): value for node in ("NuminaAttentionCapture", "NuminaCheckedSampler", "NuminaCounterLoader")
        for key, value in only(api_graphs[name], node)["inputs"].items() if not isinstance(value, list)}
    for (node, key), value in settings.items():
        if key in run_settings:
            continue
        assert value == node_defaults(pack, node)[key], (name, node, key)


def test_the_published_preset_workflow_sets_the_published_behaviour(api_graphs):
    settings = numina_settings(api_graphs[PUBLISHED_PRESET])
    assert settings[("NuminaAttentionCapture", "reference_step")] == -1 and settings[("NuminaAttentionCapture", "block")] == -1
    assert settings[("NuminaAttentionCapture", "cross_attention_blocks")] == "capture block"
    assert settings[("NuminaLayoutInfer", "mode")] == "faithful"
    assert (settings[("NuminaSampler", "bias")], settings[("NuminaSampler", "bias_form")],
            settings[("NuminaSampler", "added_boost")], settings[("NuminaSampler", "bias_modifiers")]) == \
        ("published", "dense", 0.0, False)


def test_a14b_captures_on_the_high_noise_expert_and_samples_both(api_graphs, pack):
    api = api_graphs["numina_wan22_t2v_A14B"]
    ui = load(os.path.join(WORKFLOW_DIR, "numina_wan22_t2v_A14B.json"))

    def unet_behind(ref):
        node = origin(api, ref)
        while node["class_type"] != "UNETLoader":
            node = origin(api, node["inputs"]["model"])
        return node["inputs"]["unet_name"]

    capture = only(api, "NuminaAttentionCapture")["inputs"]
    sampler = only(api, "NuminaSampler")["inputs"]
    assert "high_noise" in unet_behind(capture["model"]) and sampler["model"] == capture["model"]
    assert "low_noise" in unet_behind(sampler["low_noise_model"])
    assert origin(api, sampler["low_noise_model"])["inputs"]["shift"] == 8.0
    # the published two-expert split (Comfy-Org's template: high noise for steps 0..9 of 20)
    assert sampler["switch_step"] == make_workflows.A14B_SWITCH_STEP == 10 and capture["steps"] == 20
    # the default reference step (40% of the schedule) falls in the high-noise range
    reference = pack.module("NuminaAttentionCapture").default_reference_step(capture["steps"])
    assert capture["reference_step"] == -1 and reference < sampler["switch_step"]
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert notes and "HIGH-noise" in notes[0]["widgets_values"][0] and "SAME refined layout" in \
        notes[0]["widgets_values"][0]


def test_the_checked_workflow_samples_counts_and_retries_with_the_papers_judge(api_graphs, object_info):
    """capture -> NuminaCheckedSampler (the model the capture ran on, the Wan VAE, GroundingDINO tiny at
    the paper's thresholds) -> CreateVideo -> SaveVideo; every setting on the capture."""
    api = api_graphs[CHECKED]
    capture_key = next(iter(by_type(api, "NuminaAttentionCapture")))
    checked = only(api, "NuminaCheckedSampler")["inputs"]
    assert checked["capture"] == [capture_key, 0] and checked["model"] == api[capture_key]["inputs"]["model"]
    assert origin(api, checked["vae"])["class_type"] == "VAELoader"
    judge = origin(api, checked["counter"])
    assert judge["class_type"] == "NuminaCounterLoader" and judge["inputs"]["model_name"] == "grounding-dino-tiny"
    assert (judge["inputs"]["box_threshold"], judge["inputs"]["text_threshold"]) == (0.32, 0.25)
    checked_key = next(iter(by_type(api, "NuminaCheckedSampler")))
    video = only(api, "CreateVideo")["inputs"]
    assert video["images"] == [checked_key, 0] and not by_type(api, "NuminaSampler")
    assert object_info["NuminaCheckedSampler"]["output_node"] and object_info["NuminaCountCheck"]["output_node"]


@pytest.mark.parametrize("name", [n for n in REAL if n != CHECKED])
def test_real_model_workflows_need_no_second_pass_setting(name, api_graphs):
    """One model (two for A14B): switch_step is the sampler's only per-workflow setting besides the bias."""
    sampler = only(api_graphs[name], "NuminaSampler")["inputs"]
    if name == "numina_wan22_t2v_A14B":
        assert "low_noise_model" in sampler
    else:
        assert "low_noise_model" not in sampler and sampler["switch_step"] == -1


def test_the_cpu_demo_compares_with_a_plain_run_and_saves_everything(api_graphs):
    api = api_graphs["numina_cpu_demo"]
    assert only(api, "NuminaTinyTextEncoderLoader")["inputs"]["text_encoder"] == "numina_tiny_umt5.safetensors"
    assert only(api, "ModelSamplingSD3")["inputs"]["shift"] == 3.0
    capture = only(api, "NuminaAttentionCapture")["inputs"]
    assert (capture["seed"], capture["prompt"]) == (make_workflows.DEMO_SEED, make_workflows.DEMO_PROMPT)
    prefixes = {v["inputs"]["filename_prefix"] for v in by_type(api, "SaveImage").values()}
    assert prefixes == {"numina_demo/frame", "numina_demo/plain_frame", "numina_demo/layout_inferred",
                        "numina_demo/layout_refined", "numina_demo/check", "numina_demo/plain_check",
                        "numina_demo/checked_check"}
    # both runs counted by the CountWorld judge, and the run that checks itself
    sampler_key, plain_key = next(iter(by_type(api, "NuminaSampler"))), next(iter(by_type(api, "KSampler")))
    counted = {origin(api, v["inputs"]["images"])["inputs"]["samples"][0] for v in by_type(api, "NuminaCountCheck").values()
               if origin(api, v["inputs"]["images"])["class_type"] == "VAEDecode"}
    assert counted == {sampler_key, plain_key}
    checked = only(api, "NuminaCheckedSampler")["inputs"]
    assert origin(api, checked["counter"])["class_type"] == "NuminaCountWorldCounterLoader" and checked["tries"] == 3
    assert only(api, "SaveAnimatedWEBP")["inputs"]["filename_prefix"].startswith("numina_demo/")


# ----------------------------------------------------------------------------- running the demo
def _saved(entry, api, prefix):
    keys = [k for k, v in api.items() if v["inputs"].get("filename_prefix") == prefix]
    assert len(keys) == 1
    return entry["outputs"][keys[0]]["images"]


def _fetch(server, item):
    query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                    "type": item.get("type", "output")})
    with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def demo_run(server):
    """The CPU demo, run once on the server from the shipped file and the served /object_info:
    (API prompt, /history entry)."""
    import folder_paths

    api = workflow_api.ui_to_api(load(DEMO), server.get("/object_info"))
    unet = only(api, "UNETLoader")["inputs"]["unet_name"]
    assert unet in folder_paths.get_filename_list("diffusion_models"), \
        f"{unet} is not installed: run scripts/make_fixtures.py"
    return api, server.run(api)


def test_cpu_demo_runs_on_the_server_and_saves_every_output(demo_run, server, object_info):
    api, entry = demo_run
    assert entry["status"]["status_str"] == "success", entry["status"]
    # scripts/demo.py converts with the in-process definitions: the same prompt
    assert workflow_api.ui_to_api(load(DEMO), object_info) == api
    length = only(api, "EmptyHunyuanLatentVideo")["inputs"]["length"]
    for prefix, count in (("numina_demo/frame", length), ("numina_demo/plain_frame", length),
                          ("numina_demo/layout_inferred", None), ("numina_demo/layout_refined", None)):
        images = _saved(entry, api, prefix)
        assert len(images) == count if count else images
        for image in images:
            assert len(_fetch(server, image)) > 0
    webp = _saved(entry, api, "numina_demo/video")
    assert len(webp) == 1 and webp[0]["filename"].endswith(".webp") and len(_fetch(server, webp[0])) > 0
    # the layout nodes showed their preview and counts, sampler and capture their reports
    shown = {api[k]["class_type"]: v for k, v in entry["outputs"].items()}
    for node_type in ("NuminaLayoutInfer", "NuminaLayoutRefine"):
        assert shown[node_type]["images"] and shown[node_type]["text"], node_type


def test_the_demo_thumbnail_is_this_run(demo_run, server):
    """The CPU demo's .jpg shows its result: a frame of the plain run, of the NUMINA run and the
    refined layout, as scripts/make_workflows.py composes them from a run of the demo."""
    api, entry = demo_run

    def read(item):
        with Image.open(io.BytesIO(_fetch(server, item))) as picture:
            return picture.convert("RGB")
    expected = make_workflows.demo_thumbnail_from(make_workflows.demo_images(entry["outputs"], api, read))

    def blocks(picture):    # 8 x 8 means: JPEG's errors average out, a different picture does not
        return np.asarray(picture.convert("RGB").resize((picture.width // 8, picture.height // 8), Image.BOX),
                          np.float32)
    with Image.open(DEMO[:-5] + ".jpg") as committed:
        assert committed.size == expected.size
        difference = np.abs(blocks(committed) - blocks(expected)).max()
    # measured: 8 for this run's picture; 41 for the next frame, 50 for plain and NUMINA swapped
    assert difference < 20, "the thumbnail is not this demo's result: run scripts/make_workflows.py"


def test_server_lists_and_serves_the_workflows_as_templates(server):
    templates = server.get("/workflow_templates")
    ours = templates.get(comfy_runtime.PACK_NAME)
    assert ours is not None, f"pack not among the template providers: {sorted(templates)}"
    assert sorted(ours) == EXPECTED
    for name in EXPECTED:
        assert server.get(f"/api/workflow_templates/{comfy_runtime.PACK_NAME}/{name}.json") == \
            load(os.path.join(WORKFLOW_DIR, name + ".json"))
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{comfy_runtime.PACK_NAME}/{name}.jpg",
                                    timeout=30) as response:
            assert response.headers["Content-Type"] == "image/jpeg" and len(response.read()) > 1000


# ----------------------------------------------------------------------------- V3 DynamicCombo (0.33+)
def _dynamic_combo(options):
    """A COMFY_DYNAMICCOMBO_V3 spec as /object_info serves it: option key -> (required, optional)."""
    return [workflow_api.DYNAMIC_COMBO, {"options": [
        {"key": key, "inputs": {"required": dict(required), **({"optional": dict(optional)} if optional else {})}}
        for key, (required, optional) in options.items()]}]


def _codec_combo():
    encoding = _dynamic_combo({"auto": ((), ()), "re-encode": (
        (("crf", ["FLOAT", {"default": 23.0}]), ("color_space", [["auto", "sRGB", "HDR"], {"default": "auto"}])),
        ())})
    return _dynamic_combo({"auto": ((), ()), "h264": ((), (("encoding", encoding),))})


def _dynamic_node_info():
    """A node shaped like 0.33's SaveVideo (format > codec > encoding > crf / color_space; a hidden
    top-level codec), plus an option with a seed (control value) and a socket."""
    codec = _codec_combo()
    save_like = {
        "input": {"required": {"video": ["VIDEO", {}], "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                               "format": _dynamic_combo({"auto": ((("codec", codec),), ()),
                                                         "mp4": ((("codec", codec),), ())})},
                  "optional": {"codec": [codec[0], {**codec[1], "hidden": True}]}},
        "input_order": {"required": ["video", "filename_prefix", "format"], "optional": ["codec"]},
        "output": ["VIDEO"], "output_name": ["video"], "output_is_list": [False], "output_node": True,
    }
    seeded = {
        "input": {"required": {"mode": _dynamic_combo({
            "plain": ((), ()),
            "noisy": ((("seed", ["INT", {"control_after_generate": True}]), ("mask", ["MASK", {}]),
                       ("strength", ["FLOAT", {}])), ())}),
            "scale": ["FLOAT", {}]}},
        "input_order": {"required": ["mode", "scale"]},
        "output": ["MASK"], "output_name": ["MASK"], "output_is_list": [False],
    }
    mask_source = {"input": {"required": {}}, "input_order": {"required": []}, "output": ["MASK"],
                   "output_name": ["MASK"], "output_is_list": [False]}
    return {"SaveLike": save_like, "Seeded": seeded, "MaskSource": mask_source}


def _one_node(node_type, widgets_values, inputs=(), extra_nodes=(), links=()):
    node = {"id": 1, "type": node_type, "mode": 0, "widgets_values": widgets_values,
            "inputs": [{"name": n, "type": t, "link": l} for n, t, l in inputs], "outputs": []}
    return {"nodes": [node, *extra_nodes], "links": list(links)}


def test_dynamic_combo_is_one_widget_in_the_definition_order():
    """The signature check and the converter see a DynamicCombo as the widget it is in the frontend,
    named by its own id; the option's inputs are not part of the node's top-level widgets."""
    info = _dynamic_node_info()
    assert workflow_api.is_widget(info["SaveLike"]["input"]["required"]["format"])
    assert [name for name, _ in workflow_api.widget_inputs(info["SaveLike"])] == ["filename_prefix", "format", "codec"]
    codec = info["SaveLike"]["input"]["optional"]["codec"]
    assert [name for name, _ in workflow_api.option_widgets(codec, "h264")] == ["encoding"]
    assert workflow_api.option_widgets(codec, "auto") == [] and workflow_api.option_widgets(codec, "vp9") == []
    mode = info["Seeded"]["input"]["required"]["mode"]
    assert [name for name, _ in workflow_api.option_widgets(mode, "noisy")] == ["seed", "strength"]  # mask: a socket


@pytest.mark.parametrize("values, expected", [
    # what the 0.33 frontend saves: each DynamicCombo's key, then its chosen option's values (nested ones too)
    (["v/x", "mp4", "h264", "re-encode", 18.0, "sRGB", "auto"],
     {"format": "mp4", "format.codec": "h264", "format.codec.encoding": "re-encode",
      "format.codec.encoding.crf": 18.0, "format.codec.encoding.color_space": "sRGB", "codec": "auto"}),
    (["v/x", "auto", "h264", "auto", "auto"],
     {"format": "auto", "format.codec": "h264", "format.codec.encoding": "auto", "codec": "auto"}),
    (["v/x", "auto", "auto", "h264", "re-encode", 30.0, "HDR"],
     {"format": "auto", "format.codec": "auto", "codec": "h264", "codec.encoding": "re-encode",
      "codec.encoding.crf": 30.0, "codec.encoding.color_space": "HDR"}),
    # a workflow saved by 0.3.75 ([prefix, format, codec]): its codec lands in the format's codec
    (["v/x", "mp4", "h264"], {"format": "mp4", "format.codec": "h264"}),
    (["v/x", "auto", "auto"], {"format": "auto", "format.codec": "auto"}),
    # a key the definition does not have brings no inputs (ComfyUI's validation reports it)
    (["v/x", "avi", "h264"], {"format": "avi", "codec": "h264"}),
])
def test_converter_flattens_dynamic_combos_into_dotted_inputs(values, expected):
    workflow = _one_node("SaveLike", values, inputs=[("video", "VIDEO", None)])
    api = workflow_api.ui_to_api(workflow, _dynamic_node_info())
    assert api["1"]["inputs"] == {"filename_prefix": "v/x", **expected}


def test_converter_reads_controls_sockets_and_named_values_inside_dynamic_combos():
    info = _dynamic_node_info()
    source = {"id": 2, "type": "MaskSource", "mode": 0, "widgets_values": [], "inputs": [],
              "outputs": [{"name": "MASK", "type": "MASK", "links": [1]}]}
    workflow = _one_node("Seeded", ["noisy", 5, "fixed", 0.25, 2.0], inputs=[("mode.mask", "MASK", 1)],
                         extra_nodes=[source], links=[[1, 2, 0, 1, 0, "MASK"]])
    api = workflow_api.ui_to_api(workflow, info)
    assert api["1"]["inputs"] == {"mode": "noisy", "mode.seed": 5, "mode.strength": 0.25, "scale": 2.0,
                                  "mode.mask": ["2", 0]}
    assert workflow_api.ui_to_api(_one_node("Seeded", ["plain", 2.0]), info)["1"]["inputs"] == \
        {"mode": "plain", "scale": 2.0}
    named = {"filename_prefix": "v/x", "format": "mp4", "format.codec": "h264", "format.codec.encoding": "auto",
             "codec": "auto"}
    assert workflow_api.ui_to_api(_one_node("SaveLike", named), info)["1"]["inputs"] == named


def _save_video_layouts(object_info):
    """SaveVideo widgets_values to try on this ComfyUI: the shipped workflows' (what 0.3.75's frontend
    saves) and, where format is a DynamicCombo (0.33+), what the newer frontend saves."""
    shipped = next(n for n in load(os.path.join(WORKFLOW_DIR, "numina_wan21_t2v_1.3B.json"))["nodes"]
                   if n["type"] == "SaveVideo")["widgets_values"]
    layouts = [("shipped", ["numina_test/video_shipped", *shipped[1:]], ".mp4"),
               ("mp4_h264", ["numina_test/video_mp4_h264", "mp4", "h264"], ".mp4")]
    if object_info["SaveVideo"]["input"]["required"]["format"][0] == workflow_api.DYNAMIC_COMBO:
        layouts += [("frontend_0_33", ["numina_test/video_new_auto", "auto", "auto", "auto"], ".mp4"),
                    ("re_encode", ["numina_test/video_reencode", "mkv", "h264", "re-encode", 30.0, "auto", "auto"],
                     ".mkv")]
    return layouts


def test_converted_save_video_runs_through_the_prompt_executor(object_info, one_thread):
    """The real-model workflows end in CreateVideo -> SaveVideo: converted from the UI format, that end
    of the graph runs on this ComfyUI (on 0.33 SaveVideo's format is a DynamicCombo with the codec in it)."""
    import folder_paths

    for name, values, extension in _save_video_layouts(object_info):
        def node(node_id, node_type, widgets, inputs=(), outputs=()):
            return {"id": node_id, "type": node_type, "mode": 0, "widgets_values": widgets,
                    "inputs": [{"name": n, "type": t, "link": l} for n, t, l in inputs],
                    "outputs": [{"name": t, "type": t, "links": ls} for t, ls in outputs]}
        workflow = {"nodes": [node(1, "EmptyImage", [64, 64, 4, 0x3366CC], outputs=[("IMAGE", [1])]),
                              node(2, "CreateVideo", [8.0], inputs=[("images", "IMAGE", 1)], outputs=[("VIDEO", [2])]),
                              node(3, "SaveVideo", values, inputs=[("video", "VIDEO", 2)])],
                    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "VIDEO"]]}
        api = workflow_api.ui_to_api(workflow, object_info)
        assert api["3"]["inputs"]["format"] == values[1], name
        executor, server = comfy_runtime.execute_graph(api)
        assert executor.success, (name, api["3"], comfy_runtime.execution_error(server))
        saved = [item for items in executor.history_result["outputs"]["3"].values() if isinstance(items, list)
                 for item in items if isinstance(item, dict) and "filename" in item]
        assert len(saved) == 1 and saved[0]["filename"].endswith(extension), (name, saved)
        path = os.path.join(folder_paths.get_output_directory(), saved[0]["subfolder"], saved[0]["filename"])
        assert os.path.getsize(path) > 0
        os.remove(path)
