"""Tokenizer built from GGUF ``tokenizer.ggml.*`` metadata, matching llama.cpp.

Two tokenizer models (``tokenizer.ggml.model``):

* ``"llama"``: SentencePiece-style BPE (llama.cpp's ``llm_tokenizer_spm``): spaces become
  U+2581, an optional space prefix, greedy bigram merging by the highest token score (ties:
  leftmost), ``<0xNN>`` byte fallback.  LLaMA 1/2, Gemma 1/2/3, Mistral v0.1, ...
* ``"gpt2"``: byte-level BPE (``llm_tokenizer_bpe``): a pre-tokenizer splits the text into
  words, each word is byte-mapped with GPT-2's ``bytes_to_unicode`` table and merged by
  ``tokenizer.ggml.merges`` rank.  Pre-tokenizers: see ``PRE_TOKENIZERS``.

Special tokens (control, user-defined, unknown) are cut out of the text first, longest first,
as llama.cpp's ``tokenizer_st_partition`` does; user-defined tokens always, control and
unknown tokens only with ``parse_special=True``.  See docs/TOKENIZER.md.

Token texts are Python ``str``; a token that is not valid UTF-8 (given as bytes) is kept with
``surrogateescape`` so its bytes survive decoding.
"""
from __future__ import annotations

import codecs
import heapq
import re
import warnings
from typing import Iterable, Mapping

from .pretokenize import PRE_TOKENIZERS, _LATIN1_TO_UNI, _PRE_SPECS, _UNI_TO_BYTE, _RegexStep

__all__ = ["Tokenizer", "TokenizerError", "StreamDecoder", "SUPPORTED_MODELS", "PRE_TOKENIZERS"]


class TokenizerError(ValueError):
    """Bad tokenizer metadata or bad input to the tokenizer."""


SUPPORTED_MODELS = ("llama", "gpt2")

# GGUF token types (tokenizer.ggml.token_type), used directly as the token attribute.
UNDEFINED, NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = range(7)

K = "tokenizer.ggml."
SPACE = "\u2581"  # SentencePiece's escaped space

# Token texts llama.cpp recognises by text (llama_vocab::impl::load); each is marked CONTROL.
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
              "<｜end▁of▁sentence｜>")
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_TEXTS = {  # name -> texts
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"),
    "pad": ("<|fim_pad|>", "<fim-pad>", "<PAD>"),
    "rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"),
    "sep": ("<|file_sep|>",),
}
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
              "<|eom_id|>", "<EOT>")

# ---------------------------------------------------------------- metadata helpers
def _text(v, key: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "surrogateescape")
    if hasattr(v, "tobytes") and getattr(v, "dtype", None) is not None and v.dtype.kind in "uiS":
        return v.tobytes().decode("utf-8", "surrogateescape")
    raise TokenizerError(f"metadata {key!r}: expected a string, got {type(v).__name__}")


def _int(v, key: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise TokenizerError(f"metadata {key!r}: expected an integer, got {v!r}") from None


def _array(meta: Mapping, key: str, n: int, conv) -> list | None:
    if key not in meta:
        return None
    v = meta[key]
    try:
        vals = [conv(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]
    except (TypeError, ValueError):
        raise TokenizerError(f"metadata {key!r}: expected an array of numbers") from None
    if len(vals) < n:
        raise TokenizerError(f"metadata {key!r} has {len(vals)} entries, fewer than the "
                             f"{n} tokens of {K}tokens")
    return vals


class Tokenizer:
    """encode(text) -> ids and decode(ids) -> text, as llama.cpp does for the same GGUF."""

    def __init__(self, *, model: str, tokens: list, scores: list | None = None,
                 token_types: list | None = None, merges: list | None = None,
                 pre: str | None = None, meta: Mapping | None = None):
        meta = meta if meta is not None else {}
        if model not in SUPPORTED_MODELS:
            raise TokenizerError(f"unsupported {K}model {model!r}; supported: "
                                 + ", ".join(SUPPORTED_MODELS))
        if not tokens:
            raise TokenizerError(f"metadata {K + 'tokens'!r} is empty")
        self.model = model
        n = len(tokens)
        texts = [_text(t, K + "tokens") for t in tokens]
        for i, t in enumerate(texts):
            if not t:
                texts[i] = f"[EMPTY_{i}]"  # as llama.cpp
        self._texts = texts                       # (n_vocab,) str
        self._token_to_id = {t: i for i, t in enumerate(texts)}
        if len(self._token_to_id) != n:
            seen: dict = {}
            for i, t in enumerate(texts):
                if t in seen:
                    raise TokenizerError(f"metadata {K + 'tokens'!r}: token {t!r} appears at "
                                         f"ids {seen[t]} and {i}")
                seen[t] = i
        self._scores = scores if scores is not None else [0.0] * n          # (n_vocab,) float
        attr = [NORMAL] * n if token_types is None else \
            [t if 0 < t <= BYTE else UNDEFINED for t in token_types[:n]]
        self._attr = attr                          # (n_vocab,) GGUF token type

        # ---- defaults per model, then metadata (llama_vocab::impl::load)
        spm = model == "llama"
        ids = dict(bos=1, eos=2, unk=0) if spm else dict(bos=11, eos=11, unk=None)
        flags = dict(add_space_prefix=spm, add_bos=spm, add_eos=False, clean_spaces=not spm,
                     ignore_merges=False)
        self.pre = None
        self._steps: list = []
        if not spm:
            self.pre = pre if pre else "default"
            if self.pre not in PRE_TOKENIZERS:
                raise TokenizerError(f"unsupported {K}pre {self.pre!r} for model 'gpt2'; "
                                     "supported: " + ", ".join(sorted(PRE_TOKENIZERS)))
            exprs, pre_flags = _PRE_SPECS[PRE_TOKENIZERS[self.pre]]
            flags.update(pre_flags)
            self._steps = [_RegexStep(e) for e in exprs]
        for name, key in (("add_space_prefix", "add_space_prefix"), ("add_bos", "add_bos_token"),
                          ("add_eos", "add_eos_token")):
            if K + key in meta:
                flags[name] = bool(meta[K + key])
        self.add_space_prefix = flags["add_space_prefix"]
        self.add_bos = flags["add_bos"]
        self.add_eos = flags["add_eos"]
        self.clean_spaces = flags["clean_spaces"]
        self._ignore_merges = flags["ignore_merges"]
        for name, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"),
                          ("eom", "eom_token_id"), ("unk", "unknown_token_id"),
                          ("pad", "padding_token_id"), ("fim_pad", "fim_pad_token_id"),
                          ("fim_rep", "fim_rep_token_id"), ("fim_sep", "fim_sep_token_id")):
            if K + key in meta:
                v = _int(meta[K + key], K + key)
                if v in (-1, 0xFFFFFFFF):  # "no such token" as written by some converters
                    continue
                if 0 <= v < n:
                    ids[name] = v
                else:
                    warnings.warn(f"{K}{key} = {v} is out of range for {n} tokens; ignored",
                                  stacklevel=3)
        ids = {k: (v if v is not None and 0 <= v < n else None) for k, v in ids.items()}

        # ---- tokens recognised by text are marked CONTROL; end-of-generation set
        def find(texts_):
            found = sorted(self._token_to_id[t] for t in texts_ if t in self._token_to_id)
            for i in found:
                attr[i] = CONTROL
            return found
        eot = find(_EOT_TEXTS)
        eom = find(_EOM_TEXTS)
        for name, tx in _FIM_TEXTS.items():
            found = find(tx)
            if ids.get("fim_" + name) is None and found and name in ("pad", "rep", "sep"):
                ids["fim_" + name] = found[0]
        if ids.get("eot") is None and eot:
            ids["eot"] = eot[0]
        if ids.get("eom") is None and eom:
            ids["eom"] = eom[0]
        eog = set(find(_EOG_TEXTS))
        for k in ("eos", "eot", "eom", "fim_pad", "fim_rep", "fim_sep"):
            if ids.get(k) is not None:
                eog.add(ids[k])
        self._ids = ids
        self._eog = frozenset(eog)

        # ---- special tokens cut out before tokenizing: longest (in bytes) first
        spec = [i for i, a in enumerate(attr) if a in (CONTROL, USER_DEFINED, UNKNOWN)]
        spec.sort(key=lambda i: -len(texts[i].encode("utf-8", "surrogateescape")))
        self._special = [(i, texts[i]) for i in spec]

        # ---- SPM: safe split points for the chunked fast path (see _spm_chunks)
        if spm:
            before = {t[j - 1] for t in texts if SPACE in t[1:]
                      for j in range(1, len(t)) if t[j] == SPACE and t[j - 1] != SPACE}
            cls = "".join(re.escape(c) for c in sorted(before))
            self._spm_split = re.compile(f"(?<=[^{SPACE}{cls}])(?={SPACE})")
        # ---- BPE merges: (left, right) -> rank; the first occurrence wins (llama.cpp emplace)
        self._ranks: dict = {}
        if not spm:
            for r, m in enumerate(merges or ()):
                m = _text(m, K + "merges")
                p = m.find(" ", 1)
                pair = (m[:p], m[p + 1:]) if p >= 0 else ("", "")
                self._ranks.setdefault(pair, r)
        self._cache: dict = {}
        self._pieces: dict = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_metadata(cls, meta: Mapping) -> "Tokenizer":
        """Build from a mapping of GGUF key -> value (strings, numbers, lists/arrays)."""
        for key in (K + "model", K + "tokens"):
            if key not in meta:
                raise TokenizerError(f"missing required metadata key {key!r}")
        model = _text(meta[K + "model"], K + "model")
        if model not in SUPPORTED_MODELS:
            raise TokenizerError(f"unsupported {K}model {model!r}; supported: "
                                 + ", ".join(SUPPORTED_MODELS))
        tokens = meta[K + "tokens"]
        tokens = list(tokens.tolist() if hasattr(tokens, "tolist") else tokens)
        n = len(tokens)
        merges = None
        if model == "gpt2":
            if K + "merges" not in meta:
                raise TokenizerError(f"missing required metadata key {K + 'merges'!r}")
            merges = list(meta[K + "merges"])
        pre = _text(meta[K + "pre"], K + "pre") if K + "pre" in meta else None
        return cls(model=model, tokens=tokens, merges=merges, pre=pre, meta=meta,
                   scores=_array(meta, K + "scores", n, float),
                   token_types=_array(meta, K + "token_type", n, int))

    # ------------------------------------------------------------------ properties
    vocab_size = property(lambda self: len(self._texts))
    bos_id = property(lambda self: self._ids["bos"])
    eos_id = property(lambda self: self._ids["eos"])
    eot_id = property(lambda self: self._ids.get("eot"))
    unk_id = property(lambda self: self._ids["unk"])
    pad_id = property(lambda self: self._ids.get("pad"))
    eog_ids = property(lambda self: self._eog)

    def is_eog(self, token_id: int) -> bool:
        """End of generation: EOS, EOT, EOM and tokens such as <end_of_turn> (as llama.cpp)."""
        return token_id in self._eog

    def token_text(self, token_id: int) -> str:
        return self._texts[self._check_id(token_id, 0)]

    def token_type(self, token_id: int) -> int:
        """GGUF token type (1 normal ... 6 byte); tokens llama.cpp marks control report 3."""
        return self._attr[self._check_id(token_id, 0)]

    def token_to_id(self, text: str) -> int | None:
        return self._token_to_id.get(text)

    def __repr__(self) -> str:
        return (f"Tokenizer(model={self.model!r}, pre={self.pre!r}, vocab_size={self.vocab_size}, "
                f"bos={self.bos_id}, eos={self.eos_id})")

    # ------------------------------------------------------------------ encode
    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False,
               add_eos: bool | None = None) -> list:
        """Text -> token ids, as llama_tokenize(add_special, parse_special).

        add_bos / add_eos default to the model's tokenizer.ggml.add_{bos,eos}_token.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes str, got {type(text).__name__}")
        add_bos = self.add_bos if add_bos is None else add_bos
        add_eos = self.add_eos if add_eos is None else add_eos
        out: list = []
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError("add_bos requested but this vocabulary has no BOS token")
            out.append(self.bos_id)
        frags = self._partition(text, parse_special) if text else []
        if self.model == "llama":
            prev_special = True  # a space prefix goes before the first text and after specials
            for f in frags:
                if type(f) is int:
                    out.append(f)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    f = " " + f
                self._spm_chunks(f.replace(" ", SPACE), out)
                prev_special = False
        else:
            for f in frags:
                if type(f) is int:
                    out.append(f)
                else:
                    for word in self.pre_tokenize(f):
                        self._bpe_word(word.encode("utf-8", "surrogatepass")
                                       .decode("latin-1").translate(_LATIN1_TO_UNI), out)
        if add_eos:
            if self.eos_id is None:
                raise TokenizerError("add_eos requested but this vocabulary has no EOS token")
            out.append(self.eos_id)
        return out

    def _partition(self, text: str, parse_special: bool) -> list:
        """tokenizer_st_partition: cut special tokens out; -> list of str | int (token id)."""
        frags: list = [text]
        attr = self._attr
        for tid, tt in self._special:
            if not parse_special and attr[tid] != USER_DEFINED:
                continue
            if tt not in text:
                continue
            new = []
            for f in frags:
                if type(f) is int or tt not in f:
                    new.append(f)
                    continue
                start = 0
                while True:
                    j = f.find(tt, start)
                    if j < 0:
                        break
                    if j > start:
                        new.append(f[start:j])
                    new.append(tid)
                    start = j + len(tt)
                if start < len(f):
                    new.append(f[start:])
            frags = new
        return frags

    # ---- SPM
    def _spm_chunks(self, s: str, out: list) -> None:
        """SPM on escaped text, split where no vocabulary token can span (fast path).

        A merge needs the bigram text in the vocabulary, so no merge crosses a boundary
        "x|U+2581" when no token contains x followed by U+2581 (x != U+2581); the merge order
        inside each chunk is then the same as in the whole text, so the result is identical
        to ``_spm_session(s)`` (the reference; tests compare them).  Chunks are cached.
        """
        cache = self._cache
        for chunk in self._spm_split.split(s):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._spm_session(chunk)
                if len(cache) > 200_000:
                    cache.clear()
                cache[chunk] = ids
            out.extend(ids)

    def _spm_session(self, s: str) -> list:
        """llm_tokenizer_spm_session::tokenize on escaped text s -> ids (reference)."""
        n = len(s)
        if n == 0:
            return []
        tok, score = self._token_to_id, self._scores
        ln = [1] * n                    # (n,) symbol length in codepoints; 0 = merged away
        nxt = list(range(1, n + 1))     # (n,) next symbol index, -1 at the end
        nxt[-1] = -1
        prv = list(range(-1, n - 1))    # (n,) previous symbol index
        heap = []                       # (-score, left, right, size): best score, then leftmost
        for i in range(n - 1):
            tid = tok.get(s[i:i + 2])
            if tid is not None:
                heap.append((-score[tid], i, i + 1, 2))
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            _, left, right, size = pop(heap)
            nl, nr = ln[left], ln[right]
            if nl == 0 or nr == 0 or nl + nr != size:
                continue  # stale: one side changed since this bigram was queued
            nl += nr
            ln[left] = nl
            ln[right] = 0
            after = nxt[right]
            nxt[left] = after
            if after >= 0:
                prv[after] = left
            p = prv[left]
            if p >= 0:
                t = s[p:left + nl]
                tid = tok.get(t)
                if tid is not None:
                    push(heap, (-score[tid], p, left, len(t)))
            if after >= 0:
                t = s[left:after + ln[after]]
                tid = tok.get(t)
                if tid is not None:
                    push(heap, (-score[tid], left, after, len(t)))
        out = []
        i = 0
        while i != -1:
            t = s[i:i + ln[i]]
            tid = tok.get(t)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self._byte_token(b) for b in t.encode("utf-8", "surrogatepass"))
            i = nxt[i]
        return out

    def _byte_token(self, b: int) -> int:
        """llama_vocab::byte_to_token for SPM: <0xNN>, else the 1-byte token, else UNK."""
        tid = self._token_to_id.get(f"<0x{b:02X}>")
        if tid is None:
            tid = self._token_to_id.get(chr(b) if b < 0x80 else chr(0xDC00 + b))
        if tid is None:
            tid = self.unk_id  # llama.cpp throws std::out_of_range here
            if tid is None:
                raise TokenizerError(f"byte 0x{b:02X} has no <0x{b:02X}> token and there is "
                                     "no unknown token")
        return tid

    # ---- BPE
    def pre_tokenize(self, text: str) -> list:
        """gpt2 model: split text into words (llama.cpp unicode_regex_split, before byte map)."""
        segs = [text]
        for step in self._steps:
            segs = [p for seg in segs for p in step.split(seg)]
        return segs

    def _bpe_word(self, w: str, out: list) -> None:
        """llm_tokenizer_bpe_session on one byte-mapped word; appends ids to out."""
        ids = self._cache.get(w)
        if ids is None:
            ids = self._bpe_merge(w)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[w] = ids
        out.extend(ids)

    def _bpe_merge(self, w: str) -> list:
        tok, ranks = self._token_to_id, self._ranks
        if self._ignore_merges and w in tok:
            return [tok[w]]
        n = len(w)
        ln = [1] * n                    # (n,) symbol length; 0 = merged away
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap = []                       # (rank, left, right, text): lowest rank, then leftmost
        for i in range(n - 1):
            r = ranks.get((w[i], w[i + 1]))
            if r is not None:
                heap.append((r, i, i + 1, w[i:i + 2]))
        heapq.heapify(heap)
        while heap:
            _, left, right, text = heapq.heappop(heap)
            nl, nr = ln[left], ln[right]
            if nl == 0 or nr == 0 or w[left:left + nl] + w[right:right + nr] != text:
                continue
            ln[left] = nl + nr
            ln[right] = 0
            after = nxt[right]
            nxt[left] = after
            if after >= 0:
                prv[after] = left
            p = prv[left]
            if p >= 0:
                r = ranks.get((w[p:p + ln[p]], w[left:left + ln[left]]))
                if r is not None:
                    heapq.heappush(heap, (r, p, left, w[p:left + ln[left]]))
            if after >= 0:
                r = ranks.get((w[left:left + ln[left]], w[after:after + ln[after]]))
                if r is not None:
                    heapq.heappush(heap, (r, left, after, w[left:after + ln[after]]))
        out = []
        i = 0
        while i != -1:
            t = w[i:i + ln[i]]
            tid = tok.get(t)
            if tid is not None:
                out.append(tid)
            else:  # llama.cpp: single-byte tokens, silently dropping bytes without one
                for b in t.encode("utf-8"):
                    tid = tok.get(chr(b) if b < 0x80 else chr(0xDC00 + b))
                    if tid is not None:
                        out.append(tid)
            i = nxt[i]
        return out

    # ------------------------------------------------------------------ decode
    def _check_id(self, token_id, pos: int) -> int:
        try:
            i = int(token_id)
        except (TypeError, ValueError):
            raise TokenizerError(f"token at position {pos} is not an integer: "
                                 f"{token_id!r}") from None
        if not 0 <= i < len(self._texts):
            raise TokenizerError(f"token id {i} at position {pos} is out of range "
                                 f"[0, {len(self._texts)})")
        return i

    def token_to_piece(self, token_id: int, special: bool = False) -> bytes:
        """The bytes one token stands for (llama_token_to_piece, lstrip 0).

        Control and unknown tokens give b"" unless special; user-defined tokens give their
        text; SPM byte tokens <0xNN> give one byte, which may be part of a UTF-8 sequence.
        """
        i = self._check_id(token_id, 0)
        key = (i, special)
        p = self._pieces.get(key)
        if p is None:
            p = self._piece(i, special)
            self._pieces[key] = p
        return p

    def _piece(self, i: int, special: bool) -> bytes:
        a, t = self._attr[i], self._texts[i]
        if a in (CONTROL, UNKNOWN):
            return t.encode("utf-8", "surrogateescape") if special else b""
        if a == USER_DEFINED:
            return t.encode("utf-8", "surrogateescape")
        if a == NORMAL:
            if self.model == "llama":
                return t.replace(SPACE, " ").encode("utf-8", "surrogateescape")
            out = bytearray()
            for c in t:  # llama_decode_text
                b = _UNI_TO_BYTE.get(c)
                if b is None:
                    u = c.encode("utf-8", "surrogateescape")
                    out += b"[UNK_BYTE_0x" + u.hex().encode() \
                        + t.encode("utf-8", "surrogateescape") + b"]"
                else:
                    out.append(b)
            return bytes(out)
        if a == BYTE and self.model == "llama":
            m = re.match(r"[0-9A-Fa-f]{1,2}", t[3:5])  # strtol(text.substr(3, 2), 16)
            return bytes([int(m.group(0), 16) if m else 0])
        return b""  # unused / undefined (and gpt2 byte tokens): nothing, as llama.cpp

    def decode(self, ids: Iterable, special: bool = False) -> str:
        """Token ids -> text; pieces are joined as bytes, then UTF-8 decoded (errors replaced).

        With add_space_prefix (SPM), the leading space of the first piece that renders text
        is removed, so decode(encode(s)) == s with or without a leading BOS.  This differs
        from llama_detokenize in one case: llama.cpp strips only the very first token, so
        [BOS, "▁Hello"] gives " Hello" there (see detokenize()).
        """
        data = bytearray()
        strip = self.add_space_prefix
        for k, tid in enumerate(ids):
            p = self.token_to_piece(self._check_id(tid, k), special)
            if strip and p:
                if p[:1] == b" ":
                    p = p[1:]
                strip = False
            data += p
        return data.decode("utf-8", "replace")

    def detokenize(self, ids: Iterable, remove_special: bool = False,
                   unparse_special: bool = False) -> str:
        """Exactly llama_detokenize (including clean_spaces for gpt2 vocabularies)."""
        ids = [self._check_id(t, k) for k, t in enumerate(ids)]
        strip = self.add_space_prefix
        if remove_special and self.add_bos and ids and ids[0] == self.bos_id:
            strip = False
            ids = ids[1:]
        if remove_special and self.add_eos and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        data = bytearray()
        for tid in ids:
            p = self.token_to_piece(tid, unparse_special)
            if strip and p[:1] == b" ":
                p = p[1:]
            strip = False
            data += p
        if self.clean_spaces:
            data = _clean_spaces(bytes(data))
        return bytes(data).decode("utf-8", "replace")

    def stream_decoder(self, special: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, special)


def _clean_spaces(data: bytes) -> bytes:
    """llama_detokenize's clean_spaces passes, in place on one buffer as llama.cpp does."""
    t = bytearray(data)
    total = len(t)
    sp, ap = 0x20, 0x27
    # first pass: " ?", " !", " .", " ," lose the space
    n, total = total, min(total, 1)
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == sp and x in b"?!.,":
            total -= 1
        t[total] = x
        total += 1
    # second pass: " ' " -> "'"
    n, total = total, min(total, 1)
    i = 1
    while i < n:
        x = t[i]
        if x == ap and i + 1 < n and t[i - 1] == sp and t[i + 1] == sp:
            total -= 1
            i += 1
            t[i] = 0
        t[total] = x
        total += 1
        i += 1
    # third pass: " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it)
    n, total = total, min(total, 1)
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == sp and x == ap and i + 1 < n:
            x1 = t[i + 1]
            if x1 in b"sm":
                total -= 1
            elif x1 not in b"td" and i + 2 < n and (x1, t[i + 2]) in ((0x72, 0x65), (0x76, 0x65)):
                total -= 1
        t[total] = x
        total += 1
    return bytes(t[:total])


class StreamDecoder:
    """Incremental detokenizer: push(id) returns only complete UTF-8 text.

    A character split over several byte tokens (<0xE2><0x96><0x81>) is held back until its
    last byte arrives; invalid bytes become U+FFFD.  flush() returns what is left.
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self._tok = tokenizer
        self._special = special
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        return self._dec.decode(self._tok.token_to_piece(token_id, self._special))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)
