"""rocmforge: LLM inference with OCP Microscaling formats (MXFP4/6/8) on AMD, NVIDIA and CPU.

    import rocmforge
    with rocmforge.load("model.gguf", kv_cache_dtype="mxfp6_e2m3") as m:
        print(m.generate("Once upon a time", max_tokens=40, temperature=0))
"""
__version__ = "0.1.0"

__all__ = ["load", "Model", "__version__"]


def __getattr__(name):
    # The engine imports the whole stack; keep `import rocmforge.mx` light.
    if name in ("load", "Model", "ContextLengthError", "GenerationStats"):
        from . import engine
        return getattr(engine, name)
    raise AttributeError(f"module 'rocmforge' has no attribute {name!r}")
