"""The transformer forward pass on a GPU (llama and gemma3), mirroring ``Transformer``.

Weights are uploaded once in their GGUF block types (matrices dequantized in registers
by kernels/linear.hip; norms as float32); activations stay on the device; only the
logits come back.  Each step is the CPU ``Transformer._run`` sequence of ops, with
rocmforge.ops.linear / rocmforge.ops.model_ops in place of the NumPy ones.

K/V live in ``GpuKvCache`` (rocmforge/model/gpu_cache.py): helper-6's paged
``DeviceStorage`` in the KV dtype (with its kv_write and paged split-K decode attention)
where the head_dim allows, else a float32 contiguous layout with kernels/model_ops.hip's
attention (MX dtypes applied by quantizing and dequantizing each stored row).  Prefill
from position 0 attends over its own unquantized K/V, as on the CPU.

Decode steps of a given batch size are captured into a device graph after their first
(eager) run and replayed (ROCMFORGE_GPU_GRAPHS=0 turns this off); the inputs (tokens,
positions, slots) live in fixed device buffers that are rewritten before each replay.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..gguf.constants import GgufTensorType
from ..kv import KvCacheDtype
from ..ops import linear as lin_ops
from ..ops import model_ops as mo
from ..ops import mx as mx_ops
from .config import ModelConfig, ModelError
from .gpu_cache import GpuKvCache
from .transformer import Transformer

FRESH_NONE = 2**31 - 1      # attention fresh_start: every key comes from the cache


class _DevLinear:
    """One matrix on the device in its GGUF type (or float32 if no kernel takes it)."""

    def __init__(self, dev, lin):
        self.n_out, self.n_in = lin.n_out, lin.n_in
        try:
            lin_ops.type_suffix(lin.ttype)
            self.ttype, raw = lin.ttype, np.ascontiguousarray(lin.raw)
        except NotImplementedError:            # e.g. Q4_1 / Q5_K: float32 rows instead
            self.ttype = GgufTensorType.F32
            raw = lin.rows(0, lin.n_out).view(np.uint8).reshape(-1)
        self.w = dev.to_device(raw.view(np.uint8))

    def __call__(self, x, n, out, stream):
        return lin_ops.linear(self.w, self.ttype, self.n_out, self.n_in, x, n, out=out,
                              stream=stream)


class GpuTransformer:
    """``Transformer`` on a device: prefill / decode with the same signatures."""

    def __init__(self, cfg: ModelConfig, tensors, weights_dtype=None, device=None,
                 n_ctx: int = 2048, progress: bool = False):
        from .. import device as devmod
        self.cfg = cfg
        self.dev = device or devmod.get_device()
        host = Transformer(cfg, tensors, weights_dtype, progress=progress)  # views / requantized
        self.requantized, self.kept = host.requantized, host.kept
        self.weight_bytes = host.weight_bytes
        if cfg.head_dim > mo.MAX_HEAD_DIM or cfg.n_heads % cfg.n_kv_heads:
            raise ModelError(f"GPU attention needs head_dim <= {mo.MAX_HEAD_DIM} and heads a "
                             f"multiple of KV heads ({cfg.head_dim}, {cfg.n_heads}/{cfg.n_kv_heads})")
        dev = self.dev
        f32 = lambda a: dev.to_device(np.ascontiguousarray(a, np.float32))  # noqa: E731
        self.stream = dev.stream()
        self.tok_embd = _DevLinear(dev, host.tok_embd)
        self.output = self.tok_embd if host.output is host.tok_embd else _DevLinear(dev, host.output)
        self.output_norm = f32(host.output_norm)
        self.layers = []
        for L in host.layers:
            d = {k: _DevLinear(dev, getattr(L, k)) for k in
                 ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")}
            for k in ("attn_norm", "ffn_norm", "q_norm", "k_norm", "post_attn_norm", "post_ffn_norm"):
                if hasattr(L, k):
                    d[k] = f32(getattr(L, k))
            self.layers.append(d)
        self.n_ctx = int(n_ctx)
        self.rope_global = f32(mo.rope_table(self.n_ctx, cfg.rope_base, cfg.rope_dim, cfg.rope_scale))
        self.rope_local = (f32(mo.rope_table(self.n_ctx, cfg.rope_base_local, cfg.rope_dim,
                                             cfg.rope_scale))
                           if cfg.arch == "gemma3" else self.rope_global)
        self.embd_scale = float(np.float32(math.sqrt(cfg.dim))) if cfg.arch == "gemma3" else 1.0
        self._ws = {}            # name -> device buffer, grown on demand
        self._graphs = {}        # decode batch size -> (graph, logits host array)
        # decode steps replay a captured graph; ROCMFORGE_GPU_GRAPHS=0 runs them eagerly
        self.use_graphs = os.environ.get("ROCMFORGE_GPU_GRAPHS", "1") != "0" and self.dev.kind != "cpu"
        self.stream.synchronize()

    # ------------------------------------------------------------------ helpers
    def make_cache(self, max_batch: int, dtype: KvCacheDtype) -> GpuKvCache:
        return GpuKvCache(self.dev, self.cfg, self.n_ctx, max_batch, dtype)

    def _buf(self, name: str, nbytes: int):
        b = self._ws.get(name)
        if b is None or b.nbytes < nbytes:
            if name in self._ws:
                self._graphs.clear()           # captured graphs point at the old buffer
            b = self._ws[name] = self.dev.alloc(max(int(nbytes), 256))
        return b

    def close(self):
        self.stream.synchronize()
        self._graphs.clear()
        bufs = [self.tok_embd.w, self.output.w, self.output_norm, self.rope_global, self.rope_local]
        for d in self.layers:
            bufs += [v.w if isinstance(v, _DevLinear) else v for v in d.values()]
        bufs += list(self._ws.values())
        seen = set()
        for b in bufs:
            if id(b) not in seen and not b.freed:
                seen.add(id(b))
                b.free()
        self.layers, self._ws = [], {}

    # ------------------------------------------------------------------ entry points
    def prefill(self, tokens, seq_id, cache: GpuKvCache, last_only: bool = False) -> np.ndarray:
        """As ``Transformer.prefill``: logits float32 (n, V) (or (1, V) with last_only)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        start = cache.seq_len(seq_id)
        n = len(tokens)
        pos = np.arange(start, start + n, dtype=np.int32)
        slots = np.full(n, cache.slot(seq_id), np.int32)
        cache.advance(seq_id, n)     # raises before any work if it does not fit
        self._paged, self._cache = cache.paged, cache
        try:
            self._inputs(tokens, pos, slots)
            self._forward(n, cache, fresh_start=start, last_only=last_only)
            return self._logits(1 if last_only else n)
        except BaseException:
            cache._len[seq_id] = start
            raise

    def decode(self, tokens, seq_ids, cache: GpuKvCache) -> np.ndarray:
        """One new token per sequence: tokens (B,), seq_ids (B,) -> logits float32 (B, V)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        b = len(tokens)
        pos = np.array([cache.seq_len(s) for s in seq_ids], np.int32)
        slots = np.array([cache.slot(s) for s in seq_ids], np.int32)
        for s in seq_ids:
            cache.advance(s, 1)
        self._paged, self._cache = cache.paged, cache
        self._inputs(tokens, pos, slots)
        g = self._graphs.get((b, id(cache))) if self.use_graphs else None
        if g is not None:
            g.replay(self.stream)
        else:
            if self.use_graphs and (b, "warm", id(cache)) in self._graphs:
                graph = self.dev.graph(self.stream)
                with graph:
                    self._forward(b, cache, fresh_start=FRESH_NONE, last_only=False)
                self._graphs[(b, id(cache))] = graph
                graph.replay(self.stream)
            else:
                self._forward(b, cache, fresh_start=FRESH_NONE, last_only=False)
                self._graphs[(b, "warm", id(cache))] = True
        return self._logits(b)

    # ------------------------------------------------------------------ the pass
    def _inputs(self, tokens, pos, slots):
        n, V = len(tokens), self.tok_embd.n_out
        if n == 0:
            raise ValueError("no tokens to run")
        if tokens.min() < 0 or tokens.max() >= V:
            raise ValueError(f"token id out of range [0, {V}): {int(tokens.min())}..{int(tokens.max())}")
        if pos.max() >= self.n_ctx:
            raise ValueError(f"position {int(pos.max())} is past the context of {self.n_ctx}")
        parts = [tokens.astype(np.int32), pos, slots]
        if self._paged:        # page / slot-in-page of each token, lengths, page tables
            pg, sip = self._cache.page_slots(slots, pos)
            parts += [pg, sip, pos + 1, self._cache.tables(slots).reshape(-1)]
        host = np.concatenate(parts).astype(np.int32)
        self._host_inputs = host                    # alive until the copy has run
        self._buf("inputs", host.nbytes).copy_from_host(host, self.stream)

    def _forward(self, n: int, cache: GpuKvCache, fresh_start: int, last_only: bool):
        c, s = self.cfg, self.stream
        D, H, KV, d, F = c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim
        gemma = c.arch == "gemma3"
        paged = cache.paged
        P = cache.pages_per_slot if paged else 0
        inp = self._buf("inputs", 4 * n * (6 + P if paged else 3))
        iv = lambda i, cnt=n, shape=None: inp.view(4 * n * i, 4 * cnt, dtype=np.int32,  # noqa: E731
                                                   shape=shape or (cnt,))
        tok, pos, slot = iv(0), iv(1), iv(2)
        if paged:
            pages, sip, lens, table = iv(3), iv(4), iv(5), iv(6, n * P, (n, P))
        x = self._buf("x", 4 * n * D)
        h = self._buf("h", 4 * n * max(D, H * d))
        q = self._buf("q", 4 * n * H * d)
        k = self._buf("k", 4 * n * KV * d)
        v = self._buf("v", 4 * n * KV * d)
        o = self._buf("o", 4 * n * max(H * d, D))       # attention out, then ffn out
        g = self._buf("g", 4 * n * max(F, D))           # attn projection, then gate
        u = self._buf("u", 4 * n * F)
        max_keys = self.n_ctx                 # graph replays run at later positions
        n_split = mo.attention_splits(n * H, max_keys, self.dev.info.multiprocessors)
        part = self._buf("attn_part", 4 * mo.attention_part_floats(n, H, d, n_split))
        e = self.tok_embd
        lin_ops.embed(e.w, e.ttype, D, tok, n, self.embd_scale, out=x, stream=s)
        mx_fmt = cache.dtype.mx_format
        eps = c.norm_eps
        mo.rms_norm(h, x, self.layers[0]["attn_norm"], n, D, eps, stream=s)
        rows = 1 if last_only else n
        for i, L in enumerate(self.layers):        # h = attn_norm(x) on entry
            local = c.is_local(i)
            L["wq"](h, n, q, s)
            L["wk"](h, n, k, s)
            L["wv"](h, n, v, s)
            tab = self.rope_local if local else self.rope_global
            mo.qk_rope(q, k, L.get("q_norm"), L.get("k_norm"), pos, tab, n, H, KV, d,
                       c.rope_dim, c.rope_neox, eps, stream=s)
            window = c.sliding_window if local else None
            if paged:
                self._paged_attention(i, cache, q, k, v, o, n, slot, pos, pages, sip, lens,
                                      table, fresh_start, window, n_split, part)
            else:
                ks, vs = k, v
                if mx_fmt is not None:           # the values an MX cache holds
                    ks, vs = self._mx_round(k, v, n, mx_fmt)
                layer_off = i * cache.layer_stride
                mo.kv_store(cache.k, cache.v, ks, vs, slot, pos, n, KV * d, cache.slot_stride,
                            layer_off, stream=s)
                mo.attention(o, q, cache.k, cache.v, k, v, slot, pos, n, H, KV, d,
                             cache.slot_stride, layer_off, fresh_start, window, c.attn_scale,
                             n_split=n_split, part=part, stream=s)
            L["wo"](o, n, g, s)
            # x += post_attn_norm(attn) (gemma) or attn; h = ffn_norm(x)
            mo.residual_norm(x, h, g, L.get("post_attn_norm"), L["ffn_norm"], n, D, eps, stream=s)
            L["w_gate"](h, n, g, s)
            L["w_up"](h, n, u, s)
            mo.act_mul(g, g, u, n * F, "gelu_tanh" if gemma else "silu", stream=s)
            L["w_down"](g, n, o, s)
            # x += post_ffn_norm(ffn) (gemma) or ffn; h = next layer's attn_norm(x)
            last = i == len(self.layers) - 1
            nxt = None if last else self.layers[i + 1]["attn_norm"]
            mo.residual_norm(x, h, o, L.get("post_ffn_norm"), nxt, n, D, eps, stream=s)
        xl = x.view(4 * (n - rows) * D, 4 * rows * D)
        mo.rms_norm(h, xl, self.output_norm, rows, D, eps, stream=s)
        logits = self._buf("logits", 4 * rows * self.output.n_out)
        self.output(h, rows, logits, s)

    def _paged_attention(self, i, cache, q, k, v, o, n, slot, pos, pages, sip, lens, table,
                         fresh_start, window, n_split, part):
        """Paged layout: encode this step's K/V into the pages (kv_write), then attend.
        A prefill from position 0 attends over its own unquantized K/V (as on the CPU);
        decode steps, and prefill chunks after earlier tokens (each query a row of its own
        with its length), use the paged split-K decode attention over the stored pages."""
        from ..ops import attention as attn_ops
        c, s = self.cfg, self.stream
        H, KV, d = c.n_heads, c.n_kv_heads, c.head_dim
        st, cc = cache.storage, cache.config
        typed = lambda b, heads: b.view(0, 4 * n * heads * d, dtype=np.float32,  # noqa: E731
                                        shape=(n, heads, d))
        kt, vt = typed(k, KV), typed(v, KV)
        attn_ops.kv_write(st.k_pages[i], st.v_pages[i], kt, vt, pages, sip, cc, stream=s)
        if fresh_start == 0:
            mo.attention(o, q, k, v, k, v, slot, pos, n, H, KV, d, 0, 0, 0, window,
                         c.attn_scale, n_split=n_split, part=part, stream=s)
            return
        if self.dev.kind == "cpu":           # the same, from the pages, with the CPU op
            return self._paged_attention_cpu(i, cache, q, o, n, pos, table, window)
        ws = self._buf("paged_ws", attn_ops.workspace_bytes(n, H, d, self._paged_splits(n)))
        attn_ops.paged_decode_attention(
            typed(q, H), st.k_pages[i], st.v_pages[i], table, lens, dtype=cc.dtype,
            num_kv_heads=KV, head_dim=d, page_size=cc.page_size, row_bytes=cc.row_bytes,
            scale=c.attn_scale, max_len=self.n_ctx, window=window,
            n_splits=self._paged_splits(n), out=typed(o, H), workspace=ws, stream=s)

    def _paged_attention_cpu(self, i, cache, q, o, n, pos, table, window):
        from ..kv.cache import decode_rows
        c, cc = self.cfg, cache.config
        H, KV, d = c.n_heads, c.n_kv_heads, c.head_dim
        p = pos.copy_to_host().view(np.int32)[:n]
        tab = table.copy_to_host().view(np.int32).reshape(n, -1)
        kp, vp = cache.storage.to_host(i)                    # (pages, page_size, row_bytes)
        qs = q.copy_to_host().view(np.float32).reshape(-1)[:n * H * d].reshape(n, H, d)
        res = np.empty((n, H, d), np.float32)
        for t in range(n):
            keys = np.arange(int(p[t]) + 1)
            rows = tab[t][keys // cc.page_size], keys % cc.page_size
            kk = decode_rows(cc.dtype, kp[rows]).reshape(-1, KV, d)
            vv = decode_rows(cc.dtype, vp[rows]).reshape(-1, KV, d)
            res[t] = mo.attention_cpu(qs[t:t + 1], kk, vv, [int(p[t])], c.attn_scale, window)[0]
        o.view(0, res.nbytes).copy_from_host(res)

    def _paged_splits(self, n: int) -> int:
        """Key splits of the paged attention: fixed by n_ctx (graph replays at later
        positions use the same launch shape)."""
        from ..ops import attention as attn_ops
        c, cc = self.cfg, self._cache.config
        return attn_ops.decode_plan(self.dev, cc.dtype, c.head_dim, c.n_kv_heads, c.n_heads,
                                    cc.page_size, self.n_ctx, n)[1]

    def _mx_round(self, k, v, n, fmt):
        """K/V rows quantized to ``fmt`` and back (float32), in workspace buffers."""
        row = self.cfg.n_kv_heads * self.cfg.head_dim
        qb = row // 32 * fmt.block_bytes
        out = []
        for name, src in (("kq", k), ("vq", v)):
            xs = src.view(0, 4 * n * row, dtype=np.float32, shape=(n, row))
            qbuf = self._buf(name + "_codes", n * qb).view(0, n * qb, dtype=np.uint8, shape=(n, qb))
            mx_ops.quantize(xs, fmt, out=qbuf, stream=self.stream)
            r = self._buf(name, 4 * n * row)
            mx_ops.dequantize(qbuf, fmt, np.float32, out=r.view(0, 4 * n * row), stream=self.stream)
            out.append(r)
        return out

    def _logits(self, rows: int) -> np.ndarray:
        V = self.output.n_out
        res = np.empty((rows, V), np.float32)
        self._buf("logits", 4 * rows * V).copy_to_host(res, stream=self.stream)
        return res
