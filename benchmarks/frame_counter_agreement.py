"""How often the CountWorld frame counter (the closed loop's judge, on decoded pictures) agrees with
the latent counter (the benchmark's metric) on real MODEL outputs.

Plain sampling through ComfyUI's nodes (countworld/evaluate.py's ComfyPipeline: euler / simple,
25 steps, CFG 1), the 24 TUNING prompts x 1 seed, both committed models, decoded as the testing
pack's NuminaCountWorldVAE decodes (code pictures, countworld/frame_counter.py).  Per latent frame
and noun (all three of the world's nouns; the prompt's nouns alone as well) the two counts agree or
not; a video agrees when every count agrees.  The four video frames of a later latent frame are
identical copies, so latent frames are what is scored (the script checks the copies count alike).

    nice .numina_env/venv/bin/python benchmarks/frame_counter_agreement.py            # ~ 3 minutes

`--latents PATH` keeps the sampled latents (read them back instead of sampling when the file
exists).  Writes benchmarks/results/frame_counter_agreement.json.

Result, 2026-12-06, this 2-core CPU: 1.000 of the noun-frames and of the videos on both models.
(A first judge read the preview-colour pictures, colour then outline, as a shape detector would:
0.347 and 0.326 of the noun-frames, 1 of 48 videos; the models' blobs carry their noun in the
invisible part of the code, not in their outline.  See countworld/frame_counter.py.)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = ("countworld_wan21_t2v.safetensors", "countworld_wan21_t2v_s1.safetensors")
RESULT = os.path.join(ROOT, "benchmarks", "results", "frame_counter_agreement.json")


def sample_all(checkpoints, prompts, seeds, steps, cfg) -> dict[str, list[torch.Tensor]]:
    from countworld import evaluate

    out = {}
    for checkpoint in checkpoints:
        pipeline = evaluate.ComfyPipeline(checkpoint=checkpoint)
        out[checkpoint] = [pipeline.sample(p, s, steps, cfg) for p in prompts for s in seeds]
        print(f"sampled {len(out[checkpoint])} videos of {checkpoint}", flush=True)
    return out


def compare(samples: torch.Tensor, prompt: str, judge, decode) -> dict:
    """One video: latent counts vs frame counts, per noun and latent frame."""
    from countworld import counter, world

    latent_counts = counter.count_samples(samples)[0]
    frames = decode(samples)[0]                                   # [1 + 4(T-1), H, W, 3]
    boxes = judge.detect(frames, list(world.NOUNS))
    video_counts = {noun: [len(boxes[f][n]) for f in range(len(boxes))] for n, noun in enumerate(world.NOUNS)}
    first_of_latent = [0] + [1 + 4 * t for t in range(samples.shape[2] - 1)]
    for noun, series in video_counts.items():        # the 4 copies of a latent frame count alike
        for t in range(1, samples.shape[2]):
            copies = series[1 + 4 * (t - 1): 1 + 4 * t]
            assert len(set(copies)) == 1, (prompt, noun, series)
    frame_counts = {noun: [series[f] for f in first_of_latent] for noun, series in video_counts.items()}
    prompt_nouns = [t.noun for t in world.parse_prompt(prompt)]
    return {"prompt": prompt, "latent_counts": {n: [int(c) for c in v] for n, v in latent_counts.items()},
            "frame_counts": frame_counts, "prompt_nouns": prompt_nouns}


def decode_code_pictures(samples: torch.Tensor) -> torch.Tensor:
    """A sampler batch [B, 16, T, H, W] -> the judge's frames [B, 1 + 4(T-1), 256, 256, 3], as the
    testing pack's NuminaCountWorldVAE decodes them."""
    from countworld.counter import to_model_space
    from countworld.frame_counter import code_pictures

    videos = []
    for latent in to_model_space(samples):
        frames = torch.from_numpy(code_pictures(latent, 8))
        videos.append(frames.repeat_interleave(torch.tensor([1] + [4] * (frames.shape[0] - 1)), dim=0))
    return torch.stack(videos)


def summarise(videos: list[dict]) -> dict:
    agree = total = agree_prompt = total_prompt = agree_sum = total_sum = 0
    all_agree = 0
    for v in videos:
        ok = True
        frames = len(next(iter(v["latent_counts"].values())))
        for noun, latent in v["latent_counts"].items():
            for t in range(frames):
                same = latent[t] == v["frame_counts"][noun][t]
                agree += same
                total += 1
                ok &= same
                if noun in v["prompt_nouns"]:
                    agree_prompt += same
                    total_prompt += 1
        for t in range(frames):
            agree_sum += sum(c[t] for c in v["latent_counts"].values()) == sum(c[t] for c in v["frame_counts"].values())
            total_sum += 1
        v["all_agree"] = bool(ok)
        all_agree += ok
    return {"videos": len(videos), "noun_frames": total, "noun_frame_agreement": round(agree / total, 4),
            "prompt_noun_frames": total_prompt, "prompt_noun_frame_agreement": round(agree_prompt / total_prompt, 4),
            "video_agreement": round(all_agree / len(videos), 4),
            "total_objects_agreement": round(agree_sum / total_sum, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latents", default="", help="keep the sampled latents here (reused when present)")
    parser.add_argument("--json", default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    from numina_dev import comfy_runtime

    comfy_runtime.bootstrap()
    from countworld.frame_counter import CountWorldFrameCounter
    from countworld.prompts import tuning_prompts
    prompts, seeds = tuning_prompts(), list(range(args.seeds))
    if args.latents and os.path.exists(args.latents):
        latents = torch.load(args.latents)
        print(f"latents read from {args.latents}")
    else:
        latents = sample_all(CHECKPOINTS, prompts, seeds, args.steps, args.cfg)
        if args.latents:
            torch.save(latents, args.latents)
    sampled = time.time()

    judge = CountWorldFrameCounter()
    results = {}
    for checkpoint in CHECKPOINTS:
        texts = [p for p in prompts for _ in seeds]
        videos = [compare(s, p, judge, decode_code_pictures)
                  for s, p in zip(latents[checkpoint], texts)]
        results[checkpoint] = {"summary": summarise(videos), "videos": videos}

    print(f"\nframe counter vs latent counter, {len(prompts)} tuning prompts x {len(seeds)} seed(s), "
          f"{args.steps} steps, CFG {args.cfg}; per latent frame, all 3 nouns")
    print(f"{'model':40s} {'noun-frames':>11s} {'agree':>7s} {'prompt nouns':>12s} {'videos':>7s} {'all agree':>9s} {'totals':>7s}")
    for checkpoint, r in results.items():
        s = r["summary"]
        print(f"{checkpoint:40s} {s['noun_frames']:11d} {s['noun_frame_agreement']:7.3f} "
              f"{s['prompt_noun_frame_agreement']:12.3f} {s['videos']:7d} {s['video_agreement']:9.3f} "
              f"{s['total_objects_agreement']:7.3f}")
    total = time.time() - start
    print(f"run time {total / 60:.1f} min (sampling {(sampled - start) / 60:.1f} min)")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"set": "tuning", "seeds": args.seeds, "steps": args.steps, "cfg": args.cfg,
                   "judge": judge.describe(), "seconds": round(total, 1),
                   "models": results}, f, indent=1)
    print(f"wrote {os.path.relpath(args.json, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
