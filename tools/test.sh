#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine; .ci/run calls exactly this.
#   bash tools/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# AMD code objects are built with clang-19 + lld-19 alone (DESIGN.md); install them if missing.
if ! command -v clang++-19 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  echo "[test.sh] installing clang-19 lld-19 llvm-19 from Debian"
  (apt-get update -qq && apt-get install -y -qq clang-19 lld-19 llvm-19) >/dev/null
fi
echo "[test.sh] pip install -e .[test] (builds the Cython extensions and the GPU code objects)"
"$PY" -m pip install -q -e ".[test]"
# every AMD and NVIDIA code object must exist: the CPU tests check their metadata
"$PY" tools/build_kernels.py --if-stale --require all
echo "[test.sh] pytest"
"$PY" -m pytest -q -p no:cacheprovider "$@"
