"""Fuzz the GGUF reader on the two real files: only GGUFError may escape.

20,000 cases in total (stories260K.gguf and ggml-vocab-llama-spm.gguf alternate), built
in memory by ``tools/fuzz_gguf.py``'s engine: interesting integers written at parsed
header / count / length / type / offset fields, bit flips, random bytes, truncations,
splices, insertions and deletions in the header region.  Files that still open are
fully touched (metadata decoded, both ends of each tensor view read).  The run must
reject a good share of cases (so the mutations reach the checks) and open some (so
they are not all caught by the magic check).  A longer run: tools/fuzz_gguf.py --cases N.
"""
import importlib.util
import random
from pathlib import Path

import pytest

from rocmforge.gguf.reader import GGUFReader

ROOT = Path(__file__).resolve().parents[2]
CASES = 20000
SEED = 20261126


def _engine():
    spec = importlib.util.spec_from_file_location("fuzz_gguf", ROOT / "tools" / "fuzz_gguf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def engine():
    return _engine()


@pytest.fixture
def seed_files(shared_data):
    return [shared_data / "models" / "stories260K.gguf", shared_data / "vocab" / "ggml-vocab-llama-spm.gguf"]


def test_field_locator_finds_real_fields(engine, seed_files):
    data = seed_files[0].read_bytes()
    fields = engine.integer_fields(data)
    r = GGUFReader(data)
    # 3 header fields, >= 3 per KV, 4 + n_dims per tensor
    assert len(fields) >= 3 + 3 * len(r.metadata) + sum(4 + len(t.dims) for t in r.tensors.values())
    t = r.tensors["output.weight"]
    name_len = len(t.name.encode())
    offset_field = t.info_offset + 8 + name_len + 4 + 8 * len(t.dims) + 4
    assert (offset_field, 8) in fields
    assert int.from_bytes(data[offset_field:offset_field + 8], "little") == t.offset


def test_mutations_change_the_file(engine, seed_files):
    rng = random.Random(SEED)
    data = seed_files[0].read_bytes()
    fields = engine.integer_fields(data)
    changed = sum(engine.mutate(rng, data, fields, data)[0] != data for _ in range(200))
    assert changed >= 180


def test_fuzz_only_gguf_error_escapes(engine, seed_files):
    stats = engine.run(seed_files, CASES, SEED, log=lambda *a: None)
    fails = stats["failures"]
    assert not fails, f"{len(fails)} failures; first: {fails[0][:4]}\n{fails[0][4]}"
    assert stats["cases"] == CASES
    assert stats["rejected"] > CASES // 4 and stats["opened"] > CASES // 20, stats
