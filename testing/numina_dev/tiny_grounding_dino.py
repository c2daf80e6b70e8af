"""A tiny random GroundingDINO saved like a Hugging Face folder, for CPU tests and the demo.

The real judge (IDEA-Research/grounding-dino-tiny, 690 MB) cannot be fetched here.  This one has
the same architecture and folder layout (config.json, model.safetensors, preprocessor_config.json,
tokenizer files), random weights, a 17-word vocabulary and 64-128 px inputs, so
``numina_ops.detector.load_grounding_dino`` loads and runs it offline in well under a second.
Its boxes mean nothing; their number, placement and the code path are what the tests check.
"""
from __future__ import annotations

import inspect
import os

import torch
from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                          GroundingDinoImageProcessor, SwinConfig)

# "triangles" is not a word here: the tokenizer splits it into "tri" "##angles", like a real
# BERT vocabulary splits rarer nouns.
VOCABULARY = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "apples", "dogs", "cats", "circles", "balls",
              "cars", "red", "a", "tri", "##angles", "##s")
IMAGE_SIZE = {"shortest_edge": 128, "longest_edge": 192}   # a square frame at 64 px leaves a 1 x 1 last feature map, which GroupNorm refuses


def _config(vocab_size: int) -> GroundingDinoConfig:
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)
    # decoder_layers 2: with 1 the box heads tied across decoder layers fail to build
    return GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                               decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                               encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=20, encoder_n_points=2,
                               decoder_n_points=2, max_text_len=32)


# The judge's real shapes (IDEA-Research/grounding-dino-tiny: Swin-T, BERT-base, 900 queries, 800-1333 px
# inputs), for timing and memory: transformers' GroundingDinoConfig defaults are that model.
REAL_IMAGE_SIZE = {"shortest_edge": 800, "longest_edge": 1333}


def _real_config(vocab_size: int) -> GroundingDinoConfig:
    return GroundingDinoConfig(text_config=BertConfig(vocab_size=vocab_size))


def build_tiny_grounding_dino(folder: str, seed: int = 0, real_shapes: bool = False) -> str:
    """Write a tiny random GroundingDINO (model.safetensors + processor) into ``folder``; returns
    ``folder``.  The same seed writes the same weights.  ``real_shapes``: the judge's own
    architecture and input size instead (random weights, about 690 MB), for benchmarks."""
    os.makedirs(folder, exist_ok=True)
    # The layout users download from the hub: preprocessor_config.json, vocab.txt, tokenizer files.
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCABULARY) + "\n")
    if "vocab_file" in inspect.signature(BertTokenizer.__init__).parameters:   # transformers 4.x
        tokenizer = BertTokenizer(vocab_file=vocab_file, do_lower_case=True)
    else:                                                                      # transformers 5: a vocab dict
        tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(VOCABULARY)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    GroundingDinoImageProcessor(size=dict(REAL_IMAGE_SIZE if real_shapes else IMAGE_SIZE)).save_pretrained(folder)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = (_real_config if real_shapes else _config)(len(VOCABULARY))
        model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return folder
