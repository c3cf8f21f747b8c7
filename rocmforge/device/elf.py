"""A tiny ELF64 reader: the kernel entry points of a code object, without any driver.

Used by tools/build_kernels.py (kernel names for manifest.json) and by the tests that
check every ``.hsaco`` / ``.cubin`` on a CPU machine.

* AMD ``.hsaco``: each kernel has a kernel-descriptor symbol ``NAME.kd`` (OBJECT).
* NVIDIA ``.cubin``: each kernel is a GLOBAL FUNC symbol whose ``st_other`` carries
  ``STO_CUDA_ENTRY`` (0x10); device functions do not.
"""
from __future__ import annotations

import struct

EM_AMDGPU = 224
EM_CUDA = 190
STO_CUDA_ENTRY = 0x10
_STT_OBJECT, _STT_FUNC = 1, 2
_STB_GLOBAL = 1
_SHT_SYMTAB, _SHT_DYNSYM = 2, 11


class ElfError(ValueError):
    """The bytes are not a little-endian ELF64 code object we can read."""


def _header(data: bytes):
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file (bad magic)")
    if data[4] != 2 or data[5] != 1:
        raise ElfError(f"need little-endian ELF64, got class {data[4]} data {data[5]}")
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    if shoff + shnum * shentsize > len(data) or shentsize < 64:
        raise ElfError(f"section table at byte {shoff} runs past the end ({len(data)} bytes)")
    return machine, shoff, shentsize, shnum


def _sections(data: bytes):
    _, shoff, shentsize, shnum = _header(data)
    out = []
    for i in range(shnum):
        (name, stype, _flags, _addr, off, size, link, _info, _align, entsize) = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize)
        if stype != 8 and off + size > len(data):  # 8 = SHT_NOBITS
            raise ElfError(f"section {i} at byte {off} (+{size}) runs past the end")
        out.append((stype, off, size, link, entsize))
    return out


def machine(data: bytes) -> int:
    """ELF e_machine: 224 (EM_AMDGPU) or 190 (EM_CUDA)."""
    return _header(data)[0]


def symbols(data: bytes):
    """Yield (name, type, bind, other) for every symbol of .symtab and .dynsym."""
    secs = _sections(data)
    for stype, off, size, link, entsize in secs:
        if stype not in (_SHT_SYMTAB, _SHT_DYNSYM) or entsize < 24:
            continue
        str_off, str_size = secs[link][1], secs[link][2]
        for j in range(size // entsize):
            st_name, st_info, st_other = struct.unpack_from("<IBB", data, off + j * entsize)
            if st_name >= str_size:
                raise ElfError(f"symbol {j} names string offset {st_name} past the table")
            end = data.index(b"\0", str_off + st_name)
            yield data[str_off + st_name:end].decode(), st_info & 0xF, st_info >> 4, st_other


def kernel_names(data: bytes) -> list:
    """Sorted kernel entry points of an AMDGPU or CUDA ELF code object."""
    m = machine(data)
    names = set()
    for name, stype, bind, other in symbols(data):
        if m == EM_AMDGPU and stype == _STT_OBJECT and name.endswith(".kd"):
            names.add(name[:-3])
        elif (m == EM_CUDA and stype == _STT_FUNC and bind == _STB_GLOBAL
              and other & STO_CUDA_ENTRY):
            names.add(name)
    if m not in (EM_AMDGPU, EM_CUDA):
        raise ElfError(f"e_machine {m} is neither AMDGPU ({EM_AMDGPU}) nor CUDA ({EM_CUDA})")
    return sorted(names)
