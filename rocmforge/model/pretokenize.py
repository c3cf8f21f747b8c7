"""Pre-tokenizers of the ``gpt2`` BPE tokenizer model, and GPT-2's byte <-> unicode map.

The regexes are exactly llama.cpp's (llm_tokenizer_bpe).  The two that llama.cpp runs
through hand-written splitters (GPT2_RE, LLAMA3_RE) run through ours (``_split_custom``);
the rest go through Python's ``re`` after the \\p{..} classes are "collapsed" to marker
characters (``_collapse_regex``).  ``tokenizer.py`` picks a spec by ``tokenizer.ggml.pre``.
"""
from __future__ import annotations

import re
import unicodedata

GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
_CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3_RE = (_CONTRACTIONS + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
             "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_RE = (_CONTRACTIONS + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
            "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
_DEFAULT_RES = ("[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]")

# name -> (regexes, flags); flags: clean_spaces (detokenize), ignore_merges, add_bos default.
_PRE_SPECS = {
    "default": (_DEFAULT_RES, dict(clean_spaces=True)),
    "gpt-2": ((GPT2_RE,), dict(clean_spaces=True)),
    "llama3": ((LLAMA3_RE,), dict(clean_spaces=True, ignore_merges=True, add_bos=True)),
    "qwen2": ((QWEN2_RE,), dict(clean_spaces=False)),
    "starcoder": (("\\p{N}", GPT2_RE), dict(clean_spaces=True)),
}
PRE_TOKENIZERS = {  # tokenizer.ggml.pre -> spec name (aliases as in llama.cpp)
    "default": "default",
    "gpt-2": "gpt-2", "phi-2": "gpt-2", "roberta-bpe": "gpt-2", "mpt": "gpt-2", "olmo": "gpt-2",
    "jais": "gpt-2",
    "llama3": "llama3", "llama-v3": "llama3", "llama-bpe": "llama3", "falcon3": "llama3",
    "qwen2": "qwen2",
    "starcoder": "starcoder", "refact": "starcoder",
}

# Unicode White_Space, as llama.cpp's unicode_set_whitespace (Python's isspace() differs).
_WHITESPACE = frozenset(chr(c) for c in [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680,
                                         *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
                                         0x205F, 0x3000])
_IN, _L, _N, _WS = 1, 2, 4, 8  # codepoint flags; 0 means "past the end of the segment"
_CAT_BYTE = {"N": "\xd1", "L": "\xd2", "P": "\xd3", "M": "\xd4", "S": "\xd5"}
_flag_cache: dict = {}
_collapse_cache: dict = {}


def _flags(ch: str) -> int:
    f = _flag_cache.get(ch)
    if f is None:
        c = unicodedata.category(ch)[0]
        f = _IN | (_L if c == "L" else 0) | (_N if c == "N" else 0)
        f |= _WS if ch in _WHITESPACE else 0
        _flag_cache[ch] = f
    return f


def _collapse_char(ch: str) -> str:
    """One codepoint -> llama.cpp's collapsed byte: ASCII stays, else a category stand-in."""
    if ch < "\x80":
        return ch
    r = _collapse_cache.get(ch)
    if r is None:
        r = "\x0b" if ch in _WHITESPACE else _CAT_BYTE.get(unicodedata.category(ch)[0], "\xd0")
        _collapse_cache[ch] = r
    return r


def _collapse_regex(expr: str) -> str:
    """Rewrite \\p{N,L,P,M,S} into classes over the collapsed text (unicode_regex_split)."""
    ascii_of = {"N": "0-9", "L": "A-Za-z", "P": "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}", "M": "",
                "S": "\\$\\+<->^`\\|"}
    out, inside, i = [], False, 0
    while i < len(expr):
        c = expr[i]
        if c == "[" and (i == 0 or expr[i - 1] != "\\"):
            out.append(c)
            inside = True
        elif inside and c == "]" and expr[i - 1] != "\\":
            out.append(c)
            inside = False
        elif expr.startswith("\\p{", i) and i + 4 < len(expr) and expr[i + 4] == "}" \
                and expr[i + 3] in ascii_of:
            body = _CAT_BYTE[expr[i + 3]] + ascii_of[expr[i + 3]]
            out.append(body if inside else "[" + body + "]")
            i += 4
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _split_custom(seg: str, llama3: bool) -> list:
    """llama.cpp's unicode_regex_split_custom_gpt2 / _llama3 on one segment -> pieces."""
    n = len(seg)
    fl = [_flags(c) for c in seg]
    fl.append(0)
    fl.append(0)
    out = []
    pos = prev = 0
    while pos < n:
        c = seg[pos]
        f = fl[pos]
        if c == "'" and pos + 1 < n:  # 's|'t|'re|'ve|'m|'ll|'d (case-insensitive for llama3)
            c1 = seg[pos + 1].lower() if llama3 else seg[pos + 1]
            if c1 in ("s", "t", "m", "d"):
                pos += 2
                out.append(seg[prev:pos]); prev = pos
                continue
            if pos + 2 < n:
                c2 = seg[pos + 2].lower() if llama3 else seg[pos + 2]
                if (c1, c2) in (("r", "e"), ("v", "e"), ("l", "l")):
                    pos += 3
                    out.append(seg[prev:pos]); prev = pos
                    continue
        if llama3:
            if not (c == "\r" or c == "\n" or f & _N) and (f & _L or fl[pos + 1] & _L):
                pos += 1  # [^\r\n\p{L}\p{N}]?\p{L}+
                while fl[pos] & _L:
                    pos += 1
                out.append(seg[prev:pos]); prev = pos
                continue
            if f & _N:  # \p{N}{1,3}
                ini = pos
                while fl[pos] & _N:
                    pos += 1
                    if pos - ini >= 3:
                        out.append(seg[prev:pos]); prev = pos
                        ini = pos
                if pos > prev:
                    out.append(seg[prev:pos]); prev = pos
                continue
        f2 = fl[pos + 1] if c == " " else f
        if not llama3:
            if f2 & _L or f2 & _N:  # ' ?\p{L}+' and ' ?\p{N}+'
                kind = _L if f2 & _L else _N
                pos += c == " "
                while fl[pos] & kind:
                    pos += 1
                out.append(seg[prev:pos]); prev = pos
                continue
        # ' ?[^\s\p{L}\p{N}]+' (llama3: followed by [\r\n]*)
        if not (f2 & (_WS | _L | _N)) and (f if llama3 else f2):
            pos += c == " "
            while fl[pos] and not (fl[pos] & (_WS | _L | _N)):
                pos += 1
            if llama3:
                while pos < n and seg[pos] in "\r\n":
                    pos += 1
            out.append(seg[prev:pos]); prev = pos
            continue
        nws = 0
        last_rn = 0
        while fl[pos + nws] & _WS:
            if llama3 and seg[pos + nws] in "\r\n":
                last_rn = pos + nws + 1
            nws += 1
            if pos + nws >= n:
                break
        if last_rn > 0:  # \s*[\r\n]+
            pos = last_rn
        elif nws > 1 and pos + nws < n:  # \s+(?!\S)
            pos += nws - 1
        elif nws > 0:  # \s+
            pos += nws
        else:  # no match: one codepoint
            pos += 1
        out.append(seg[prev:pos]); prev = pos
    return out


class _RegexStep:
    """One pre-tokenizer regex: a custom splitter or Python re over collapsed text."""

    def __init__(self, expr: str):
        self.custom = {GPT2_RE: False, LLAMA3_RE: True}.get(expr)
        self.collapsed = "\\p{" in expr
        self.pattern = None
        if self.custom is None:
            self.pattern = re.compile(_collapse_regex(expr) if self.collapsed else expr, re.ASCII)

    def split(self, seg: str) -> list:
        if self.custom is not None:
            return _split_custom(seg, self.custom)
        text = seg
        if not seg.isascii():  # same length: one stand-in character per codepoint
            text = "".join(map(_collapse_char, seg)) if self.collapsed else \
                "".join("\x0b" if c in _WHITESPACE else c for c in seg)
        out, start = [], 0
        for m in self.pattern.finditer(text):
            a, b = m.span()
            if a == b:
                continue
            if a > start:
                out.append(seg[start:a])
            out.append(seg[a:b])
            start = b
        if start < len(seg):
            out.append(seg[start:])
        return out


def _bytes_to_unicode() -> dict:
    """GPT-2's byte -> printable codepoint table (llama.cpp unicode_byte_to_utf8_map)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, n = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


_BYTE_TO_UNI = _bytes_to_unicode()
_LATIN1_TO_UNI = str.maketrans({chr(b): u for b, u in _BYTE_TO_UNI.items()})
_UNI_TO_BYTE = {u: b for b, u in _BYTE_TO_UNI.items()}
