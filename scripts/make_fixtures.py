"""Build the deterministic test/demo fixtures into a ComfyUI's models/ folders.

  text_encoders/numina_tiny_umt5.safetensors       tiny umT5 + its sentencepiece vocabulary
  diffusion_models/numina_tiny_wan21_t2v.safetensors  random tiny Wan 2.1 T2V (dim 256, 2 heads, 2 blocks)
  vae/numina_tiny_wan21_vae.safetensors             random tiny Wan 2.1 VAE (dim 8)
  + the committed CountWorld checkpoints (countworld/checkpoints/*), when present

Nothing is downloaded; the same inputs give the same bytes.  Files already built with the
current FIXTURE_VERSION are left alone, so a second run takes about a second.
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil

import torch

from numina_dev import ROOT, comfy_runtime

FIXTURE_VERSION = "2"
TEXT_ENCODER = "numina_tiny_umt5.safetensors"
WAN_MODEL = "numina_tiny_wan21_t2v.safetensors"
VAE = "numina_tiny_wan21_vae.safetensors"

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen twenty dozen pair couple").split()
COLOURS = "red blue green yellow white black orange purple pink grey gray brown golden silver".split()
SHAPES = ("circle circles square squares triangle triangles disc discs ball balls star stars "
          "ring rings dot dots blob blobs").split()
THINGS = ("cat cats dog dogs apple apples person people man men woman women child children bird birds "
          "horse horses duck ducks penguin penguins car cars balloon balloons cup cups chair chairs "
          "boat boats tree trees flower flowers fish sheep cow cows rabbit rabbits mouse mice").split()
SCENE = ("a an the of and with on in at under near beside over across around while other "
         "background plain dark light bright grey sky field street table room grass water pond park "
         "mountain peak floor wall sofa garden beach snow ice").split()
VERBS = ("drifting floating moving sliding resting sitting standing running walking swimming flying "
         "playing eating sleeping rolling spinning bouncing").split()
ADJECTIVES = "small big large tiny little fluffy round shiny soft".split()


def training_sentences() -> list[str]:
    """A fixed corpus for a BPE vocabulary (unigram training collapsed to 188 single letters
    on so small a corpus): whole words frequent enough to become single pieces, plus rarer
    compounds so that sub-word splits still happen, as they do with the real umT5 vocabulary."""
    sentences = []
    for n in NUMBER_WORDS:
        for c in COLOURS:
            for s in SHAPES[1::2] + THINGS[1::2]:
                sentences.append(f"{n} {c} {s}")
    for v in VERBS:
        for place in SCENE:
            sentences.append(f"{v} on a {place} {place}")
    sentences += [" ".join(ADJECTIVES)] * 40
    sentences += ["hot air balloons", "brightly coloured kittens", "strawberries", "watermelons"] * 2
    sentences += [str(i) for i in range(100)] * 3
    return sentences


def train_vocabulary() -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(training_sentences()), model_writer=model, vocab_size=420,
        model_type="bpe", character_coverage=1.0, num_threads=1, shuffle_input_sentence=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2, hard_vocab_limit=False,
    )
    return model.getvalue()


def _seeded_init(module: torch.nn.Module, seed: int, zero_head: bool = False) -> None:
    """ComfyUI's manual_cast ops skip initialisation: do it here, reproducibly (Wan2.1's scheme:
    xavier-uniform linears, zero biases, normal(0.02) text embedding, unit norm weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.ndim == 1:
                filled = torch.ones_like(p) if ("norm" in name or "gamma" in name) and "bias" not in name else torch.zeros_like(p)
            elif "modulation" in name:
                filled = torch.randn(p.shape, generator=generator) / p.shape[-1] ** 0.5
            elif zero_head and name.startswith("head.head"):
                filled = torch.zeros_like(p)
            else:
                fan_out, fan_in = p.shape[0], p[0].numel()
                bound = (6.0 / (fan_in + fan_out)) ** 0.5
                filled = (torch.rand(p.shape, generator=generator) * 2 - 1) * bound
            p.copy_(filled)


def build_wan_model(num_layers: int = 2, dim: int = 256, ffn_dim: int = 512, seed: int = 0) -> dict:
    import comfy.ldm.wan.model
    import comfy.ops

    model = comfy.ldm.wan.model.WanModel(
        model_type="t2v", dim=dim, ffn_dim=ffn_dim, num_layers=num_layers, num_heads=dim // 128,
        in_dim=16, out_dim=16, text_dim=4096, patch_size=(1, 2, 2), operations=comfy.ops.manual_cast,
    )
    _seeded_init(model, seed)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def build_vae(seed: int = 0) -> dict:
    import comfy.ldm.wan.vae

    vae = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                   attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
    _seeded_init(vae, seed)
    return {k: v.contiguous() for k, v in vae.state_dict().items()}


def build_text_encoder() -> dict:
    comfy_runtime.load_custom_nodes()
    module = comfy_runtime.pack_module("NuminaTinyTextEncoderLoader")
    return module.init_tiny_state_dict(train_vocabulary())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfyui", default=None, help="ComfyUI folder (default: the one set-up recorded)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    if args.comfyui:
        os.environ["COMFYUI_PATH"] = args.comfyui
    comfy_path = comfy_runtime.bootstrap()
    import safetensors.torch

    models = os.path.join(comfy_path, "models")
    stamp_path = os.path.join(models, ".numina_fixtures.json")
    stamp = json.load(open(stamp_path)) if os.path.exists(stamp_path) else {}

    def up_to_date(rel: str) -> bool:
        return not args.force and stamp.get(rel) == FIXTURE_VERSION and os.path.exists(os.path.join(models, rel))

    def write(rel: str, tensors: dict) -> None:
        path = os.path.join(models, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        safetensors.torch.save_file(tensors, path + ".tmp")
        os.replace(path + ".tmp", path)
        stamp[rel] = FIXTURE_VERSION
        with open(stamp_path, "w") as f:
            json.dump(stamp, f, indent=1)
        print(f"fixtures: wrote {path}")

    builders = {
        os.path.join("text_encoders", TEXT_ENCODER): build_text_encoder,
        os.path.join("diffusion_models", WAN_MODEL): build_wan_model,
        os.path.join("vae", VAE): build_vae,
    }
    for rel, build in builders.items():
        if not up_to_date(rel):
            write(rel, build())
    # Trained CountWorld checkpoints are committed (small, reproducible by countworld/train.py).
    for src in sorted(glob.glob(os.path.join(ROOT, "countworld", "checkpoints", "*.safetensors"))):
        kind = "vae" if "vae" in os.path.basename(src) else "diffusion_models"
        dest = os.path.join(models, kind, os.path.basename(src))
        if not os.path.exists(dest) or os.path.getmtime(dest) < os.path.getmtime(src):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(src, dest)
            print(f"fixtures: copied {dest}")
    print(f"fixtures: ready in {models}")


if __name__ == "__main__":
    main()
