"""The engine: load a GGUF model, then generate, score and stream text.

    import rocmforge
    with rocmforge.load("stories260K.gguf") as m:
        print(m.generate("Once upon a time", max_tokens=40, temperature=0))
        for piece in m.generate("Once upon a time", stream=True):
            print(piece, end="", flush=True)

Prefill runs the whole prompt in one pass; decoding then runs one token per step for
every active sequence together (``generate_batch``), over a paged KV cache in the
chosen ``KvCacheDtype``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .gguf.reader import GGUFReader
from .kv import CacheConfig, KvCache, KvCacheDtype
from .model.config import ModelConfig
from .model.sampler import Sampler, SamplerConfig
from .model.tokenizer import Tokenizer
from .model.transformer import Transformer
from .model.weights import parse_weights_dtype

DEVICES = ("auto", "cpu", "cuda", "hip")


class ContextLengthError(ValueError):
    """A prompt (plus what must follow it) does not fit the model's context."""


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""            # "eos", "stop", "max_tokens" or "context"

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def decode_tps(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


@dataclass
class _Seq:
    sid: int
    tokens: list                         # prompt + generated ids
    n_prompt: int
    sampler: Sampler
    decoder: object
    text: str = ""                       # decoded text so far
    emitted: int = 0                     # how much of ``text`` was handed out
    logits: object = None                # (V,) logits for the next token
    done: bool = False
    stats: GenerationStats = field(default_factory=GenerationStats)


def _resolve_device(device: str) -> str:
    """auto|cpu|cuda|hip -> "cpu" or the GPU backend's name ("cuda" / "hip")."""
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    if device == "cpu":
        return device
    from . import device as devmod
    if device == "auto":
        return devmod.get_device().kind if devmod.gpu_available() else "cpu"
    return devmod.get_device(device).kind     # raises DeviceError if that backend has no GPU


class Model:
    """A loaded model; see ``rocmforge.load``."""

    def __init__(self, path, device: str = "auto", kv_cache_dtype=None, weights_dtype=None,
                 n_ctx: int | None = None, max_batch: int = 4, page_size: int = 16,
                 progress: bool = False):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        t0 = time.perf_counter()
        self.device = _resolve_device(device)
        gpu = self.device != "cpu"
        self.kv_dtype = KvCacheDtype.parse(kv_cache_dtype or ("mxfp6_e2m3" if gpu else "f32"))
        self._reader = GGUFReader(path)
        meta = self._reader.metadata
        self.tokenizer = Tokenizer.from_metadata(meta)
        self.config = ModelConfig.from_metadata(meta, vocab_size=self.tokenizer.vocab_size)
        tensors = {n: (t.data, t.ttype, t.shape) for n, t in self._reader.tensors.items()}
        self.n_ctx = min(int(n_ctx or min(self.config.context_length, 4096)),
                         self.config.context_length)
        self.max_batch = int(max_batch)
        c = self.config
        if gpu:                          # weights on the device, KV in device memory
            from . import device as devmod
            from .model.gpu_transformer import GpuTransformer
            self.transformer = GpuTransformer(self.config, tensors,
                                              parse_weights_dtype(weights_dtype),
                                              devmod.get_device(self.device), self.n_ctx,
                                              progress=progress)
            self.cache = self.transformer.make_cache(self.max_batch, self.kv_dtype)
        else:
            self.transformer = Transformer(self.config, tensors,
                                           parse_weights_dtype(weights_dtype), progress=progress)
            pages = -(-self.n_ctx // page_size) * self.max_batch
            self.cache = KvCache(CacheConfig(page_size=page_size, max_pages=pages,
                                             num_heads=c.n_kv_heads, head_dim=c.head_dim,
                                             num_layers=c.n_layers, dtype=self.kv_dtype))
        self._next_sid = 0
        self.path = path
        self.load_seconds = time.perf_counter() - t0
        self.last_stats: GenerationStats | None = None

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._reader is not None:
            for obj in (self.cache, self.transformer):   # GPU: free device memory now
                if hasattr(obj, "close"):
                    obj.close()
            self.transformer = None
            self.cache = None
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self):
        if self._reader is None:
            raise RuntimeError("the model is closed")

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str, add_bos: bool | None = None) -> list:
        return self.tokenizer.encode(text, add_bos=add_bos)

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def _new_seq(self) -> int:
        sid = self._next_sid
        self._next_sid += 1
        self.cache.allocate(sid)
        return sid

    def _check_fits(self, n: int):
        if n > self.n_ctx:
            raise ContextLengthError(f"{n} tokens do not fit the context of {self.n_ctx} "
                                     f"tokens (model maximum {self.config.context_length}; "
                                     f"raise n_ctx to use more)")

    # ------------------------------------------------------------------ scoring
    def logits(self, tokens, chunk_size: int | None = None) -> np.ndarray:
        """float32 (n, vocab): the logits after each of ``tokens``.

        By default one forward pass, which attends over the unquantized K/V it just
        computed.  With ``chunk_size`` the tokens go through in chunks, each attending
        over the earlier ones as stored in the KV cache (so in its dtype).
        """
        self._check_open()
        tokens = list(tokens)
        self._check_fits(len(tokens))
        step = int(chunk_size or max(1, len(tokens)))
        if step < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        sid = self._new_seq()
        try:
            return np.concatenate([self.transformer.prefill(tokens[i:i + step], sid, self.cache)
                                   for i in range(0, len(tokens), step)])
        finally:
            self.cache.free(sid)

    def perplexity(self, tokens, chunk_size: int | None = None) -> float:
        """exp(mean NLL of tokens[1:] given the tokens before); ``chunk_size`` as in
        ``logits`` (None: one forward pass)."""
        tokens = list(tokens)
        if len(tokens) < 2:
            raise ValueError("perplexity needs at least 2 tokens")
        lg = self.logits(tokens, chunk_size)[:-1].astype(np.float64)     # (n-1, V)
        m = lg.max(axis=1)
        lse = m + np.log(np.exp(lg - m[:, None]).sum(axis=1))
        nll = lse - lg[np.arange(len(tokens) - 1), tokens[1:]]
        return float(np.exp(nll.mean()))

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: str, max_tokens: int = 128, temperature: float = 0.8,
                 top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repeat_penalty: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] = (), stream: bool = False):
        """Text continuing ``prompt``; with ``stream=True`` a generator of text pieces."""
        kw = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                  min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop)
        gen = self._generate([prompt], **kw)
        if stream:
            return (piece for _, piece in gen)
        return "".join(piece for _, piece in gen)

    def generate_batch(self, prompts: Sequence[str], **kw) -> list:
        """Several prompts decoded together, one token per sequence per step."""
        out = [""] * len(prompts)
        for i, piece in self._generate(list(prompts), **kw):
            out[i] += piece
        return out

    def _generate(self, prompts, max_tokens=128, temperature=0.8, top_k=40, top_p=0.95,
                  min_p=0.05, repeat_penalty=1.0, seed=None, stop=()) -> Iterator:
        self._check_open()
        if len(prompts) > self.max_batch:
            raise ValueError(f"{len(prompts)} prompts exceed max_batch={self.max_batch}")
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        stop = [stop] if isinstance(stop, str) else list(stop)
        seqs = []
        try:
            for i, prompt in enumerate(prompts):
                ids = self.tokenize(prompt)
                if not ids:
                    raise ValueError("the prompt is empty and the model adds no BOS token")
                self._check_fits(len(ids) + 1)
                sampler = Sampler(SamplerConfig(temperature, top_k, top_p, min_p,
                                                repeat_penalty, seed=None if seed is None
                                                else seed + i))
                seqs.append(_Seq(self._new_seq(), list(ids), len(ids), sampler,
                                 self.tokenizer.stream_decoder()))
            for s in seqs:
                t0 = time.perf_counter()
                s.logits = self.transformer.prefill(s.tokens, s.sid, self.cache,
                                                    last_only=True)[0]
                s.stats.prompt_tokens = s.n_prompt
                s.stats.prompt_seconds = time.perf_counter() - t0
            hold = max((len(x) for x in stop), default=1) - 1   # a stop string may straddle pieces
            for _ in range(max_tokens):
                active = [s for s in seqs if not s.done]
                if not active:
                    break
                t0 = time.perf_counter()
                out = []
                for i, s in enumerate(seqs):
                    if s.done:
                        continue
                    tok = s.sampler(s.logits, s.tokens)
                    s.tokens.append(tok)
                    s.stats.generated_tokens += 1
                    if self.tokenizer.is_eog(tok):
                        s.done, s.stats.stop_reason = True, "eos"
                        continue
                    s.text += s.decoder.push(tok)
                    hits = [h for h in (s.text.find(x, max(0, s.emitted - hold)) for x in stop)
                            if h >= 0]
                    if hits:
                        s.text = s.text[:min(hits)]
                        s.done, s.stats.stop_reason = True, "stop"
                    elif s.stats.generated_tokens >= max_tokens:
                        s.done, s.stats.stop_reason = True, "max_tokens"
                    elif len(s.tokens) >= self.n_ctx:
                        s.done, s.stats.stop_reason = True, "context"
                    end = len(s.text) if s.done else len(s.text) - hold
                    if end > s.emitted:
                        out.append((i, s.text[s.emitted:end]))
                        s.emitted = end
                run = [s for s in active if not s.done]
                if run:
                    new = self.transformer.decode([s.tokens[-1] for s in run],
                                                  [s.sid for s in run], self.cache)
                    for s, lg in zip(run, new):
                        s.logits = lg
                dt = time.perf_counter() - t0
                for s in active:
                    s.stats.decode_seconds += dt
                yield from out
            for i, s in enumerate(seqs):
                if not s.done:
                    s.stats.stop_reason = "max_tokens"
                if s.stats.stop_reason != "stop":
                    s.text += s.decoder.flush()
                if len(s.text) > s.emitted:
                    yield i, s.text[s.emitted:]
                    s.emitted = len(s.text)
        finally:
            for s in seqs:
                if s.sid in self.cache:
                    self.cache.free(s.sid)
            if seqs:
                self.last_stats = seqs[0].stats

    def memory_report(self):
        return self.cache.memory_report()


def load(path, device: str = "auto", kv_cache_dtype=None, weights_dtype=None, **kw) -> Model:
    """Load a GGUF model.  device: auto|cpu|cuda|hip; kv_cache_dtype: a ``KvCacheDtype``
    name (default F32 on the CPU, MXFP6_E2M3 on a GPU); weights_dtype: requantize matrices at load
    (mxfp4, mxfp6_e2m3, mxfp8_e4m3, f16, ...), None keeps the file's types."""
    return Model(os.fspath(path), device=device, kv_cache_dtype=kv_cache_dtype,
                 weights_dtype=weights_dtype, **kw)
