"""Every built code object, checked on the CPU (no GPU needed).

* manifest.json lists every kernels/*.hip module for every target, with correct sha256;
* each object's kernels are exactly the ones rocmforge.ops.KERNELS launches (less the
  other vendor's VENDOR_ONLY ones);
* AMD: the explicit kernel arguments in the code-object metadata (llvm-readelf --notes:
  offsets and sizes) are what the Python launcher packs for that kernel, on every target;
* NVIDIA: every cubin's ELF symbol table lists the expected entry points;
* rebuilding gives the same bytes (reproducible builds).

The objects come from rocmforge/_kernels (built by tools/build_kernels.py); when that
folder has no manifest, they are built into a temporary folder here (clang-19 / nvcc).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rocmforge.device import arg_layout, elf
from rocmforge.ops import KERNELS, VENDOR_ONLY

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_kernels  # noqa: E402

MODULES = sorted(p.stem for p in (ROOT / "kernels").glob("*.hip"))
READELF = shutil.which("llvm-readelf-19") or shutil.which("llvm-readelf")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(folder, manifest) of a full build: the package's own, else a fresh one."""
    folder = ROOT / "rocmforge" / "_kernels"
    if not (folder / "manifest.json").exists():
        if build_kernels.find_clang() is None and build_kernels.find_nvcc() is None:
            pytest.skip("no code objects built and neither clang++-19 nor nvcc present")
        folder = tmp_path_factory.mktemp("kernels")
        m = build_kernels.build(folder, verbose=False)
        assert not m["failures"], m["failures"]
    return folder, json.loads((folder / "manifest.json").read_text())


def _objects(built, vendor):
    folder, man = built
    objs = [o for o in man["objects"] if o["vendor"] == vendor]
    if not objs:
        pytest.skip(f"no {vendor} code objects built (compiler missing: {man.get('skipped')})")
    return folder, objs


def expected_kernels(module: str, vendor: str):
    return sorted(k for k, (m, _) in KERNELS.items()
                  if m == module and VENDOR_ONLY.get(k, vendor) == vendor)


def test_every_kernel_has_a_module():
    """Every kernels/*.hip registers its entry points in rocmforge.ops.KERNELS."""
    assert {m for m, _ in KERNELS.values()} == set(MODULES), (
        "register every kernel of kernels/*.hip in rocmforge/ops/kernels.py (KERNELS)")


@pytest.mark.parametrize("vendor,targets", [("amd", build_kernels.AMD_TARGETS),
                                            ("nvidia", build_kernels.NVIDIA_TARGETS)])
def test_manifest_complete_and_hashes_match(built, vendor, targets):
    folder, objs = _objects(built, vendor)
    assert sorted((o["module"], o["target"]) for o in objs) == sorted(
        (m, t) for m in MODULES for t in targets), "stale build: run python tools/build_kernels.py"
    for o in objs:
        data = (folder / o["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == o["sha256"], o["file"]
        assert o["kernels"] == expected_kernels(o["module"], vendor), o["file"]
        assert elf.kernel_names(data) == o["kernels"], o["file"]
        assert elf.machine(data) == (elf.EM_AMDGPU if vendor == "amd" else elf.EM_CUDA)


def _amd_metadata(path: Path) -> list:
    """The amdhsa.kernels list of a code object, from llvm-readelf --notes."""
    yaml = pytest.importorskip("yaml")
    text = subprocess.run([READELF, "--notes", str(path)], capture_output=True, text=True,
                          check=True).stdout
    start, end = text.index("---\n"), text.index("\n...", text.index("---\n"))
    return yaml.safe_load(text[start:end + 4])["amdhsa.kernels"]


@pytest.mark.skipif(READELF is None, reason="llvm-readelf-19 not installed (apt-get install llvm-19)")
def test_amd_argument_metadata_matches_launcher(built):
    folder, objs = _objects(built, "amd")
    for o in objs:
        kernels = _amd_metadata(folder / o["file"])
        assert sorted(k[".name"] for k in kernels) == o["kernels"]
        for k in kernels:
            sig = KERNELS[k[".name"]][1]
            explicit = [a for a in k[".args"] if not a[".value_kind"].startswith("hidden_")]
            got = [(a[".offset"], a[".size"]) for a in explicit]
            want = [(off, size) for _, off, size in arg_layout(sig)]
            assert got == want, f"{o['file']} {k['.name']}: metadata {got} != launcher {want}"
            kinds = [a[".value_kind"] for a in explicit]
            assert kinds == ["global_buffer" if t.__name__ == "c_void_p" else "by_value"
                             for _, t in sig], f"{o['file']} {k['.name']}: {kinds}"
            assert k[".max_flat_workgroup_size"] == 256
            assert k[".wavefront_size"] == (64 if o["target"].startswith("gfx9") else 32)
            assert k[".private_segment_fixed_size"] == 0, f"{k['.name']} spills to scratch"


def test_amd_denormals_are_kept(built):
    """Subnormal float32 inputs must survive (MX blocks of tiny values): FP32 denormal
    mode 3 (flush none): bits 16-17 of COMPUTE_PGM_RSRC1, at byte 48 of each 64-byte
    kernel descriptor NAME.kd."""
    folder, objs = _objects(built, "amd")
    for o in objs:
        kd = _kernel_descriptors((folder / o["file"]).read_bytes())
        assert sorted(kd) == o["kernels"], o["file"]
        for kname, rsrc1 in kd.items():
            assert (rsrc1 >> 16) & 3 == 3, f"{o['file']} {kname}: fp32 denormals flushed"


def _kernel_descriptors(data: bytes) -> dict:
    """{kernel: COMPUTE_PGM_RSRC1} from each NAME.kd symbol (value = file offset of .rodata)."""
    import struct
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = []
    for i in range(shnum):
        f = struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        sections.append(f)  # name, type, flags, addr, offset, size, link, info, align, entsize
    out = {}
    for _, stype, _, _, off, size, link, _, _, entsize in sections:
        if stype != 2 or not entsize:  # SHT_SYMTAB
            continue
        stroff = sections[link][4]
        for j in range(size // entsize):
            st_name, st_info, st_other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", data, off + j * entsize)
            name = data[stroff + st_name:data.index(b"\0", stroff + st_name)].decode()
            if name.endswith(".kd") and st_size == 64:
                sec = sections[st_shndx]
                file_off = sec[4] + (st_value - sec[3])
                out[name[:-3]] = struct.unpack_from("<I", data, file_off + 48)[0]
    return out


def test_cubins_list_expected_kernels(built):
    folder, objs = _objects(built, "nvidia")
    for o in objs:
        data = (folder / o["file"]).read_bytes()
        assert elf.kernel_names(data) == expected_kernels(o["module"], "nvidia"), o["file"]
        # the cubin's own arch: EF_CUDA_SM in e_flags (bits 0-7 before CUDA 12.8, 8-15 after)
        flags = int.from_bytes(data[48:52], "little")
        sm = int(o["target"][3:])
        assert sm in (flags & 0xFF, (flags >> 8) & 0xFF), f"{o['file']}: e_flags 0x{flags:x}"


@pytest.mark.parametrize("target", ["gfx1100", "sm_90"])
def test_builds_are_reproducible(built, tmp_path, target):
    folder, man = built
    tool = build_kernels.find_clang() if target.startswith("gfx") else build_kernels.find_nvcc()
    if tool is None:
        pytest.skip(f"no compiler for {target}")
    entry = next((o for o in man["objects"] if o["target"] == target and o["module"] == "mx_quant"), None)
    if entry is None:
        pytest.skip(f"{target} not built")
    m = build_kernels.build(tmp_path, [target], verbose=False, modules=["mx_quant"])
    again = next(o for o in m["objects"] if o["module"] == "mx_quant")
    assert again["sha256"] == entry["sha256"]
