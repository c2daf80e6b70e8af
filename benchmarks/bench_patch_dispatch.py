"""The attention patch's per-call CPU cost: one guided text cross-attention call at tiny shapes.

At tiny shapes the arithmetic is close to nothing, so what is left is Python and op dispatch:
the part that bounds one guided call on a GPU at Wan2.1 1.3B shapes, where the plain call takes
about 0.38 ms (uncond + cond, H200) and every op of the guided path costs a kernel launch.  Prints
the guided call, the plain call it wraps, and the difference, best of 7 x 500 calls.

    .numina_env/venv/bin/python benchmarks/bench_patch_dispatch.py
"""
from __future__ import annotations

import time

import torch

from numina_dev import comfy_runtime


def main() -> None:
    torch.set_num_threads(1)
    comfy_runtime.bootstrap()
    comfy_runtime.load_custom_nodes()
    patch = comfy_runtime.pack_module("NuminaCrossAttnGuide").attention_patch
    from numina_ops.records import CountTarget, Layout, NounLayout, Targets, TokenGrid

    grid = TokenGrid(2, 8, 8)
    labels = torch.zeros(2, 8, 8, dtype=torch.int32, device="cpu")
    labels[0, 0:2, 0:2] = 1          # an instance, and an added one beside it (matched)
    labels[0, 4:6, 4:6] = 100
    labels[1, 1:3, 1:3] = 101        # added into an empty frame
    labels[1, 5:7, 5:7] = -1         # removed
    noun = NounLayout(noun="cats", target=2, token_positions=(3,), labels=labels, counts=(2, 1))
    layout = Layout(grid=grid, targets=Targets("two cats", (CountTarget("cats", 2, (4, 8)),)), nouns=(noun,),
                    refined=True, schedule=(1.0, 0.5, 0.0))
    session = patch.GuideSession(patch.WanInfo("wan21", 2, 2, (1, 2, 2), 16), layout, "sparse")
    gen = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(2, grid.tokens, 128, generator=gen, device="cpu")
    k, v = (torch.randn(2, 24, 128, generator=gen, device="cpu") for _ in range(2))
    forward = patch.ForwardContext(grid=layout.grid, text_tokens=24, image_tokens=0, video_offset=0,
                                   cond=patch.cond_slices([1, 0], 2), step=0, steps=2,
                                   strength=session.strength_at(0, 2))
    options = {patch.FORWARD_KEY: forward, "block_index": 0}

    def plain(q, k, v, heads, **kwargs):
        b, n, c = q.shape
        split = lambda t: t.view(b, -1, heads, c // heads).transpose(1, 2)   # noqa: E731
        return torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, n, c)

    calls = {"guided": lambda: session.attention(plain, None, (q, k, v), {"heads": 2, "transformer_options": options}),
             "plain": lambda: plain(q, k, v, 2)}
    best = {}
    for name, call in calls.items():
        for _ in range(200):
            call()
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(500):
                call()
            times.append((time.perf_counter() - t0) / 500)
        best[name] = min(times)
    print(f"guided call {best['guided'] * 1e6:.0f} us, plain call {best['plain'] * 1e6:.0f} us,"
          f" the patch's own cost {1e6 * (best['guided'] - best['plain']):.0f} us per call (one thread)")


if __name__ == "__main__":
    main()
