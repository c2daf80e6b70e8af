"""NuminaTinyTextEncoderLoader (NUMINA/testing): a tiny umT5 for CPU tests and the demo.

Real Wan text encoders (umT5-XXL, 11 GB) cannot be fetched here, and ComfyUI's CLIPLoader
fixes umT5's size from its config.  This loader builds the same kind of CLIP object ComfyUI
builds for Wan -- ComfyUI's real `WanT5Tokenizer`/`UMT5XXlTokenizer` with a small sentencepiece
vocabulary stored in the file, and ComfyUI's own T5 encoder code, one layer, 4096 wide -- so
CLIPTextEncode yields Wan-shaped CONDITIONING [1, 512, 4096], zeros after the end token.
"""
from __future__ import annotations

import zlib

import torch
from comfy_api.latest import io

import comfy.sd
import comfy.supported_models_base
import comfy.text_encoders.t5
import comfy.utils
import folder_paths
from comfy import sd1_clip
from comfy.text_encoders.wan import WanT5Tokenizer

TINY_UMT5_CONFIG = {
    "d_ff": 128,
    "d_kv": 32,
    "d_model": 4096,
    "dense_act_fn": "gelu_pytorch_tanh",
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-6,
    "model_type": "umt5",
    "num_heads": 2,
    "num_layers": 1,
    "relative_attention_num_buckets": 32,
    "vocab_size": 0,  # set from the stored vocabulary
}
FILE_PREFIX = "numina_tiny_umt5"


def _clip_target(vocab_size: int) -> comfy.supported_models_base.ClipTarget:
    config = dict(TINY_UMT5_CONFIG, vocab_size=vocab_size)

    class TinyUMT5Model(sd1_clip.SDClipModel):
        def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
            super().__init__(device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config=config,
                             dtype=dtype, special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                             enable_attention_masks=True, zero_out_masked=True, model_options=model_options)

    class TinyWanTextEncoder(sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            super().__init__(device=device, dtype=dtype, model_options=model_options, name="umt5xxl",
                             clip_model=TinyUMT5Model, **kwargs)

    return comfy.supported_models_base.ClipTarget(WanT5Tokenizer, TinyWanTextEncoder)


def build_tiny_clip(state_dict: dict[str, torch.Tensor]) -> comfy.sd.CLIP:
    """A ComfyUI CLIP object from a tiny umT5 state dict holding its `spiece_model`."""
    state_dict = dict(state_dict)
    if "spiece_model" not in state_dict or "shared.weight" not in state_dict:
        raise ValueError("not a NUMINA tiny umT5 file: it needs 'spiece_model' and 'shared.weight' entries")
    spiece = state_dict.pop("spiece_model")
    vocab_size = state_dict["shared.weight"].shape[0]
    clip = comfy.sd.CLIP(_clip_target(vocab_size), tokenizer_data={"spiece_model": spiece},
                         parameters=comfy.utils.calculate_parameters(state_dict),
                         model_options={"dtype": torch.float32})
    missing, unexpected = clip.load_sd(state_dict)
    if missing:
        raise ValueError(f"tiny umT5 file is missing weights: {missing[:5]}")
    return clip


def init_tiny_state_dict(spiece_model: bytes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights.  Each embedding row is seeded by its piece's text, so the
    conditioning of a word does not depend on the id sentencepiece happened to give it."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=spiece_model)
    vocab_size = processor.get_piece_size()
    target = _clip_target(vocab_size)
    model = target.clip(device="cpu", dtype=torch.float32).umt5xxl.transformer
    generator = torch.Generator(device="cpu").manual_seed(seed)
    state = {}
    for name, tensor in sorted(model.state_dict().items()):
        if name == "shared.weight":
            rows = []
            for i in range(vocab_size):
                g = torch.Generator(device="cpu").manual_seed(zlib.crc32(processor.id_to_piece(i).encode("utf-8")))
                rows.append(torch.randn(tensor.shape[1], generator=g, device="cpu"))
            state[name] = torch.stack(rows)
        elif name.endswith("layer_norm.weight"):
            state[name] = torch.ones_like(tensor, dtype=torch.float32)
        elif "relative_attention_bias" in name:
            state[name] = 0.1 * torch.randn(tensor.shape, generator=generator, device="cpu")
        else:
            fan_in = tensor.shape[-1]
            state[name] = torch.randn(tensor.shape, generator=generator, device="cpu") * (0.5 / fan_in ** 0.5)
    state["spiece_model"] = torch.frombuffer(bytearray(spiece_model), dtype=torch.uint8).clone()
    return state


class NuminaTinyTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaTinyTextEncoderLoader",
            display_name="NUMINA Tiny umT5 Loader (testing)",
            category="NUMINA/testing",
            description="Loads the tiny umT5 text encoder the set-up script builds for CPU tests and the demo. "
                        "Not for real Wan models: use CLIPLoader with umt5_xxl for those.",
            inputs=[
                io.Combo.Input("text_encoder", options=cls._files(),
                               tooltip="A numina_tiny_umt5*.safetensors file from models/text_encoders."),
            ],
            outputs=[io.Clip.Output()],
        )

    @staticmethod
    def _files() -> list[str]:
        return [f for f in folder_paths.get_filename_list("text_encoders") if f.startswith(FILE_PREFIX)]

    @classmethod
    def execute(cls, text_encoder: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise("text_encoders", text_encoder)
        return io.NodeOutput(build_tiny_clip(comfy.utils.load_torch_file(path, safe_load=True)))
