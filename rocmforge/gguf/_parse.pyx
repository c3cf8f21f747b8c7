# cython: language_level=3
"""Cython core of the GGUF reader: bytes -> header, metadata records, tensor-info records.

This module checks structure only (every length and count against the bytes that are
left, UTF-8, value-type ids, nesting depth, dims overflow); the semantic checks on
tensors (type ids, block sizes, offsets, overlaps, alignment) are in ``reader.py``.
It reads the buffer through one ``const uint8_t[::1]`` memoryview and never indexes
past ``n`` (each read is preceded by a length check), so a hostile file cannot make it
read out of bounds, allocate more than the file size, recurse deeper than
``MAX_ARRAY_DEPTH`` or loop longer than the file is long.

Layout (all little-endian; GGUF v2/v3):
  magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
  n_kv x   (string key, u32 value_type, value)
  n_tensors x (string name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset)
  string = u64 length + bytes; array value = u32 element_type + u64 count + elements
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.unicode cimport PyUnicode_DecodeUTF8

import numpy as np

from .errors import GGUFError

MAX_ARRAY_DEPTH = 8       # nested-array depth limit (real files use 1)
MAX_DIMS = 4              # GGML_MAX_DIMS
INT64_MAX = 0x7FFFFFFFFFFFFFFF

# value type ids (GgufValueType) -> (element size, numpy dtype); STRING/ARRAY are variable
cdef enum:
    VT_UINT8 = 0
    VT_INT8 = 1
    VT_UINT16 = 2
    VT_INT16 = 3
    VT_UINT32 = 4
    VT_INT32 = 5
    VT_FLOAT32 = 6
    VT_BOOL = 7
    VT_STRING = 8
    VT_ARRAY = 9
    VT_UINT64 = 10
    VT_INT64 = 11
    VT_FLOAT64 = 12

cdef int[13] _VT_SIZE
_VT_SIZE[:] = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8]   # STRING/ARRAY: minimum sizes
_VT_DTYPE = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4",
             7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
_VT_NAME = ["UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL",
            "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"]


# ---------------------------------------------------------------- little-endian loads
cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _u64(const uint8_t* p) noexcept nogil:
    return <uint64_t>_u32(p) | (<uint64_t>_u32(p + 4) << 32)


cdef Py_ssize_t _utf8_invalid(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Index of the first byte of the first invalid UTF-8 sequence in s[:n], or -1.

    Same acceptance as Python's strict decoder (Unicode Table 3-7: no overlongs, no
    surrogates, nothing above U+10FFFF)."""
    cdef Py_ssize_t i = 0
    cdef uint8_t c, c1
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return i
        if c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return i
            i += 2
            continue
        if i + 1 >= n:
            return i
        c1 = s[i + 1]
        if c < 0xF0:
            if (c1 & 0xC0) != 0x80 or (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return i
            if i + 2 >= n or (s[i + 2] & 0xC0) != 0x80:
                return i
            i += 3
            continue
        if (c1 & 0xC0) != 0x80 or (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
            return i
        if i + 3 >= n or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
            return i
        i += 4
    return -1


cdef Py_ssize_t _scan_strings(const uint8_t* p, Py_ssize_t n, Py_ssize_t pos, uint64_t count,
                              int64_t* starts, int* why) noexcept nogil:
    """Walk ``count`` strings from p[pos]; starts[j] = position of string j's bytes.

    Returns the end position, or on error sets *why (1 truncated length, 2 length past
    end, 3 bad UTF-8), stores the failing string index in starts[0] and the offending
    byte offset in the return value."""
    cdef uint64_t j, ln
    cdef Py_ssize_t bad
    for j in range(count):
        if n - pos < 8:
            why[0] = 1
            starts[0] = <int64_t>j
            return pos
        ln = _u64(p + pos)
        if ln > <uint64_t>(n - pos - 8):
            why[0] = 2
            starts[0] = <int64_t>j
            return pos
        pos += 8
        starts[j] = pos
        bad = _utf8_invalid(p + pos, <Py_ssize_t>ln)
        if bad >= 0:
            why[0] = 3
            starts[0] = <int64_t>j
            return pos + bad
        pos += <Py_ssize_t>ln
    why[0] = 0
    return pos


cdef Py_ssize_t _check_bools(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] > 1:
            return i
    return -1


# ---------------------------------------------------------------- string arrays
cdef class StringArray:
    """A read-only sequence of ``str`` decoded on access from one bytes blob.

    GGUF token lists hold 10^5+ strings; decoding them all at open costs more than
    reading the rest of the header, so the reader validates their UTF-8 once (in C) and
    keeps the raw bytes here. ``tolist()`` decodes everything in one pass.
    """
    cdef bytes _blob
    cdef const int64_t[::1] _starts   # (n + 1,): string j is blob[starts[j] : starts[j+1] - 8]
    cdef Py_ssize_t _n

    def __cinit__(self, bytes blob, starts):
        self._blob = blob
        self._starts = starts
        self._n = self._starts.shape[0] - 1

    cdef inline str _get(self, Py_ssize_t j):
        cdef const char* b = self._blob
        cdef int64_t s = self._starts[j]
        cdef int64_t e = self._starts[j + 1] - 8
        return PyUnicode_DecodeUTF8(b + s, e - s, NULL)

    def __len__(self):
        return self._n

    def __getitem__(self, index):
        cdef Py_ssize_t j
        if isinstance(index, slice):
            return [self._get(j) for j in range(*index.indices(self._n))]
        j = index
        if j < 0:
            j += self._n
        if j < 0 or j >= self._n:
            raise IndexError(f"string array index {index} out of range (length {self._n})")
        return self._get(j)

    def __iter__(self):
        cdef Py_ssize_t j
        for j in range(self._n):
            yield self._get(j)

    def __reversed__(self):
        cdef Py_ssize_t j
        for j in range(self._n - 1, -1, -1):
            yield self._get(j)

    def __contains__(self, value):
        return value in self.tolist()

    def index(self, value):
        return self.tolist().index(value)

    def count(self, value):
        return self.tolist().count(value)

    def tolist(self):
        """All strings as a list, decoded in one pass."""
        cdef Py_ssize_t j
        cdef list out = [None] * self._n
        for j in range(self._n):
            out[j] = self._get(j)
        return out

    def __eq__(self, other):
        if isinstance(other, StringArray) or isinstance(other, (list, tuple)):
            return len(other) == self._n and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None

    def __repr__(self):
        head = ", ".join(repr(s) for s in self[:3])
        more = ", ..." if self._n > 3 else ""
        return f"StringArray(len={self._n}, [{head}{more}])"

    def __reduce__(self):
        return (StringArray, (self._blob, np.asarray(self._starts)))


# ---------------------------------------------------------------- the parser
cdef class _Parser:
    cdef const uint8_t[::1] buf
    cdef const uint8_t* p
    cdef Py_ssize_t n
    cdef Py_ssize_t pos
    cdef object source
    cdef object owner

    def __init__(self, owner, source):
        self.owner = owner
        self.buf = owner
        self.n = self.buf.shape[0]
        self.p = &self.buf[0] if self.n > 0 else NULL
        self.pos = 0
        self.source = source

    cdef object _err(self, str field, Py_ssize_t offset, str problem):
        return GGUFError(self.source, field, offset, problem)

    cdef int _need(self, Py_ssize_t k, str field) except -1:
        if self.n - self.pos < k:
            raise self._err(field, self.pos, f"truncated: needs {k} bytes, the file has "
                            f"{self.n - self.pos} left (file size {self.n})")
        return 0

    cdef uint32_t _read_u32(self, str field) except? 0xFFFFFFFF:
        self._need(4, field)
        cdef uint32_t v = _u32(self.p + self.pos)
        self.pos += 4
        return v

    cdef uint64_t _read_u64(self, str field) except? 0xFFFFFFFFFFFFFFFF:
        self._need(8, field)
        cdef uint64_t v = _u64(self.p + self.pos)
        self.pos += 8
        return v

    cdef str _read_string(self, str field):
        cdef Py_ssize_t at = self.pos
        cdef uint64_t ln = self._read_u64(field + ".length")
        if ln > <uint64_t>(self.n - self.pos):
            raise self._err(field + ".length", at, f"string length {ln} exceeds the "
                            f"{self.n - self.pos} bytes left in the file")
        cdef Py_ssize_t bad = _utf8_invalid(self.p + self.pos, <Py_ssize_t>ln)
        if bad >= 0:
            raise self._err(field, self.pos + bad, f"invalid UTF-8 (byte 0x{self.p[self.pos + bad]:02x})")
        s = PyUnicode_DecodeUTF8(<const char*>(self.p + self.pos), <Py_ssize_t>ln, NULL)
        self.pos += <Py_ssize_t>ln
        return s

    cdef object _read_scalar(self, uint32_t vt, str field):
        cdef const uint8_t* q
        cdef uint32_t b32
        cdef uint64_t b64
        cdef float f32
        cdef double f64
        if vt == VT_STRING:
            return self._read_string(field)
        self._need(_VT_SIZE[vt], field)
        q = self.p + self.pos
        self.pos += _VT_SIZE[vt]
        if vt == VT_UINT8:
            return q[0]
        if vt == VT_INT8:
            return <signed char>q[0]
        if vt == VT_UINT16:
            return <unsigned short>(q[0] | (q[1] << 8))
        if vt == VT_INT16:
            return <short>(q[0] | (q[1] << 8))
        if vt == VT_UINT32:
            return _u32(q)
        if vt == VT_INT32:
            return <int>_u32(q)
        if vt == VT_FLOAT32:
            b32 = _u32(q)
            memcpy(&f32, &b32, 4)
            return <double>f32
        if vt == VT_BOOL:
            if q[0] > 1:
                raise self._err(field, self.pos - 1, f"BOOL byte is {q[0]}, not 0 or 1")
            return q[0] == 1
        if vt == VT_UINT64:
            return _u64(q)
        if vt == VT_INT64:
            return <int64_t>_u64(q)
        # VT_FLOAT64
        b64 = _u64(q)
        memcpy(&f64, &b64, 8)
        return f64

    cdef tuple _read_array(self, str field, int depth):
        """-> (element type, value) for an array body (u32 type, u64 count, items)."""
        cdef Py_ssize_t at = self.pos
        cdef uint32_t et = self._read_u32(field + ".element_type")
        if et > VT_FLOAT64:
            raise self._err(field + ".element_type", at, f"unknown value type id {et}")
        if et == VT_ARRAY and depth + 1 >= MAX_ARRAY_DEPTH:
            raise self._err(field + ".element_type", at,
                            f"arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
        at = self.pos
        cdef uint64_t count = self._read_u64(field + ".count")
        cdef Py_ssize_t left = self.n - self.pos
        cdef Py_ssize_t esize = _VT_SIZE[et]
        if count > <uint64_t>(left // esize):
            raise self._err(field + ".count", at, f"array of {count} {_VT_NAME[et]} "
                            f"(>= {esize} bytes each) cannot fit in the {left} bytes left")
        cdef Py_ssize_t cnt = <Py_ssize_t>count
        cdef Py_ssize_t start = self.pos, end, bad, j, nbytes
        cdef int why = 0
        cdef int64_t[::1] starts
        if et == VT_STRING:
            starts_arr = np.empty(cnt + 1, dtype=np.int64)
            starts = starts_arr
            if cnt > 0:
                with nogil:
                    end = _scan_strings(self.p, self.n, start, count, &starts[0], &why)
                if why:
                    j = starts[0]
                    if why == 1:
                        raise self._err(f"{field}[{j}].length", end, "truncated: needs 8 "
                                        f"bytes, the file has {self.n - end} left")
                    if why == 2:
                        raise self._err(f"{field}[{j}].length", end, f"string length "
                                        f"{_u64(self.p + end)} exceeds the "
                                        f"{self.n - end - 8} bytes left in the file")
                    raise self._err(f"{field}[{j}]", end, f"invalid UTF-8 (byte 0x{self.p[end]:02x})")
            else:
                end = start
            for j in range(cnt):
                starts[j] -= start
            starts[cnt] = end - start + 8
            starts_arr.flags.writeable = False
            self.pos = end
            return et, StringArray(bytes(self.buf[start:end]), starts_arr)
        if et == VT_ARRAY:
            items = []
            for j in range(cnt):
                items.append(self._read_array(f"{field}[{j}]", depth + 1)[1])
            return et, tuple(items)
        nbytes = cnt * esize
        if et == VT_BOOL:
            bad = _check_bools(self.p + start, nbytes)
            if bad >= 0:
                raise self._err(f"{field}[{bad}]", start + bad,
                                f"BOOL byte is {self.p[start + bad]}, not 0 or 1")
        arr = np.frombuffer(self.owner, dtype=_VT_DTYPE[et], count=cnt, offset=start).copy()
        arr.flags.writeable = False
        self.pos = start + nbytes
        return et, arr

    def parse(self):
        """-> dict(version, n_tensors, n_kv, kvs, tensors, infos_end).

        kvs: list of (key, value_type, element_type or -1, value, record_offset)
        tensors: list of (name, dims (GGUF order, ne0 first), type_id, offset,
                          record_offset, n_elements)
        """
        cdef uint32_t version, vt, nd, tt
        cdef uint64_t n_tensors, n_kv, i, d, prod, off
        cdef Py_ssize_t at, left, k
        self._need(4, "header.magic")
        if bytes(self.buf[0:4]) != b"GGUF":
            raise self._err("header.magic", 0, f"not a GGUF file: magic is "
                            f"{bytes(self.buf[0:4])!r}, expected b'GGUF'")
        self.pos = 4
        version = self._read_u32("header.version")
        if version not in (2, 3):
            if version == 1:
                problem = "GGUF version 1 is not supported (it used 32-bit counts); convert it to v3"
            elif version in (0x01000000, 0x02000000, 0x03000000):
                problem = (f"big-endian GGUF (version field 0x{version:08x} is version "
                           f"{version >> 24} byte-swapped); only little-endian files are supported")
            else:
                problem = f"unknown GGUF version {version} (supported: 2, 3)"
            raise self._err("header.version", 4, problem)
        n_tensors = self._read_u64("header.n_tensors")
        n_kv = self._read_u64("header.n_kv")
        left = self.n - self.pos
        if n_kv > <uint64_t>(left // 13):
            raise self._err("header.n_kv", 16, f"n_kv = {n_kv} metadata entries (>= 13 bytes "
                            f"each) cannot fit in the {left} bytes after the header")
        if n_tensors > <uint64_t>(left // 24):
            raise self._err("header.n_tensors", 8, f"n_tensors = {n_tensors} tensor infos "
                            f"(>= 24 bytes each) cannot fit in the {left} bytes after the header")

        kvs = []
        for i in range(n_kv):
            at = self.pos
            key = self._read_string(f"kv[{i}].key")
            vt = self._read_u32(f"metadata '{key}'.value_type")
            if vt > VT_FLOAT64:
                raise self._err(f"metadata '{key}'.value_type", self.pos - 4,
                                f"unknown value type id {vt}")
            if vt == VT_ARRAY:
                et, value = self._read_array(f"metadata '{key}'", 0)
            else:
                et, value = -1, self._read_scalar(vt, f"metadata '{key}'")
            kvs.append((key, vt, et, value, at))

        left = self.n - self.pos
        if n_tensors > <uint64_t>(left // 24):
            raise self._err("header.n_tensors", 8, f"n_tensors = {n_tensors} tensor infos "
                            f"(>= 24 bytes each) cannot fit in the {left} bytes after the metadata")
        tensors = []
        for i in range(n_tensors):
            at = self.pos
            name = self._read_string(f"tensor[{i}].name")
            field = f"tensor[{i}] '{name}'"
            nd = self._read_u32(field + ".n_dims")
            if nd > MAX_DIMS:
                raise self._err(field + ".n_dims", self.pos - 4,
                                f"n_dims = {nd} exceeds the maximum of {MAX_DIMS}")
            self._need(8 * nd, field + ".dims")
            dims = []
            prod = 1
            for k in range(nd):
                d = _u64(self.p + self.pos + 8 * k)
                if d > <uint64_t>INT64_MAX:
                    raise self._err(f"{field}.dims[{k}]", self.pos + 8 * k,
                                    f"dimension {d} exceeds 2**63 - 1")
                if d != 0 and prod > <uint64_t>INT64_MAX // d:
                    raise self._err(f"{field}.dims[{k}]", self.pos + 8 * k, f"the product of "
                                    f"dims {dims + [d]} overflows 64 bits")
                prod *= d
                dims.append(d)
            self.pos += 8 * nd
            tt = self._read_u32(field + ".type")
            off = self._read_u64(field + ".offset")
            tensors.append((name, tuple(dims), tt, off, at, prod))
        return dict(version=version, n_tensors=n_tensors, n_kv=n_kv, kvs=kvs,
                    tensors=tensors, infos_end=self.pos)


def parse_header(owner, source):
    """Parse the header of a GGUF image in ``owner`` (any buffer of bytes)."""
    return _Parser(owner, source).parse()
