"""GGUFReader: real files against gguf-py, views and lifetime, and every bad-input case.

Bad inputs are built byte by byte with ``build()`` below (independent of our writer),
so each test controls the exact field it breaks and checks the exception type, the
field named in the message and its byte offset.
"""
import os
import struct

import numpy as np
import pytest

from rocmforge.gguf.constants import GgufTensorType, GgufValueType
from rocmforge.gguf.errors import GGUFError
from rocmforge.gguf.reader import GGUFReader, StringArray

gguf = pytest.importorskip("gguf")

V = GgufValueType
T = GgufTensorType


# ---------------------------------------------------------------- a raw GGUF builder
def s(x: str | bytes) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, vt, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vt) + payload


def tinfo(name, dims, ttype, offset) -> bytes:
    return (s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", ttype, offset))


def build(kvs=(), tensors=(), data=b"", version=3, n_tensors=None, n_kv=None, align=32,
          magic=b"GGUF") -> bytes:
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tensors)
    head += bytes(-len(head) % align)
    return head + data


U32 = lambda v: struct.pack("<I", v)  # noqa: E731
GOOD_T = [tinfo("a", [8, 2], T.F32, 0), tinfo("b", [32], T.Q8_0, 64)]
GOOD_DATA = bytes(64 + 34 + 30)


def raises(buf, *needles, offset=None):
    with pytest.raises(GGUFError) as ei:
        GGUFReader(buf)
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    assert ei.value.source in msg
    if offset is not None:
        assert ei.value.offset == offset, msg
        assert f"at byte {offset}" in msg
    return ei.value


# ---------------------------------------------------------------- real files vs gguf-py
def _gguf_py_value(field):
    """(value type, element type, value) of a gguf-py ReaderField."""
    vt = V(field.types[0])
    if vt == V.ARRAY:
        et = V(field.types[1])
        if et == V.STRING:
            return vt, et, [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        if et == V.ARRAY:
            return vt, et, None
        parts = [field.parts[i] for i in field.data]
        return vt, et, np.concatenate(parts) if parts else np.empty(0)
    if vt == V.STRING:
        return vt, None, bytes(field.parts[field.data[0]]).decode("utf-8")
    return vt, None, field.parts[field.data[0]][0]


def assert_matches_gguf_py(path):
    ref = gguf.GGUFReader(path)
    with GGUFReader(path) as r:
        ref_keys = [k for k in ref.fields if not k.startswith("GGUF.")]
        assert list(r.metadata) == ref_keys
        assert r.version == ref.fields["GGUF.version"].parts[-1][0]
        assert r.alignment == ref.alignment
        for key in ref_keys:
            vt, et, want = _gguf_py_value(ref.fields[key])
            got = r.metadata[key]
            assert r.metadata.value_type(key) == vt, key
            assert r.metadata.element_type(key) == et, key
            if et == V.STRING:
                assert isinstance(got, StringArray)
                assert got.tolist() == want, key
            elif vt == V.ARRAY and et != V.ARRAY:
                assert got.dtype == want.dtype and not got.flags.writeable, key
                np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=key)
            elif vt == V.FLOAT32:
                assert got == float(np.float32(want)), key
            elif vt != V.ARRAY:
                assert got == want and type(got) is type(want.item() if hasattr(want, "item") else want), key
        assert list(r.tensors) == [t.name for t in ref.tensors]
        for t in ref.tensors:
            ours = r.tensors[t.name]
            assert ours.ttype == T(int(t.tensor_type)), t.name
            assert ours.dims == tuple(int(d) for d in t.shape), t.name
            assert ours.shape == tuple(int(d) for d in t.shape[::-1]), t.name
            assert ours.n_elements == t.n_elements and ours.nbytes == t.n_bytes, t.name
            assert ours.file_offset == t.data_offset, t.name
            np.testing.assert_array_equal(ours.data, np.asarray(t.data).view(np.uint8).reshape(-1),
                                          err_msg=t.name)
            if ours.ttype == T.F32:
                np.testing.assert_array_equal(ours.array, t.data, err_msg=t.name)
        return r


def test_stories260k_matches_gguf_py(stories260k):
    r = assert_matches_gguf_py(stories260k)
    assert len(r.tensors) == 48 and r.metadata["general.architecture"] == "llama"


def test_vocab_matches_gguf_py(shared_data):
    r = assert_matches_gguf_py(shared_data / "vocab" / "ggml-vocab-llama-spm.gguf")
    assert len(r.tensors) == 0 and len(r.metadata["tokenizer.ggml.tokens"]) == 32000
    assert r.data_offset > r.file_size  # a vocab-only file ends before its (empty) data section


def test_gemma_matches_gguf_py(gemma_gguf):
    r = assert_matches_gguf_py(gemma_gguf)
    types = {t.ttype for t in r.tensors.values()}
    assert types == {T.F32, T.Q8_0, T.Q5_0, T.Q4_K, T.Q6_K}
    assert len(r.metadata["tokenizer.ggml.tokens"]) == 262144


# ---------------------------------------------------------------- views, lifetime, sources
def test_views_are_zero_copy_read_only(stories260k):
    with GGUFReader(stories260k) as r:
        t = r.tensors["output.weight"]
        assert t.dims == (64, 512) and t.shape == (512, 64)
        assert t.data.dtype == np.uint8 and t.data.shape == (t.nbytes,)
        assert not t.data.flags.writeable and not t.data.flags.owndata
        with pytest.raises(ValueError):
            t.data[0] = 1
        a = t.array
        assert a.shape == (512, 64) and a.dtype == np.float32 and np.shares_memory(a, t.data)
        raw = open(stories260k, "rb").read()
        np.testing.assert_array_equal(a.reshape(-1).view(np.uint8),
                                      np.frombuffer(raw, np.uint8, t.nbytes, t.file_offset))
        del a
    with pytest.raises(TypeError):
        r.metadata["x"] = 1
    assert not r.metadata["tokenizer.ggml.scores"].flags.writeable


def test_close_keeps_metadata_and_refuses_new_views(stories260k):
    r = GGUFReader(stories260k)
    t = r.tensors["output.weight"]
    kept = t.data  # a live view keeps the mapping valid after close
    r.close()
    assert r.closed and kept[-1] == kept[-1]
    with pytest.raises(ValueError, match="closed"):
        t.data
    assert r.metadata["tokenizer.ggml.tokens"][1] == "<s>"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_open_from_buffer_equals_path(stories260k, kind):
    raw = open(stories260k, "rb").read()
    a, b = GGUFReader(stories260k), GGUFReader(kind(raw))
    assert b.source == "<bytes>" and a.data_offset == b.data_offset
    assert list(a.metadata) == list(b.metadata)
    for name, t in a.tensors.items():
        np.testing.assert_array_equal(t.data, b.tensors[name].data)
        assert not b.tensors[name].data.flags.writeable


def test_open_reads_only_the_header(tmp_path):
    # a 4 GiB sparse file: parsing must not touch the data section
    p = tmp_path / "big.gguf"
    n = 1 << 30
    with open(p, "wb") as f:
        f.write(build(tensors=[tinfo("big", [n], T.F32, 0)]))
        f.truncate(f.tell() + 4 * n)
    with GGUFReader(p) as r:
        t = r.tensors["big"]
        assert t.nbytes == 4 * n and t.data[-1] == 0   # one page faulted in, not 4 GiB


def test_string_array_sequence():
    toks = ["a", "", "héllo", "\u4e16\u754c", "z" * 300]
    sa = GGUFReader(build([kv("t", V.ARRAY, U32(V.STRING) + struct.pack("<Q", len(toks))
                             + b"".join(s(x) for x in toks))])).metadata["t"]
    assert len(sa) == 5 and sa[2] == "héllo" and sa[-1] == "z" * 300 and sa[1:3] == ["", "héllo"]
    assert list(sa) == toks and sa.tolist() == toks and sa == toks and sa == tuple(toks)
    assert "héllo" in sa and sa.index("a") == 0 and list(reversed(sa)) == toks[::-1]
    with pytest.raises(IndexError):
        sa[5]


def test_every_scalar_value_type():
    cases = [(V.UINT8, "<B", 255), (V.INT8, "<b", -128), (V.UINT16, "<H", 65535),
             (V.INT16, "<h", -32768), (V.UINT32, "<I", 2**32 - 1), (V.INT32, "<i", -2**31),
             (V.FLOAT32, "<f", 0.1), (V.BOOL, "<?", True), (V.UINT64, "<Q", 2**64 - 1),
             (V.INT64, "<q", -2**63), (V.FLOAT64, "<d", 0.1)]
    md = GGUFReader(build([kv(f"k{i}", vt, struct.pack(fmt, v)) for i, (vt, fmt, v) in enumerate(cases)]
                          + [kv("str", V.STRING, s("ok"))])).metadata
    for i, (vt, fmt, v) in enumerate(cases):
        assert md[f"k{i}"] == struct.unpack(fmt, struct.pack(fmt, v))[0]
        assert type(md[f"k{i}"]) is type(v) and md.value_type(f"k{i}") == vt
    assert md["str"] == "ok" and md.element_type("str") is None


def test_nested_arrays():
    inner = U32(V.INT16) + struct.pack("<Qhh", 2, -1, 7)
    inner2 = U32(V.STRING) + struct.pack("<Q", 1) + s("x")
    md = GGUFReader(build([kv("n", V.ARRAY, U32(V.ARRAY) + struct.pack("<Q", 2) + inner + inner2)])).metadata
    a, b = md["n"]
    assert a.dtype == np.int16 and a.tolist() == [-1, 7] and b == ["x"]
    assert md.element_type("n") == V.ARRAY


def test_typed_views(tmp_path):
    ml = pytest.importorskip("ml_dtypes")
    x = np.arange(-8, 8, dtype=np.float32).reshape(2, 8)
    data = b"".join(p + bytes(-len(p) % 32) for p in
                    [x.astype(np.float16).tobytes(), x.astype(ml.bfloat16).tobytes(),
                     x.astype(np.int8).tobytes(), x.astype(np.int64).tobytes()])
    ts = [tinfo("h", [8, 2], T.F16, 0), tinfo("bf", [8, 2], T.BF16, 32),
          tinfo("i8", [8, 2], T.I8, 64), tinfo("i64", [8, 2], T.I64, 96)]
    r = GGUFReader(build(tensors=ts, data=data))
    for name in ("h", "bf", "i8", "i64"):
        a = r.tensors[name].array
        assert a.shape == (2, 8)
        np.testing.assert_array_equal(a.astype(np.float32), x, err_msg=name)
    q = GGUFReader(build(tensors=GOOD_T, data=GOOD_DATA)).tensors["b"]
    with pytest.raises(TypeError, match="Q8_0"):
        q.array


def test_alignment_key_honoured():
    al = kv("general.alignment", V.UINT32, U32(64))
    r = GGUFReader(build([al], [tinfo("a", [16], T.F32, 64)], bytes(128), align=64))
    assert r.alignment == 64 and r.data_offset % 64 == 0 and r.tensors["a"].offset == 64


# ---------------------------------------------------------------- bad input, one test each
def test_empty_and_truncated_header(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    e = raises(p, "header.magic", "truncated", offset=0)
    assert str(p) in str(e)
    good = build([kv("k", V.STRING, s("value")), kv("a", V.ARRAY, U32(V.UINT8) + struct.pack("<Q", 3) + b"xyz")],
                 GOOD_T, GOOD_DATA)
    for n in range(len(good) - len(GOOD_DATA)):   # every prefix ending inside the header
        with pytest.raises(GGUFError, match="truncated|past the end|cannot fit|exceeds"):
            GGUFReader(good[:n])


def test_bad_magic():
    raises(build(magic=b"GGML"), "header.magic", "not a GGUF file", offset=0)


def test_version_1_unsupported():
    raises(build(version=1), "header.version", "version 1 is not supported", offset=4)


def test_big_endian_detected():
    buf = bytearray(build())
    buf[4:8] = struct.pack(">I", 3)
    raises(bytes(buf), "header.version", "big-endian", offset=4)


def test_unknown_version():
    raises(build(version=4), "header.version", "unknown GGUF version 4", offset=4)


def test_lying_n_tensors():
    raises(build(n_tensors=2**63), "header.n_tensors", str(2**63), offset=8)


def test_lying_n_kv():
    raises(build(n_kv=2**63), "header.n_kv", str(2**63), offset=16)


def test_lying_array_length():
    buf = build([kv("arr", V.ARRAY, U32(V.FLOAT32) + struct.pack("<Q", 2**63))])
    raises(buf, "metadata 'arr'.count", str(2**63), offset=24 + 8 + 3 + 4 + 4)


def test_lying_string_array_length():
    buf = build([kv("sa", V.ARRAY, U32(V.STRING) + struct.pack("<Q", 2) + s("x") + struct.pack("<Q", 2**62))])
    raises(buf, "metadata 'sa'[1].length", "exceeds", offset=24 + 8 + 2 + 4 + 12 + 9)


def test_string_longer_than_file():
    raises(build([s("k")[:0] + struct.pack("<Q", 10**12) + b"k"]), "kv[0].key.length", "exceeds", offset=24)
    raises(build([kv("k", V.STRING, struct.pack("<Q", 2**64 - 1))]), "metadata 'k'.length", "exceeds",
           offset=24 + 9 + 4)


def test_invalid_utf8():
    raises(build([kv("k", V.STRING, s(b"ab\xff"))]), "metadata 'k'", "invalid UTF-8", offset=24 + 9 + 4 + 8 + 2)
    raises(build([kv("sa", V.ARRAY, U32(V.STRING) + struct.pack("<Q", 2) + s("ok") + s(b"\xed\xa0\x80"))]),
           "metadata 'sa'[1]", "invalid UTF-8")
    raises(build([s(b"\xc0\xaf") + U32(V.UINT8) + b"\x00"]), "kv[0].key", "invalid UTF-8", offset=32)


def test_unknown_value_type():
    raises(build([kv("k", 13, b"\x00")]), "metadata 'k'.value_type", "unknown value type id 13", offset=24 + 9)
    raises(build([kv("k", V.ARRAY, U32(99) + struct.pack("<Q", 0))]), "metadata 'k'.element_type", "99")


def test_bad_bool():
    raises(build([kv("b", V.BOOL, b"\x02")]), "metadata 'b'", "not 0 or 1", offset=24 + 9 + 4)
    raises(build([kv("b", V.ARRAY, U32(V.BOOL) + struct.pack("<Q", 3) + b"\x00\x01\x07")]), "metadata 'b'[2]")


def test_arrays_nested_too_deep():
    body = U32(V.UINT8) + struct.pack("<Q", 0)
    for _ in range(20):
        body = U32(V.ARRAY) + struct.pack("<Q", 1) + body
    raises(build([kv("deep", V.ARRAY, body)]), "element_type", "nested deeper")


def test_duplicate_key_and_tensor():
    raises(build([kv("k", V.UINT8, b"\x01"), kv("k", V.UINT8, b"\x02")]), "metadata 'k'", "duplicate", offset=24 + 14)
    raises(build(tensors=[tinfo("a", [8], T.F32, 0), tinfo("a", [8], T.F32, 32)], data=bytes(64)),
           "tensor[1] 'a'.name", "duplicate")


def test_bad_alignment_values():
    for bad in (0, 3, 4, 48, 2**31 + 8):
        raises(build([kv("general.alignment", V.UINT32, U32(bad))]), "general.alignment", str(bad), offset=24)
    raises(build([kv("general.alignment", V.STRING, s("32"))]), "general.alignment", "integer")


def test_offset_past_end():
    buf = build(tensors=[tinfo("a", [8, 2], T.F32, 0), tinfo("b", [32], T.Q8_0, 64)], data=bytes(64 + 33))
    type_at = 24 + 9 + 4 + 16 + 4 + 8 + 9 + 4 + 8
    raises(buf, "tensor[1] 'b'.offset", "past the end", offset=type_at + 4)


def test_overlapping_tensors():
    raises(build(tensors=[tinfo("a", [16], T.F32, 0), tinfo("b", [8], T.F32, 32)], data=bytes(128)),
           "'a'", "'b'", "overlaps")


def test_misaligned_offset():
    raises(build(tensors=[tinfo("a", [8], T.F32, 8)], data=bytes(64)), "tensor[0] 'a'.offset",
           "not a multiple of the alignment 32", offset=24 + 9 + 4 + 8 + 4)


def test_dims_product_overflow():
    raises(build(tensors=[tinfo("a", [2**32, 2**32], T.F32, 0)]), "tensor[0] 'a'.dims[1]", "overflows",
           offset=24 + 9 + 4 + 8)
    raises(build(tensors=[tinfo("a", [2**63], T.F32, 0)]), "tensor[0] 'a'.dims[0]", "exceeds 2**63 - 1")


def test_too_many_dims():
    raises(build(tensors=[tinfo("a", [1] * 5, T.F32, 0)]), "tensor[0] 'a'.n_dims", "5", offset=24 + 9)


def test_not_whole_blocks():
    raises(build(tensors=[tinfo("w", [100, 2], T.Q4_K, 0)], data=bytes(1024)), "tensor[0] 'w'.dims",
           "not a whole number of Q4_K blocks of 256", offset=24 + 9 + 4)


def test_unknown_tensor_type():
    e = raises(build(tensors=[tinfo("mystery", [32], 77, 0)], data=bytes(256)), "tensor[0] 'mystery'.type",
               "unknown tensor type id 77", "'mystery'", offset=24 + 15 + 4 + 8)
    assert isinstance(e, ValueError)


def test_os_errors_are_not_gguf_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        GGUFReader(tmp_path / "missing.gguf")
    assert not os.path.exists(tmp_path / "missing.gguf")


# ---------------------------------------------------------------- tools/gguf_dump.py
def _dump(*args):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, os.path.join(root, "tools", "gguf_dump.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_gguf_dump_text_and_json(stories260k):
    import json
    out = _dump(stories260k)
    assert out.returncode == 0, out.stderr
    assert "tokenizer.ggml.tokens" in out.stdout and "STRING[512]" in out.stdout
    assert "output.weight" in out.stdout and "(512, 64)" in out.stdout
    js = json.loads(_dump(stories260k, "--json").stdout)
    r = GGUFReader(stories260k)
    assert js["data_offset"] == r.data_offset and len(js["tensors"]) == len(r.tensors)
    assert js["metadata"]["tokenizer.ggml.tokens"]["value"]["length"] == 512
    assert js["tensors"][2] == {"name": "output.weight", "type": "F32", "shape": [512, 64],
                                "dims": [64, 512], "offset": r.tensors["output.weight"].offset,
                                "nbytes": 512 * 64 * 4}


def test_gguf_dump_bad_file_one_line(tmp_path, stories260k):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(open(stories260k, "rb").read()[:100])
    out = _dump(bad)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("gguf_dump: error: ")
    assert "header.n_kv" in out.stderr and "Traceback" not in out.stderr


def test_version_2_reads_like_3():
    for version in (2, 3):
        r = GGUFReader(build([kv("k", V.UINT64, struct.pack("<Q", 2**40))], GOOD_T, GOOD_DATA, version=version))
        assert r.version == version and r.metadata["k"] == 2**40 and list(r.tensors) == ["a", "b"]
        assert r.tensors["b"].nbytes == 34 and r.tensors["a"].shape == (2, 8)
