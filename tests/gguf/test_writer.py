"""GGUFWriter: round trips through our reader and gguf-py, type inference, alignment,
MX layout key, atomic writes, and the errors for bad arguments."""
import os

import numpy as np
import pytest

from rocmforge.gguf.constants import (GGUF_MX_LAYOUT_KEY, GGUF_MX_LAYOUT_VERSION, TYPE_SIZES,
                                      GgufTensorType, GgufValueType, tensor_nbytes)
from rocmforge.gguf.reader import GGUFReader
from rocmforge.gguf.writer import GGUFWriter, float32_to_bf16_bits

V = GgufValueType
T = GgufTensorType
RNG_SEED = 20261126

# (key, value, explicit type): every value type at its edges
TYPED_VALUES = [
    ("u8", 255, V.UINT8), ("i8", -128, V.INT8), ("u16", 65535, V.UINT16), ("i16", -32768, V.INT16),
    ("u32", 2**32 - 1, V.UINT32), ("i32", -2**31, V.INT32), ("f32", 0.15625, V.FLOAT32),
    ("b", False, V.BOOL), ("s", "héllo \u4e16\u754c\x00end", V.STRING), ("u64", 2**64 - 1, V.UINT64),
    ("i64", -2**63, V.INT64), ("f64", 0.1, V.FLOAT64), ("finf", float("inf"), V.FLOAT32),
]
ARRAY_VALUES = [
    ("a.u8", np.array([0, 255], np.uint8)), ("a.i8", np.array([-128, 127], np.int8)),
    ("a.u16", np.array([1, 65535], np.uint16)), ("a.i16", np.array([-5], np.int16)),
    ("a.u32", np.array([7, 2**32 - 1], np.uint32)), ("a.i32", np.arange(-3, 3, dtype=np.int32)),
    ("a.f32", np.array([0.5, -1e30], np.float32)), ("a.bool", np.array([True, False, True])),
    ("a.u64", np.array([2**64 - 1], np.uint64)), ("a.i64", np.array([-2**63], np.int64)),
    ("a.f64", np.array([np.pi], np.float64)), ("a.empty", np.zeros(0, np.float32)),
]


def write(tmp_path, fill, name="x.gguf", **kw):
    w = GGUFWriter(tmp_path / name, **kw)
    fill(w)
    return w.write()


def test_metadata_round_trip_every_type(tmp_path):
    def fill(w):
        for key, value, vt in TYPED_VALUES:
            w.add(key, value, vt)
        for key, value in ARRAY_VALUES:
            w.add(key, value)
        w.add("a.str", ["", "a", "ü" * 100])
        w.add("a.nested", [np.array([1, 2], np.uint16), ["x", "y"], [[True]]])
    with GGUFReader(write(tmp_path, fill)) as r:
        md = r.metadata
        for key, value, vt in TYPED_VALUES:
            assert md[key] == value and type(md[key]) is type(value) and md.value_type(key) == vt, key
        for key, value in ARRAY_VALUES:
            got = md[key]
            assert got.dtype == value.dtype and md.element_type(key) == V(ARRAY_VALUES_TYPES[key]), key
            np.testing.assert_array_equal(got, value, err_msg=key)
        assert md["a.str"] == ["", "a", "ü" * 100] and md.element_type("a.str") == V.STRING
        a, b, c = md["a.nested"]
        assert a.dtype == np.uint16 and a.tolist() == [1, 2] and b == ["x", "y"] and c[0].tolist() == [True]


ARRAY_VALUES_TYPES = {"a.u8": V.UINT8, "a.i8": V.INT8, "a.u16": V.UINT16, "a.i16": V.INT16,
                      "a.u32": V.UINT32, "a.i32": V.INT32, "a.f32": V.FLOAT32, "a.bool": V.BOOL,
                      "a.u64": V.UINT64, "a.i64": V.INT64, "a.f64": V.FLOAT64, "a.empty": V.FLOAT32}


def test_type_inference(tmp_path):
    def fill(w):
        w.add("int", 5)
        w.add("big", 2**40)
        w.add("huge", 2**64 - 1)
        w.add("float", 0.5)
        w.add("bool", True)
        w.add("np", np.uint16(9))
        w.add("ints", [1, -2])
        w.add("floats", [1, 2.5])
        w.add("override", [1, 2], V.UINT8)          # a scalar type on a list: the element type
        w.add("empty", [], element_type=V.STRING)
    md = GGUFReader(write(tmp_path, fill)).metadata
    want = {"int": V.INT32, "big": V.INT64, "huge": V.UINT64, "float": V.FLOAT32, "bool": V.BOOL,
            "np": V.UINT16}
    for key, vt in want.items():
        assert md.value_type(key) == vt, key
    assert md.element_type("ints") == V.INT32 and md.element_type("floats") == V.FLOAT32
    assert md["override"].dtype == np.uint8 and md.element_type("empty") == V.STRING and len(md["empty"]) == 0


def _random_tensor(rng, ttype):
    block = TYPE_SIZES[ttype][0]
    shape = (3, 2 * block)
    return rng.integers(0, 256, tensor_nbytes(ttype, 6 * block), dtype=np.uint8), shape


@pytest.mark.parametrize("alignment", [None, 64, 256])
def test_tensor_round_trip_every_type(tmp_path, alignment):
    rng = np.random.default_rng(RNG_SEED)
    tensors = {f"t.{t.name.lower()}": (t, *_random_tensor(rng, t)) for t in TYPE_SIZES}

    def fill(w):
        for name, (t, raw, shape) in tensors.items():
            w.add_tensor(name, raw, t, shape=shape)
    with GGUFReader(write(tmp_path, fill, alignment=alignment)) as r:
        align = alignment or 32
        assert r.alignment == align and r.data_offset % align == 0
        assert list(r.tensors) == list(tensors)
        for name, (t, raw, shape) in tensors.items():
            info = r.tensors[name]
            assert info.ttype == t and info.shape == shape and info.offset % align == 0, name
            np.testing.assert_array_equal(info.data, raw, err_msg=name)
        mx = any(t.value >= 1000 for t in TYPE_SIZES)
        assert (r.metadata.get(GGUF_MX_LAYOUT_KEY) == GGUF_MX_LAYOUT_VERSION) == mx
        assert r.metadata.value_type(GGUF_MX_LAYOUT_KEY) == V.UINT32


def test_values_to_float_and_int_types(tmp_path):
    ml = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(RNG_SEED)
    x = (rng.standard_normal((5, 7)) * 100).astype(np.float32)
    ints = rng.integers(-100, 100, (2, 3))

    def fill(w):
        w.add_tensor("f32", x)
        w.add_tensor("f16", x, T.F16)
        w.add_tensor("bf16", x, T.BF16)
        w.add_tensor("bf16n", x.astype(ml.bfloat16))
        w.add_tensor("f64", x.astype(np.float64))
        for t in (T.I8, T.I16, T.I32, T.I64):
            w.add_tensor(t.name, ints, t)
    with GGUFReader(write(tmp_path, fill)) as r:
        tt = r.tensors
        np.testing.assert_array_equal(tt["f32"].array, x)
        np.testing.assert_array_equal(tt["f16"].array, x.astype(np.float16))
        # our bf16 rounding against ml_dtypes' (RNE), bit for bit
        np.testing.assert_array_equal(tt["bf16"].data.view(np.uint16), x.astype(ml.bfloat16).view(np.uint16).reshape(-1))
        assert tt["bf16n"].ttype == T.BF16 and tt["bf16"].array.shape == (5, 7)
        np.testing.assert_array_equal(tt["f64"].array, x.astype(np.float64))
        for t in (T.I8, T.I16, T.I32, T.I64):
            assert tt[t.name].ttype == t
            np.testing.assert_array_equal(tt[t.name].array, ints)


def test_bf16_rounding_edges():
    ml = pytest.importorskip("ml_dtypes")
    bits = np.array([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x7F7FFFFF, 0xFF800000, 0x7FC00001,
                     0x00000001, 0x80000000], np.uint32)
    x = bits.view(np.float32)
    np.testing.assert_array_equal(float32_to_bf16_bits(x)[:-3], x.astype(ml.bfloat16).view(np.uint16)[:-3])
    assert float32_to_bf16_bits(x)[5] & 0x7F80 == 0x7F80 and float32_to_bf16_bits(x)[5] & 0x7F


def test_gguf_py_reads_our_files(tmp_path):
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(RNG_SEED)
    known = [t for t in TYPE_SIZES if t.name in gguf.GGMLQuantizationType.__members__]
    assert T.Q4_K in known and T.F32 in known
    tensors = {t.name: _random_tensor(rng, t) for t in known}

    def fill(w):
        for key, value, vt in TYPED_VALUES:
            w.add(key, value, vt)
        for key, value in ARRAY_VALUES:
            w.add(key, value)
        w.add("a.str", ["tok", "é"])
        for name, (raw, shape) in tensors.items():
            w.add_tensor(name, raw, T[name], shape=shape)
    p = write(tmp_path, fill, alignment=64)
    ref = gguf.GGUFReader(p)
    ours = GGUFReader(p)
    assert ref.alignment == 64 and ref.data_offset == ours.data_offset
    for key, value, vt in TYPED_VALUES:
        f = ref.fields[key]
        assert f.types == [vt] and (f.contents() == value or np.float32(value) == f.contents()), key
    for key, value in ARRAY_VALUES:
        np.testing.assert_array_equal(np.asarray(ref.fields[key].contents(), value.dtype), value, err_msg=key)
    assert ref.fields["a.str"].contents() == ["tok", "é"]
    for t in ref.tensors:
        raw, shape = tensors[t.name]
        assert t.tensor_type.name == t.name and list(t.shape[::-1]) == list(shape)
        np.testing.assert_array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), raw, err_msg=t.name)
    assert len(ref.tensors) == len(tensors)


def test_copy_real_file(tmp_path, stories260k):
    src = GGUFReader(stories260k)

    def fill(w):
        w.add_metadata(src.metadata)
        for t in src.tensors.values():
            w.add_tensor(t.name, t.data, t.ttype, shape=t.shape)
    with GGUFReader(write(tmp_path, fill)) as r:
        assert list(r.metadata) == list(src.metadata)
        for key in src.metadata:
            a, b = r.metadata[key], src.metadata[key]
            assert r.metadata.value_type(key) == src.metadata.value_type(key), key
            assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, key
        for name, t in src.tensors.items():
            np.testing.assert_array_equal(r.tensors[name].data, t.data)


def test_mx_layout_key(tmp_path):
    raw = np.zeros(TYPE_SIZES[T.MXFP6_E2M3][1], np.uint8)
    md = GGUFReader(write(tmp_path, lambda w: w.add_tensor("m", raw, T.MXFP6_E2M3, shape=(32,)))).metadata
    assert md[GGUF_MX_LAYOUT_KEY] == 1 and md.value_type(GGUF_MX_LAYOUT_KEY) == V.UINT32
    md = GGUFReader(write(tmp_path, lambda w: w.add_tensor("m", np.zeros(17, np.uint8), T.MXFP4, shape=(32,)),
                          name="fp4.gguf")).metadata
    assert GGUF_MX_LAYOUT_KEY not in md   # MXFP4 is ggml's own type 39
    w = GGUFWriter(tmp_path / "bad.gguf")
    w.add(GGUF_MX_LAYOUT_KEY, 2, V.UINT32)
    w.add_tensor("m", raw, T.MXFP6_E2M3, shape=(32,))
    with pytest.raises(ValueError, match="layout version"):
        w.write()
    assert not (tmp_path / "bad.gguf").exists()


def test_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "m.gguf"
    p.write_bytes(b"old contents")
    w = GGUFWriter(p)
    w.add("k", 1)
    w.add_tensor("t", np.ones(1000, np.float32))

    def boom(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        w.write()
    assert p.read_bytes() == b"old contents" and sorted(os.listdir(tmp_path)) == ["m.gguf"]
    monkeypatch.undo()
    w.write()
    assert GGUFReader(p).metadata["k"] == 1 and sorted(os.listdir(tmp_path)) == ["m.gguf"]


def test_context_manager_writes_only_on_success(tmp_path):
    with GGUFWriter(tmp_path / "ok.gguf") as w:
        w.add("k", "v")
    assert GGUFReader(tmp_path / "ok.gguf").metadata["k"] == "v"
    with pytest.raises(RuntimeError):
        with GGUFWriter(tmp_path / "no.gguf") as w:
            w.add("k", "v")
            raise RuntimeError
    assert os.listdir(tmp_path) == ["ok.gguf"]


@pytest.mark.parametrize("call, exc, msg", [
    (lambda w: (w.add("k", 1), w.add("k", 2)), ValueError, "duplicate key"),
    (lambda w: w.add("k", 300, V.UINT8), ValueError, "does not fit UINT8"),
    (lambda w: w.add("k", [300], V.UINT8), ValueError, "UINT8 range"),
    (lambda w: w.add("k", 1.5, V.INT32), TypeError, "INT32 needs an integer"),
    (lambda w: w.add("k", []), ValueError, "element_type"),
    (lambda w: w.add("k", b"bytes"), TypeError, "bytes"),
    (lambda w: w.add("k", ["a", 1]), TypeError, "mix"),
    (lambda w: w.add("general.alignment", 48), ValueError, "power of two"),
    (lambda w: w.add_tensor("q", np.zeros((2, 256), np.float32), T.Q4_K), TypeError, "block type"),
    (lambda w: w.add_tensor("q", np.zeros(100, np.uint8), T.Q4_K, shape=(256,)), ValueError, "144 bytes"),
    (lambda w: w.add_tensor("q", np.zeros(144, np.uint8), T.Q4_K, shape=(2, 128)), ValueError, "whole number"),
    (lambda w: w.add_tensor("q", np.zeros(144, np.uint8), T.Q4_K), ValueError, "shape="),
    (lambda w: w.add_tensor("i", np.array([1000]), T.I8), ValueError, "I8 range"),
    (lambda w: w.add_tensor("x" * 64, np.zeros(4, np.float32)), ValueError, "GGML_MAX_NAME"),
    (lambda w: w.add_tensor("x", np.zeros((1,) * 5, np.float32)), ValueError, "1 to 4 dims"),
    (lambda w: (w.add_tensor("x", np.zeros(4, np.float32)), w.add_tensor("x", np.zeros(4, np.float32))),
     ValueError, "duplicate tensor"),
])
def test_bad_arguments(tmp_path, call, exc, msg):
    w = GGUFWriter(tmp_path / "x.gguf")
    with pytest.raises(exc, match=msg):
        call(w)
