"""The shipped workflows: consistent UI graphs that ComfyUI accepts, the CPU demo runs, the server
lists them as the pack's templates."""
import asyncio
import glob
import importlib.util
import json
import os
import shutil
import tempfile
import urllib.request
import uuid

import pytest
from PIL import Image

from numina_dev import ROOT, comfy_runtime
from numina_dev.comfy_server import ComfyServer
from scripts import make_workflows, workflow_api

WORKFLOW_DIR = os.path.join(ROOT, "workflows")
EXPECTED = ["numina_cpu_demo", "numina_wan21_t2v_1.3B", "numina_wan21_t2v_14B", "numina_wan22_t2v_A14B",
            "numina_wan22_ti2v_5B"]
PATHS = sorted(glob.glob(os.path.join(WORKFLOW_DIR, "*.json")))
DEMO = os.path.join(WORKFLOW_DIR, "numina_cpu_demo.json")
NUMINA_TYPES = {"NuminaAttentionCapture", "NuminaLayoutInfer", "NuminaLayoutRefine", "NuminaCrossAttnGuide"}
MODEL_FOLDERS = {"diffusion_models": "unet_name", "text_encoders": "clip_name", "vae": "vae_name"}


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


@pytest.fixture(scope="module")
def server():
    """One server for the module, on one torch thread (see `one_thread`)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with ComfyServer() as s:
            yield s
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


# ----------------------------------------------------------------------------- the files
def test_the_five_workflows_ship_with_a_thumbnail_each():
    assert [name_of(p) for p in PATHS] == EXPECTED
    for path in PATHS:
        with Image.open(path[:-5] + ".jpg") as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.size[0] >= 320 and thumbnail.size[1] >= 200
            assert len(set(thumbnail.convert("L").getdata())) > 16, "the thumbnail should show a diagram"


def test_committed_workflows_are_what_the_generator_writes(tmp_path):
    demo = {n["type"]: n["widgets_values"][0] for n in load(DEMO)["nodes"] if n["type"] in ("UNETLoader", "VAELoader")}
    choice = "countworld" if demo["UNETLoader"] == make_workflows.COUNTWORLD_MODEL else "tiny"
    make_workflows.write_workflows(str(tmp_path), demo_model=choice, demo_vae=demo["VAELoader"])
    for path in PATHS:
        assert load(tmp_path / os.path.basename(path)) == load(path), \
            f"{os.path.basename(path)} is stale: run scripts/make_workflows.py"


def test_the_demo_uses_countworld_when_its_checkpoint_exists():
    expected = "countworld" if os.path.exists(make_workflows.COUNTWORLD_CHECKPOINT) else "tiny"
    unet = next(n for n in load(DEMO)["nodes"] if n["type"] == "UNETLoader")["widgets_values"][0]
    assert unet == make_workflows.demo_unet_choice(expected), "run scripts/make_workflows.py to pick up CountWorld"
    vae = next(n for n in load(DEMO)["nodes"] if n["type"] == "VAELoader")["widgets_values"][0]
    assert vae == make_workflows.demo_vae_choice(None), "run scripts/make_workflows.py to pick up the CountWorld VAE"


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


# ----------------------------------------------------------------------------- against ComfyUI
@pytest.mark.parametrize("path", PATHS, ids=name_of)
def test_every_node_type_is_registered(path, comfy):
    missing = {n["type"] for n in load(path)["nodes"]} - set(comfy) - workflow_api.UI_ONLY_TYPES
    assert not missing


def signature_mismatches(node_type, signature, info):
    """How the generator's signature of a node differs from its definition in this ComfyUI (empty:
    it fits).  The pack's own nodes must match exactly.  A core node may have gained OPTIONAL
    inputs since the generator was written (0.33's CreateVideo: `bit_depth`) or outputs after its
    known ones: the shipped workflows still load when the new widgets come after the known ones
    (the UI format stores widget values by position) and new sockets are optional; a missing,
    renamed, reordered or new required input is a mismatch."""
    strict = node_type.startswith("Numina")
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    widgets = [(name, list(info["input"][section][name]), section) for section in ("required", "optional")
               for name in order.get(section, []) if workflow_api.is_widget(list(info["input"][section][name]))]
    assert [(n, spec) for n, spec, _ in widgets] == workflow_api.widget_inputs(info)  # the converter's order
    known = list(signature.widgets)
    problems = []
    names = [name for name, _, _ in widgets]
    if strict and names != known:
        problems.append(f"widgets {known} != {names}")
    elif names[:len(known)] != known:
        problems.append(f"widgets {known} are not the first widgets of {names}")
    else:
        new_required = [name for name, _, section in widgets[len(known):] if section == "required"]
        if new_required:
            problems.append(f"new required widgets {new_required}")
    seeded = [name for name, spec, _ in widgets[:len(known)] if workflow_api.has_control_value(name, spec)]
    if list(signature.seeded) != seeded:
        problems.append(f"seeded widgets {list(signature.seeded)} != {seeded}")
    sockets = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            if not workflow_api.is_widget(spec):
                sockets.append((name, spec[0], section == "optional"))
    expected = [(s.name, s.type, s.optional) for s in signature.inputs]
    if not strict:  # sockets the generator does not know are fine when optional
        sockets = [socket for socket in sockets if socket in expected or not socket[2]]
    if sockets != expected:
        problems.append(f"sockets {expected} != {sockets}")
        dynamic = [name for name, kind, _ in sockets if isinstance(kind, str) and kind.startswith("COMFY_DYNAMIC")]
        if dynamic:  # 0.33's SaveVideo: format (with codec inside it) became a DynamicCombo
            problems.append(f"{dynamic} are V3 dynamic widgets, which scripts/workflow_api.py does not convert "
                            "yet: the API prompt would lack them")
    outputs = list(zip(info["output_name"], info["output"]))
    known_outputs = [(s.name, s.type) for s in signature.outputs]
    if outputs[:len(known_outputs)] != known_outputs or (strict and len(outputs) != len(known_outputs)):
        # links name outputs by slot: outputs appended to a core node leave them valid (0.33's save
        # and preview nodes pass their input through)
        problems.append(f"outputs {known_outputs} != {outputs}")
    return problems


def test_generator_signatures_match_the_node_definitions(object_info):
    mismatches = {node_type: signature_mismatches(node_type, signature, object_info[node_type])
                  for node_type, signature in make_workflows.SIGNATURES.items()
                  if node_type not in make_workflows.UI_ONLY_TYPES}
    assert not {k: v for k, v in mismatches.items() if v}


def test_signature_check_tolerates_new_optional_inputs_only(object_info):
    """The check above on edited copies of this ComfyUI's CreateVideo and the pack's layout node."""
    import copy

    signature = make_workflows.SIGNATURES["CreateVideo"]
    info = copy.deepcopy(object_info["CreateVideo"])
    info["input"]["optional"].pop("bit_depth", None)  # what 0.3.75 defines
    for section in info["input_order"].values():
        section[:] = [n for n in section if n != "bit_depth"]
    assert signature_mismatches("CreateVideo", signature, info) == []

    def edited(change):
        new = copy.deepcopy(info)
        change(new)
        return signature_mismatches("CreateVideo", signature, new)

    def add(section, name, spec, first=False):
        def change(new):
            new["input"].setdefault(section, {})[name] = spec
            order = new["input_order"].setdefault(section, [])
            order.insert(0, name) if first else order.append(name)
        return change

    def rename(section, old, new_name):
        def change(new):
            new["input"][section] = {(new_name if k == old else k): v for k, v in new["input"][section].items()}
            new["input_order"][section] = [new_name if k == old else k for k in new["input_order"][section]]
        return change

    def drop(section, name):
        def change(new):
            new["input"][section].pop(name)
            new["input_order"][section].remove(name)
        return change

    assert edited(add("optional", "bit_depth", [["8-bit", "10-bit"], {"default": "8-bit"}])) == []
    assert edited(add("optional", "mask", ["MASK"])) == []                      # a new optional socket
    assert edited(add("required", "bit_depth", [["8-bit", "10-bit"]]))          # a new required widget
    assert edited(add("required", "mask", ["MASK"]))                            # a new required socket
    assert edited(add("required", "quality", ["INT", {}], first=True))          # a required widget before fps
    assert edited(rename("required", "fps", "frame_rate"))                      # renamed widget
    assert edited(rename("required", "images", "frames"))                       # renamed socket
    assert edited(drop("required", "fps"))                                      # missing widget
    assert edited(drop("required", "images"))                                   # missing socket
    assert edited(lambda new: (new["output"].append("IMAGE"), new["output_name"].append("images"))) == []
    assert edited(lambda new: new["output_name"].__setitem__(0, "video"))         # a renamed output
    # the pack's own nodes must match exactly, optional inputs included
    layout_info = copy.deepcopy(object_info["NuminaLayoutInfer"])
    layout_info["input"].setdefault("optional", {})["extra"] = ["INT", {"default": 1}]
    layout_info["input_order"].setdefault("optional", []).append("extra")
    assert signature_mismatches("NuminaLayoutInfer", make_workflows.SIGNATURES["NuminaLayoutInfer"], layout_info)


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
        assert output["type"] == link_type and socket["type"] in (link_type, "*")
        assert object_info[source["type"]]["output"][origin_slot] == link_type
        definition = {**object_info[target["type"]]["input"].get("required", {}),
                      **object_info[target["type"]]["input"].get("optional", {})}
        assert definition[socket["name"]][0] in (link_type, "*"), f"{target['type']}.{socket['name']}"
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
    sampler = only(api, "KSampler")["inputs"]
    assert sampler["seed"] == make_workflows.REAL_SEED and sampler["steps"] == 30 and sampler["cfg"] == 6.0
    assert sampler["sampler_name"] == "uni_pc" and sampler["scheduler"] == "simple" and sampler["denoise"] == 1.0
    assert origin(api, sampler["model"])["class_type"] == "NuminaCrossAttnGuide"
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
@pytest.mark.parametrize("name", EXPECTED)
def test_capture_matches_the_final_sampler(name, api_graphs):
    api = api_graphs[name]
    capture = only(api, "NuminaAttentionCapture")["inputs"]
    samplers = [v["inputs"] for v in api.values() if v["class_type"] in ("KSampler", "KSamplerAdvanced")]
    guided = [s for s in samplers if origin(api, s["model"])["class_type"] == "NuminaCrossAttnGuide"]
    assert guided, "no sampler runs the guided model"
    for sampler in samplers:
        assert sampler.get("seed", sampler.get("noise_seed")) == capture["seed"]
        for key in ("steps", "cfg", "sampler_name", "scheduler"):
            assert sampler[key] == capture[key], key
        assert sampler["positive"] == capture["positive"] and sampler["negative"] == capture["negative"]
    first = [s for s in samplers if s.get("add_noise", "enable") == "enable"]
    assert all(s["latent_image"] == capture["latent"] for s in first)
    positive = origin(api, capture["positive"])["inputs"]["text"]
    assert capture["prompt"] == positive and capture["count_override"] == ""
    assert origin(api, capture["model"])["class_type"] == "ModelSamplingSD3"
    infer = origin(api, only(api, "NuminaLayoutRefine")["inputs"]["layout"])
    assert infer["class_type"] == "NuminaLayoutInfer" and origin(api, infer["inputs"]["capture"]) is \
        only(api, "NuminaAttentionCapture")
    for guide in by_type(api, "NuminaCrossAttnGuide").values():
        assert origin(api, guide["inputs"]["layout"])["class_type"] == "NuminaLayoutRefine"
    previewed = {tuple(v["inputs"]["images"]) for v in api.values()
                 if v["class_type"] in ("PreviewImage", "SaveImage")}
    for key, node in api.items():
        if node["class_type"] in ("NuminaLayoutInfer", "NuminaLayoutRefine"):
            assert (key, 1) in previewed, f"{node['class_type']} preview is not shown"


@pytest.mark.parametrize("name", EXPECTED)
def test_example_prompts_ask_for_counts(name, api_graphs, pack):
    prompt = only(api_graphs[name], "NuminaAttentionCapture")["inputs"]["prompt"]
    targets = pack.module("NuminaAttentionCapture").parse_targets(prompt)
    assert targets.items and all(t.count >= 2 for t in targets.items), (prompt, targets)


def test_ui_seeds_are_fixed_so_capture_and_sampler_stay_together():
    for path in PATHS:
        for node in load(path)["nodes"]:
            signature = make_workflows.SIGNATURES[node["type"]]
            for name in signature.seeded:
                at = signature.widgets.index(name) + sum(
                    1 for w in signature.widgets[:signature.widgets.index(name)] if w in signature.seeded)
                assert node["widgets_values"][at + 1] == "fixed", f"{name_of(path)} node {node['id']}"


def test_each_workflow_uses_its_published_models_and_settings(api_graphs):
    def loaded(api, class_type, key):
        return sorted(v["inputs"][key] for v in by_type(api, class_type).values())

    expected = {
        "numina_wan21_t2v_1.3B": (["wan2.1_t2v_1.3B_fp16.safetensors"], "wan_2.1_vae.safetensors", (832, 480, 81)),
        "numina_wan21_t2v_14B": (["wan2.1_t2v_14B_fp16.safetensors"], "wan_2.1_vae.safetensors", (1280, 720, 81)),
        "numina_wan22_ti2v_5B": (["wan2.2_ti2v_5B_fp16.safetensors"], "wan2.2_vae.safetensors", (1280, 704, 121)),
        "numina_wan22_t2v_A14B": (["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                                   "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"], "wan_2.1_vae.safetensors",
                                  (1280, 720, 81)),
    }
    for name, (unets, vae, size) in expected.items():
        api = api_graphs[name]
        assert loaded(api, "UNETLoader", "unet_name") == unets
        assert loaded(api, "VAELoader", "vae_name") == [vae]
        clip = only(api, "CLIPLoader")["inputs"]
        assert (clip["clip_name"], clip["type"]) == ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan")
        assert all(v["inputs"]["shift"] == 8.0 for v in by_type(api, "ModelSamplingSD3").values())
        latent = origin(api, only(api, "NuminaAttentionCapture")["inputs"]["latent"])
        assert (latent["inputs"]["width"], latent["inputs"]["height"], latent["inputs"]["length"]) == size
        if name == "numina_wan22_ti2v_5B":
            assert latent["class_type"] == "Wan22ImageToVideoLatent" and "start_image" not in latent["inputs"]
            assert only(api, "KSampler")["inputs"]["steps"] == 20 and only(api, "KSampler")["inputs"]["cfg"] == 5.0
        assert any(v["class_type"] in ("SaveVideo", "SaveAnimatedWEBP") for v in api.values())


def test_a14b_captures_on_the_high_noise_expert_and_guides_both(api_graphs, pack):
    api = api_graphs["numina_wan22_t2v_A14B"]
    ui = load(os.path.join(WORKFLOW_DIR, "numina_wan22_t2v_A14B.json"))

    def unet_behind(ref):
        node = origin(api, ref)
        while node["class_type"] != "UNETLoader":
            node = origin(api, node["inputs"]["model"])
        return node["inputs"]["unet_name"]

    capture = only(api, "NuminaAttentionCapture")["inputs"]
    assert "high_noise" in unet_behind(capture["model"])
    high, low = sorted(by_type(api, "KSamplerAdvanced").values(), key=lambda s: s["inputs"]["start_at_step"])
    assert (high["inputs"]["add_noise"], high["inputs"]["start_at_step"], high["inputs"]["end_at_step"],
            high["inputs"]["return_with_leftover_noise"]) == ("enable", 0, 10, "enable")
    assert (low["inputs"]["add_noise"], low["inputs"]["start_at_step"], low["inputs"]["end_at_step"],
            low["inputs"]["return_with_leftover_noise"]) == ("disable", 10, 10000, "disable")
    assert origin(api, low["inputs"]["latent_image"]) is high
    assert "high_noise" in unet_behind(high["inputs"]["model"]) and "low_noise" in unet_behind(low["inputs"]["model"])
    guides = [origin(api, s["inputs"]["model"]) for s in (high, low)]
    assert all(g["class_type"] == "NuminaCrossAttnGuide" for g in guides)
    assert guides[0]["inputs"]["layout"] == guides[1]["inputs"]["layout"]
    # the default reference step (40% of the schedule) falls in the high-noise range
    reference = pack.module("NuminaAttentionCapture").default_reference_step(capture["steps"])
    assert capture["reference_step"] == -1 and reference < high["inputs"]["end_at_step"]
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert notes and "HIGH-noise" in notes[0]["widgets_values"][0] and "SAME refined layout" in \
        notes[0]["widgets_values"][0]


def test_the_cpu_demo_has_a_plain_branch_and_saves_everything(api_graphs):
    api = api_graphs["numina_cpu_demo"]
    samplers = list(by_type(api, "KSampler").values())
    assert sorted(origin(api, s["inputs"]["model"])["class_type"] for s in samplers) == \
        ["ModelSamplingSD3", "NuminaCrossAttnGuide"]
    assert only(api, "NuminaTinyTextEncoderLoader")["inputs"]["text_encoder"] == "numina_tiny_umt5.safetensors"
    assert only(api, "ModelSamplingSD3")["inputs"]["shift"] == 3.0
    prefixes = {v["inputs"]["filename_prefix"] for v in by_type(api, "SaveImage").values()}
    assert prefixes == {"numina_demo/frame", "numina_demo/plain_frame", "numina_demo/layout_inferred",
                        "numina_demo/layout_refined"}
    assert only(api, "SaveAnimatedWEBP")["inputs"]["filename_prefix"].startswith("numina_demo/")


# ----------------------------------------------------------------------------- running the demo
def _saved_images(outputs, api, prefix):
    keys = [k for k, v in api.items() if v["inputs"].get("filename_prefix") == prefix]
    assert len(keys) == 1
    return outputs[keys[0]]["images"]


@pytest.fixture
def one_thread():
    """The tiny models' small ops run ~8x faster on one thread than on two on this shared 2-core CPU
    (measured: 5.6 s vs 42 s for the demo cut to 4 steps; 11 s for all 20)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cpu_demo_runs_through_the_prompt_executor(object_info, one_thread):
    import folder_paths

    api = workflow_api.ui_to_api(load(DEMO), object_info)
    unet = only(api, "UNETLoader")["inputs"]["unet_name"]
    assert unet in folder_paths.get_filename_list("diffusion_models"), \
        f"{unet} is not installed: run scripts/make_fixtures.py"
    executor, server = comfy_runtime.execute_graph(api)
    assert executor.success, comfy_runtime.execution_error(server)
    outputs = executor.history_result["outputs"]
    length = only(api, "EmptyHunyuanLatentVideo")["inputs"]["length"]
    for prefix, count in (("numina_demo/frame", length), ("numina_demo/plain_frame", length),
                          ("numina_demo/layout_inferred", None), ("numina_demo/layout_refined", None)):
        images = _saved_images(outputs, api, prefix)
        assert len(images) == count if count else images
        for image in images:
            assert os.path.getsize(os.path.join(folder_paths.get_output_directory(), image["subfolder"],
                                                image["filename"])) > 0
    webp = _saved_images(outputs, api, "numina_demo/video")
    assert len(webp) == 1 and webp[0]["filename"].endswith(".webp")


def test_cpu_demo_runs_on_the_server(server):
    info = server.get("/object_info")
    api = workflow_api.ui_to_api(load(DEMO), info)
    entry = server.run(api)
    assert entry["status"]["status_str"] == "success", entry["status"]
    length = only(api, "EmptyHunyuanLatentVideo")["inputs"]["length"]
    assert len(_saved_images(entry["outputs"], api, "numina_demo/frame")) == length
    assert len(_saved_images(entry["outputs"], api, "numina_demo/plain_frame")) == length
    assert _saved_images(entry["outputs"], api, "numina_demo/layout_refined")


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
