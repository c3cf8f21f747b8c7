"""End to end on real models: golden greedy text, perplexity against llama.cpp, KV dtypes."""
import numpy as np
import pytest

import rocmforge
from rocmforge.engine import ContextLengthError
from rocmforge.model.config import ModelError

GOLDEN = (", there was a little girl named Lily. She loved to play outside in the park. "
          "One day, she saw a big, red ball.")
# llama.cpp's perplexity with an F32 KV cache on the first 512 tokens (see the issue)
LLAMA_CPP_PPL = {"stories260K": 4.0273, "gemma3-270m": 8.2401}
# element mantissa bits: the KV dtype's relative precision is about 2**-mbits
KV_MBITS = {"f16": 10, "bf16": 7, "mxfp8_e4m3": 3, "mxfp6_e2m3": 3, "mxfp6_e3m2": 2, "mxfp4": 1}


def ppl_text(shared_data):
    """The first 200 stories of the TinyStories sample, stripped, joined with newlines."""
    raw = (shared_data / "text" / "tinystories_sample.txt").read_text(encoding="utf-8")
    return "\n".join(s.strip() for s in raw.split("<|endoftext|>")[:200])


def test_golden_greedy_stories260k(stories260k):
    with rocmforge.load(stories260k, device="cpu", kv_cache_dtype="f32") as m:
        assert m.generate("Once upon a time", max_tokens=40, temperature=0) == GOLDEN
        st = m.last_stats
        assert st.generated_tokens == 40 and st.prompt_tokens == 5
        assert st.stop_reason == "max_tokens"
        # streaming gives the same text in pieces
        pieces = list(m.generate("Once upon a time", max_tokens=40, temperature=0, stream=True))
        assert len(pieces) > 10 and "".join(pieces) == GOLDEN


def test_stories260k_perplexity_matches_llama_cpp(stories260k, shared_data):
    with rocmforge.load(stories260k, device="cpu") as m:
        ids = m.tokenize(ppl_text(shared_data))[:512]
        assert len(ids) == 512 and ids[0] == m.tokenizer.bos_id
        ppl = m.perplexity(ids)
    assert abs(ppl / LLAMA_CPP_PPL["stories260K"] - 1) < 0.01, ppl


def test_gemma3_perplexity_matches_llama_cpp(gemma_gguf, shared_data):
    with rocmforge.load(gemma_gguf, device="cpu", kv_cache_dtype="f32", n_ctx=1024) as m:
        assert m.config.arch == "gemma3"
        ids = m.tokenize(ppl_text(shared_data))[:512]
        assert len(ids) == 512 and ids[0] == m.tokenizer.bos_id
        ppl = m.perplexity(ids)
        print(f"gemma3 270M Q4_K_M perplexity {ppl:.4f} (llama.cpp {LLAMA_CPP_PPL['gemma3-270m']})")
    assert abs(ppl / LLAMA_CPP_PPL["gemma3-270m"] - 1) < 0.01, ppl


def test_gemma3_decode_agrees_with_one_pass(gemma_gguf):
    """Greedy decoding token by token (sliding-window and global layers, cache reads)
    picks, at every step, the argmax of a single forward pass over the same tokens."""
    with rocmforge.load(gemma_gguf, device="cpu", n_ctx=256) as m:
        text = m.generate("Once upon a time", max_tokens=12, temperature=0)
        prompt = m.tokenize("Once upon a time")
        ids = prompt + m.tokenize(text, add_bos=False)[:12]
        lg = m.logits(ids)
    assert len(text) > 20 and text.isascii(), text
    greedy = lg[len(prompt) - 1:-1].argmax(axis=1)
    np.testing.assert_array_equal(greedy, ids[len(prompt):])


@pytest.mark.parametrize("kv", list(KV_MBITS))
def test_kv_dtype_changes_logits_as_its_format_predicts(stories260k, shared_data, kv):
    """Teacher-forced in chunks of 16, so each chunk reads the earlier tokens back from
    the cache in its dtype. The logit error against an F32 cache scales with the
    element precision: rms / 2**-mbits lies in [1, 8] for every dtype (measured
    1.4 .. 4.9 on this model)."""
    with rocmforge.load(stories260k, device="cpu", kv_cache_dtype="f32") as m:
        ids = m.tokenize(ppl_text(shared_data))[:256]
        ref = m.logits(ids, chunk_size=16)
        np.testing.assert_allclose(ref, m.logits(ids), rtol=1e-4, atol=1e-4)
    with rocmforge.load(stories260k, device="cpu", kv_cache_dtype=kv) as m:
        lg = m.logits(ids, chunk_size=16)
        np.testing.assert_array_equal(lg[:16], ref[:16])      # the first chunk reads no cache
        rms = float(np.sqrt(np.mean((lg - ref) ** 2)))
        ratio = rms / 2.0 ** -KV_MBITS[kv]
        assert 1 <= ratio <= 8, (kv, rms, ratio)


def test_batch_seed_and_stop(stories260k):
    with rocmforge.load(stories260k, device="cpu") as m:
        a, b = m.generate_batch(["Once upon a time", "Lily"], max_tokens=40, temperature=0)
        assert a == GOLDEN
        assert b == m.generate("Lily", max_tokens=40, temperature=0)
        s1 = m.generate("Once upon a time", max_tokens=30, temperature=0.9, seed=3)
        s2 = m.generate("Once upon a time", max_tokens=30, temperature=0.9, seed=3)
        s3 = m.generate("Once upon a time", max_tokens=30, temperature=0.9, seed=4)
        assert s1 == s2 and s1 != s3
        cut = m.generate("Once upon a time", max_tokens=40, temperature=0, stop=["Lily"])
        assert cut == ", there was a little girl named " and m.last_stats.stop_reason == "stop"
        streamed = "".join(m.generate("Once upon a time", max_tokens=40, temperature=0,
                                      stop=["park."], stream=True))
        assert streamed == GOLDEN[:GOLDEN.index("park.")]
        assert m.cache.sequences() == []                       # every sequence freed


def test_weights_dtype_requantizes(stories260k, shared_data):
    ppl = {}
    for wd in (None, "f16", "mxfp8_e4m3", "mxfp4"):
        with rocmforge.load(stories260k, device="cpu", weights_dtype=wd) as m:
            ppl[wd] = m.perplexity(m.tokenize(ppl_text(shared_data))[:256])
            if wd == "mxfp4":
                assert m.transformer.layers[0].wq.ttype.name == "MXFP4"
                # rows of 172 values are not whole MX blocks: those matrices keep F32
                assert "blk.0.ffn_down.weight" in m.transformer.kept
    assert abs(ppl["f16"] / ppl[None] - 1) < 1e-3
    assert ppl[None] < ppl["mxfp8_e4m3"] < ppl["mxfp4"]


def test_user_errors(stories260k, tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        rocmforge.load(tmp_path / "nope.gguf")
    with pytest.raises(ValueError, match="unknown KV cache dtype 'fp5'"):
        rocmforge.load(stories260k, kv_cache_dtype="fp5")
    with pytest.raises(ValueError, match="unknown weights dtype 'q3'"):
        rocmforge.load(stories260k, weights_dtype="q3")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        rocmforge.load(stories260k, device="tpu")
    with rocmforge.load(stories260k, device="cpu", n_ctx=32) as m:
        with pytest.raises(ContextLengthError, match="do not fit the context of 32"):
            m.generate("Once upon a time " * 20, max_tokens=5)
        # a generation that reaches the context limit stops cleanly
        out = m.generate("Once upon a time", max_tokens=100, temperature=0)
        assert m.last_stats.stop_reason == "context" and out.startswith(GOLDEN[:20])
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.generate("x")


def test_unknown_architecture(tmp_path):
    from rocmforge.gguf.writer import GGUFWriter
    p = tmp_path / "gpt2.gguf"
    w = GGUFWriter(p)
    w.add("general.architecture", "gpt2")
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "a"])
    w.add("tokenizer.ggml.scores", np.zeros(4, np.float32))
    w.add("tokenizer.ggml.token_type", np.array([2, 3, 3, 1], np.int32))
    w.write()
    with pytest.raises(ModelError, match="unsupported architecture 'gpt2'.*llama, gemma3"):
        rocmforge.load(p)


def test_unsupported_weight_type_fails_at_load():
    from rocmforge.gguf.constants import GgufTensorType
    from rocmforge.model.weights import Linear
    raw = np.zeros(66 * 4, np.uint8)                       # 4 rows of 256 IQ2_XXS values
    with pytest.raises(NotImplementedError, match="blk.0.attn_q.weight: tensor type IQ2_XXS"):
        Linear("blk.0.attn_q.weight", raw, GgufTensorType.IQ2_XXS, 4, 256)
