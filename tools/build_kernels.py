#!/usr/bin/env python3
"""Build every kernels/*.hip into AMD (.hsaco) and NVIDIA (.cubin) code objects.

    python tools/build_kernels.py                  # all targets whose compiler exists
    python tools/build_kernels.py --targets sm_90 gfx942 --out /tmp/k

AMD: clang++-19 in header-free mode (no ROCm needed; apt-get install -y clang-19 lld-19):
    clang++-19 -x hip --offload-arch=gfxNNN --cuda-device-only --no-gpu-bundle-output
               -nogpulib -nogpuinc -fuse-cuid=none -O3 -Iinclude -o X.hsaco X.hip
NVIDIA: nvcc -cubin -arch=sm_NN -O3 -Iinclude -x cu -o X.cubin X.hip

Outputs go to rocmforge/_kernels/ (git-ignored package data) as NAME.TARGET.hsaco|cubin,
with manifest.json listing, per code object: file, source, target, vendor, sha256 and the
kernel names read from its ELF symbol table.  Builds are reproducible (-fuse-cuid=none;
nvcc output is deterministic): rebuilding gives the same sha256.  A missing compiler
is reported and its targets skipped; the exit status is 1 only if a compile fails (or,
with --require, if a requested vendor was skipped).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rocmforge.device import elf  # noqa: E402  (pure Python; no driver needed)

AMD_TARGETS = ("gfx90a", "gfx942", "gfx1100", "gfx1201")
NVIDIA_TARGETS = ("sm_80", "sm_90")
MANIFEST_VERSION = 1


def find_clang() -> str | None:
    for cand in (os.environ.get("ROCMFORGE_CLANG"), "clang++-19", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def find_nvcc() -> str | None:
    for cand in (os.environ.get("ROCMFORGE_NVCC"), "nvcc", "/usr/local/cuda/bin/nvcc",
                 "/usr/local/bin/nvcc"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def amd_command(clang: str, src: Path, target: str, out: Path) -> list:
    return [clang, "-x", "hip", f"--offload-arch={target}", "--cuda-device-only",
            "--no-gpu-bundle-output", "-nogpulib", "-nogpuinc", "-fuse-cuid=none",
            "-fno-gpu-flush-denormals-to-zero", "-O3", "-std=c++17",
            f"-I{ROOT / 'include'}", "-o", str(out), str(src)]


def nvidia_command(nvcc: str, src: Path, target: str, out: Path) -> list:
    return [nvcc, "-cubin", f"-arch={target}", "-O3", "-std=c++17", f"-I{ROOT / 'include'}",
            "-x", "cu", "-o", str(out), str(src)]


def _compile(cmd: list, out: Path) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        return f"FAILED ({res.returncode}): {' '.join(cmd)}\n{res.stderr}"
    return ""


def build(out_dir: Path, targets=None, jobs: int = 2, verbose: bool = True, modules=None) -> dict:
    """Build everything (or ``modules``, kernels/*.hip stems, for ``targets``); return the
    manifest dict (also written to out_dir/manifest.json)."""
    log = print if verbose else (lambda *a, **k: None)
    sources = sorted((ROOT / "kernels").glob("*.hip"))
    if modules:
        missing = set(modules) - {p.stem for p in sources}
        if missing:
            raise SystemExit(f"no kernels/{sorted(missing)[0]}.hip")
        sources = [p for p in sources if p.stem in set(modules)]
    wanted = set(targets) if targets else set(AMD_TARGETS + NVIDIA_TARGETS)
    unknown = wanted - set(AMD_TARGETS + NVIDIA_TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; known: "
                         f"{', '.join(AMD_TARGETS + NVIDIA_TARGETS)}")
    clang, nvcc = find_clang(), find_nvcc()
    jobs_list, skipped = [], []
    for vendor, tlist, compiler, make, ext, hint in (
            ("amd", AMD_TARGETS, clang, amd_command, "hsaco",
             "clang++-19 not found: apt-get install -y clang-19 lld-19 llvm-19"),
            ("nvidia", NVIDIA_TARGETS, nvcc, nvidia_command, "cubin",
             "nvcc not found: install the CUDA toolkit or set ROCMFORGE_NVCC")):
        tsel = [t for t in tlist if t in wanted]
        if not tsel:
            continue
        if compiler is None:
            skipped.append((vendor, tsel, hint))
            log(f"SKIPPED {vendor} targets {', '.join(tsel)}: {hint}")
            continue
        for src in sources:
            for t in tsel:
                out = out_dir / f"{src.stem}.{t}.{ext}"
                jobs_list.append((vendor, src, t, out, make(compiler, src, t, out)))
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        results = list(pool.map(lambda j: _compile(j[4], j[3]), jobs_list))
    objects = []
    for (vendor, src, t, out, _cmd), err in zip(jobs_list, results):
        if err:
            failures.append(err)
            log(err)
            continue
        data = out.read_bytes()
        objects.append({
            "file": out.name, "source": f"kernels/{src.name}", "module": src.stem,
            "target": t, "vendor": vendor, "sha256": hashlib.sha256(data).hexdigest(),
            "kernels": elf.kernel_names(data)})
        log(f"built {out.relative_to(out_dir.parent) if out_dir.parent in out.parents else out}"
            f" ({len(data)} bytes, {len(objects[-1]['kernels'])} kernels)")
    if modules or targets:  # a partial build: keep the other entries of an existing manifest
        old = out_dir / "manifest.json"
        done = {(o["module"], o["target"]) for o in objects}
        if old.exists():
            kept = [o for o in json.loads(old.read_text()).get("objects", [])
                    if (o["module"], o["target"]) not in done and (out_dir / o["file"]).exists()]
            objects = sorted(kept + objects, key=lambda o: (o["module"], o["target"]))
    manifest = {"version": MANIFEST_VERSION, "objects": objects,
                "skipped": [{"vendor": v, "targets": ts, "reason": r} for v, ts, r in skipped]}
    if not failures:
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    manifest["failures"] = failures
    return manifest


def is_fresh(out_dir: Path) -> bool:
    """Every kernels/*.hip has its code objects in manifest.json, each newer than its
    source and every header."""
    man = out_dir / "manifest.json"
    if not man.exists():
        return False
    objs = json.loads(man.read_text()).get("objects", [])
    headers = max((p.stat().st_mtime for p in (ROOT / "include").rglob("*.h")), default=0.0)
    sources = {f"kernels/{p.name}": p for p in (ROOT / "kernels").glob("*.hip")}
    if not objs or set(sources) - {o["source"] for o in objs}:
        return False
    for o in objs:
        f, src = out_dir / o["file"], sources.get(o["source"])
        if src is None or not f.exists():
            return False
        if f.stat().st_mtime < max(src.stat().st_mtime, headers):
            return False
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "rocmforge" / "_kernels")
    ap.add_argument("--targets", nargs="*", help="subset of " + " ".join(AMD_TARGETS + NVIDIA_TARGETS))
    ap.add_argument("--modules", nargs="*", help="kernels/*.hip stems to build (default: all)")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--require", choices=("amd", "nvidia", "all"),
                    help="fail if this vendor's compiler is missing")
    ap.add_argument("--if-stale", action="store_true",
                    help="do nothing when manifest.json is newer than every kernel source/header")
    args = ap.parse_args(argv)
    if args.if_stale and is_fresh(args.out):
        print(f"{args.out / 'manifest.json'} is up to date")
        return 0
    m = build(args.out, args.targets, args.jobs, modules=args.modules)
    if m["failures"]:
        print(f"{len(m['failures'])} compile(s) failed; manifest not written", file=sys.stderr)
        return 1
    skipped = {s["vendor"] for s in m["skipped"]}
    if args.require and (skipped & ({"amd", "nvidia"} if args.require == "all" else {args.require})):
        print(f"required vendor skipped: {sorted(skipped)}", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'manifest.json'}: {len(m['objects'])} code objects"
          + (f"; skipped {sorted(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
