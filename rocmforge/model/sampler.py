"""Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty.

The order follows llama.cpp's default chain: repetition penalty -> top-k -> top-p ->
min-p -> temperature -> draw.  temperature <= 0 means greedy (argmax, first index on
ties).  A seeded ``numpy.random.Generator`` makes draws reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SamplerConfig:
    temperature: float = 0.8
    top_k: int = 40              # 0: off
    top_p: float = 0.95          # 1.0: off
    min_p: float = 0.05          # 0.0: off
    repeat_penalty: float = 1.0  # 1.0: off
    repeat_last_n: int = 64      # how many recent tokens the penalty looks at
    seed: int | None = None

    def __post_init__(self):
        checks = [("temperature", self.temperature >= 0), ("top_k", self.top_k >= 0),
                  ("top_p", 0.0 < self.top_p <= 1.0), ("min_p", 0.0 <= self.min_p <= 1.0),
                  ("repeat_penalty", self.repeat_penalty > 0),
                  ("repeat_last_n", self.repeat_last_n >= 0)]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"sampler: {name}={getattr(self, name)!r} is out of range")


class Sampler:
    def __init__(self, config: SamplerConfig | None = None, **kw):
        self.config = config if config is not None else SamplerConfig(**kw)
        self.rng = np.random.default_rng(self.config.seed)

    def __call__(self, logits: np.ndarray, history=()) -> int:
        """logits (V,) float -> token id; ``history`` the tokens so far (for penalties)."""
        c = self.config
        z = np.asarray(logits, dtype=np.float64).copy()
        if c.repeat_penalty != 1.0 and c.repeat_last_n and len(history):
            recent = np.unique(np.asarray(history[-c.repeat_last_n:], dtype=np.int64))
            vals = z[recent]
            z[recent] = np.where(vals > 0, vals / c.repeat_penalty, vals * c.repeat_penalty)
        if c.temperature <= 0:
            return int(np.argmax(z))
        idx = np.argsort(-z, kind="stable")                       # candidates, best first
        if c.top_k:
            idx = idx[: c.top_k]
        p = np.exp(z[idx] - z[idx[0]])
        p /= p.sum()
        if c.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), c.top_p) + 1)   # smallest set >= top_p
            idx, p = idx[:keep], p[:keep]
        if c.min_p > 0.0:
            keep = p >= c.min_p * p[0]
            idx, p = idx[keep], p[keep]
        q = np.exp((z[idx] - z[idx[0]]) / c.temperature)
        q /= q.sum()
        return int(idx[self.rng.choice(len(idx), p=q)])
