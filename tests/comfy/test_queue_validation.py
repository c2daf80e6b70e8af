"""NuminaAttentionCapture's inputs checked when the prompt is queued, through ComfyUI's own
`execution.validate_prompt` (what POST /prompt runs): a bad count override or reference step is
refused with its message before anything loads or samples."""
import asyncio
import uuid

import pytest

from numina_dev.graphs import TINY_TEXT, TINY_WAN

PROMPT = "three red circles drifting on a grey background"


def capture_graph(prompt=PROMPT, override="", steps=4, reference_step=-1, prompt_linked=False):
    """Loaders -> text -> empty latent -> capture -> layout infer (the output node)."""
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN, "weight_dtype": "default"}},
        "2": {"class_type": "NuminaTinyTextEncoderLoader", "inputs": {"text_encoder": TINY_TEXT}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}},
        "6": {"class_type": "NuminaAttentionCapture", "inputs": {
            "model": ["1", 0], "clip": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent": ["5", 0],
            "seed": 7, "steps": steps, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple",
            "prompt": prompt, "count_override": override, "reference_step": reference_step, "block": -1}},
        "7": {"class_type": "NuminaLayoutInfer", "inputs": {"capture": ["6", 0], "mode": "default"}},
    }
    if prompt_linked:
        graph["8"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": prompt}}
        graph["3"]["inputs"]["text"] = ["8", 0]
        graph["6"]["inputs"]["prompt"] = ["8", 0]
    return graph


def validate(graph):
    import execution
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(str(uuid.uuid4()), graph, None))
    return valid, error, node_errors


def capture_errors(node_errors) -> list[str]:
    return [e["details"] for e in node_errors.get("6", {}).get("errors", [])]


def refused_with(graph, *fragments):
    valid, error, node_errors = validate(graph)
    assert not valid and error["type"] == "prompt_outputs_failed_validation", (error, node_errors)
    details = capture_errors(node_errors)
    assert details and all(e["type"] == "custom_validation_failed" for e in node_errors["6"]["errors"])
    assert all(fragment in d for d in details for fragment in fragments), details
    return details


def test_good_inputs_pass(comfy):
    valid, error, node_errors = validate(capture_graph(override="circles: 5", reference_step=2))
    assert valid, (error, node_errors)


def test_override_naming_a_word_not_in_the_prompt_is_refused_naming_the_nouns_found(comfy):
    refused_with(capture_graph(override="dogs: 2"), 'override noun "dogs" does not occur in the prompt',
                 "counted nouns found in the prompt: circles")


def test_override_with_bad_syntax_is_refused(comfy):
    refused_with(capture_graph(override="circles three"), 'override entry "circles three" is not "noun: count"')


def test_reference_step_not_below_steps_is_refused(comfy):
    refused_with(capture_graph(steps=4, reference_step=4), "reference_step 4 must be below steps (4)",
                 "use -1 for the default (2)")


@pytest.mark.parametrize("steps, reference_step, fragment", [(1, -1, "steps 1 is outside 2..10000"),
                                                             (4, -2, "reference_step -2 is outside -1..9999")])
def test_the_bounds_comfyui_leaves_to_the_node_are_still_checked(comfy, steps, reference_step, fragment):
    refused_with(capture_graph(steps=steps, reference_step=reference_step), fragment)


def test_empty_prompt_widget_is_refused(comfy):
    refused_with(capture_graph(prompt="   "), "the prompt is empty")


def test_linked_prompt_checks_the_override_syntax_only(comfy):
    # the prompt text is known only when the graph runs: a noun absent from it is found then
    valid, error, node_errors = validate(capture_graph(override="dogs: 2", prompt_linked=True))
    assert valid, (error, node_errors)
    refused_with(capture_graph(override="dogs two", prompt_linked=True), 'override entry "dogs two"')
