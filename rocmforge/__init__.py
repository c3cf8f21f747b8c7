"""rocmforge: LLM inference with OCP Microscaling formats (MXFP4/6/8) on AMD, NVIDIA and CPU."""
__version__ = "0.1.0"
