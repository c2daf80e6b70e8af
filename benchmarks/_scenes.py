"""Synthetic q / k with spatial "object" structure, so self-attention maps have rank structure.

Random q, k give structureless maps on which every head scores about the same; here each frame
holds a few discs (objects) whose tokens share a per-head direction, plus background and noise.
"""
from __future__ import annotations

import torch


def object_qk(frames: int, height: int, width: int, heads: int, head_dim: int, objects: int = 4,
              strength: float = 3.0, noise: float = 1.0, seed: int = 0,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """-> q, k [1, frames*height*width, heads*head_dim]; heads differ in how sharp they are."""
    gen = torch.Generator().manual_seed(seed)
    n = height * width
    q = torch.empty(1, frames * n, heads * head_dim, dtype=dtype)
    k = torch.empty_like(q)
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    head_gain = torch.linspace(0.3, 1.0, heads)[torch.randperm(heads, generator=gen)]
    for f in range(frames):                       # frame by frame: no full-size float32 temporary
        label = torch.zeros(height, width, dtype=torch.long)
        for o in range(objects):
            cy = float(torch.rand((), generator=gen)) * height
            cx = float(torch.rand((), generator=gen)) * width
            radius = (0.08 + 0.1 * float(torch.rand((), generator=gen))) * min(height, width)
            label[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2] = o + 1
        label = label.reshape(-1)
        dirs = torch.randn(heads, objects + 1, head_dim, generator=gen)
        base = dirs[:, label] * (strength * head_gain[:, None, None])          # [heads, n, d]
        for target in (q, k):
            x = base + noise * torch.randn(heads, n, head_dim, generator=gen)
            target[0, f * n:(f + 1) * n] = x.transpose(0, 1).reshape(n, heads * head_dim).to(dtype)
    return q, k
