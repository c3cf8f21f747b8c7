"""The command-line tools as a user runs them: output, exit codes, no tracebacks."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = (", there was a little girl named Lily. She loved to play outside in the park. "
          "One day, she saw a big, red ball.")


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_run_model_golden_streams_and_reports(stories260k):
    r = run("tools/run_model.py", "--model", stories260k, "--max-tokens", 40,
            "--temperature", 0, "--device", "cpu", "--kv-cache-dtype", "f32", "Once upon a time")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Once upon a time" + GOLDEN + "\n"
    assert "decode 40 tokens" in r.stderr and "tok/s" in r.stderr and "KV cache F32" in r.stderr


def test_run_model_user_errors_exit_1_without_traceback(stories260k, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    for args in (["--model", tmp_path / "missing.gguf", "x"],
                 ["--model", bad, "x"],
                 ["--model", stories260k, "--n-ctx", 4, "Once upon a time there was a girl"]):
        r = run("tools/run_model.py", "--device", "cpu", *args)
        assert r.returncode == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")
    r = run("tools/run_model.py", "--model", stories260k, "--kv-cache-dtype", "fp5", "x")
    assert r.returncode == 2 and "invalid choice: 'fp5'" in r.stderr


def test_gguf_dump_table_and_json(stories260k, tmp_path):
    r = run("tools/gguf_dump.py", stories260k)
    assert r.returncode == 0 and "48 tensors" in r.stdout and "blk.0.attn_q.weight" in r.stdout
    r = run("tools/gguf_dump.py", "--json", stories260k)
    doc = json.loads(r.stdout)
    assert doc["metadata"]["general.architecture"] == {"type": "STRING", "value": "llama"}
    assert len(doc["tensors"]) == 48
    assert doc["tensors"][0] == {"name": "token_embd.weight", "type": "F32", "shape": [512, 64],
                                 "dims": [64, 512], "offset": 0, "nbytes": 131072}
    r = run("tools/gguf_dump.py", tmp_path / "missing.gguf")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_perplexity_tool(stories260k, shared_data):
    r = run("tools/perplexity.py", "--model", stories260k, "--text",
            shared_data / "text" / "tinystories_sample.txt", "--stories", 200, "--n-tokens", 512)
    assert r.returncode == 0, r.stderr
    assert "ppl=4.027" in r.stdout


def test_attention_probe_variant_build(tmp_path):
    """bench/probe_kv_attention.build_variant (used by the probe and the trace tools):
    a copy of the code objects whose attention cubin carries the -D flags, with its
    manifest hash updated; bench/copy_floor_kv.cu builds; without a GPU the probe, trace,
    copy-floor and sustained-load tools exit 2 with a message."""
    sys.path.insert(0, str(ROOT / "bench"))
    import probe_kv_attention as probe
    sys.path.insert(0, str(ROOT / "tools"))
    import build_kernels
    man_path = ROOT / "rocmforge" / "_kernels" / "manifest.json"
    if build_kernels.find_nvcc() is None or not man_path.exists():
        import pytest
        pytest.skip("needs nvcc and the built code objects (python tools/build_kernels.py)")
    import hashlib
    out = probe.build_variant(["RF_STAGED_NOMATH"], "sm_90", tmp_path)
    man = json.loads((out / "manifest.json").read_text())
    ours = json.loads(man_path.read_text())
    assert [o["file"] for o in man["objects"]] == [o["file"] for o in ours["objects"]]
    for o, p in zip(man["objects"], ours["objects"]):
        assert hashlib.sha256((out / o["file"]).read_bytes()).hexdigest() == o["sha256"]
        assert (o["sha256"] != p["sha256"]) == (o["file"] == "attention.sm_90.cubin"), o["file"]
    import copy_floor_kv
    for arch in ("sm_80", "sm_90"):      # the copy-floor kernels build for both (bulk: sm_90 only)
        assert copy_floor_kv.build(arch)[:4] == b"\x7fELF"
    for tool in ("bench/probe_kv_attention.py", "bench/trace_kv_attention.py", "bench/copy_floor_kv.py",
                 "bench/sustained_kv_attention.py"):
        r = run(tool, "--batch", "1")
        if r.returncode != 2:      # a GPU is present: the tool ran
            assert r.returncode == 0, r.stderr
        else:
            assert r.stdout.startswith("no GPU") and "Traceback" not in r.stderr
