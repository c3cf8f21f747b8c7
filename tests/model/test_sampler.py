"""Sampler: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeding."""
import numpy as np
import pytest

from rocmforge.model.sampler import Sampler, SamplerConfig

LOGITS = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1]))     # softmax = these probabilities


def draws(n=4000, **kw):
    s = Sampler(SamplerConfig(**kw))
    return np.bincount([s(LOGITS) for _ in range(n)], minlength=5) / n


def test_greedy_is_argmax_first_on_ties():
    s = Sampler(temperature=0)
    assert s(LOGITS) == 1
    assert s(np.array([1.0, 3.0, 3.0])) == 1


def test_plain_sampling_follows_softmax():
    freq = draws(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0, seed=0)
    np.testing.assert_allclose(freq, np.exp(LOGITS), atol=0.03)


def test_top_k_top_p_min_p_cut_the_tail():
    assert set(np.flatnonzero(draws(top_k=2, top_p=1.0, min_p=0.0, seed=1))) == {1, 2}
    # top_p 0.6: 0.4 + 0.3 reach it -> tokens 1, 2
    assert set(np.flatnonzero(draws(top_k=0, top_p=0.6, min_p=0.0, seed=2))) == {1, 2}
    # min_p 0.3: keep p >= 0.12 -> tokens 1, 2, 3
    assert set(np.flatnonzero(draws(top_k=0, top_p=1.0, min_p=0.3, seed=3))) == {1, 2, 3}


def test_temperature_sharpens():
    hot = draws(top_k=0, top_p=1.0, min_p=0.0, temperature=2.0, seed=4)
    cold = draws(top_k=0, top_p=1.0, min_p=0.0, temperature=0.3, seed=4)
    assert cold[1] > 0.6 > hot[1]


def test_repetition_penalty_llama_cpp_rule():
    s = Sampler(temperature=0, repeat_penalty=10.0, repeat_last_n=4)
    z = np.array([2.0, 1.9, -1.0])
    assert s(z, history=[]) == 0
    assert s(z, history=[0]) == 1            # 2.0 / 10 < 1.9
    assert s(np.array([-1.0, -1.05]), history=[0]) == 1     # negatives are multiplied
    assert s(z, history=[0, 1, 2, 1, 2]) == 0  # token 0 is outside the last 4


def test_seeded_and_reproducible():
    a = [Sampler(seed=7)(LOGITS) for _ in range(1)]
    s1, s2, s3 = Sampler(seed=7), Sampler(seed=7), Sampler(seed=8)
    x = [s1(LOGITS) for _ in range(50)]
    assert x == [s2(LOGITS) for _ in range(50)]
    assert x != [s3(LOGITS) for _ in range(50)]
    assert a[0] == x[0]


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5),
                                 dict(min_p=2), dict(top_k=-1), dict(repeat_penalty=0)])
def test_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplerConfig(**bad)


def test_engine_stops_at_eos(stories260k, monkeypatch):
    import rocmforge
    with rocmforge.load(stories260k, device="cpu") as m:
        eos = m.tokenizer.eos_id
        calls = {"n": 0}

        def fake(self, logits, history=()):
            calls["n"] += 1
            return eos if calls["n"] == 4 else int(np.argmax(logits))

        monkeypatch.setattr(Sampler, "__call__", fake)
        text = m.generate("Once upon a time", max_tokens=40, temperature=0)
        assert m.last_stats.stop_reason == "eos" and m.last_stats.generated_tokens == 4
        assert text == ", there was"
