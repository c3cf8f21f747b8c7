"""GGUF files: reader, writer, and dequantization of ggml block types."""
from .constants import *  # noqa: F401,F403
from .errors import GGUFError  # noqa: E402,F401
from .reader import GGUFMetadata, GGUFReader, StringArray, TensorInfo  # noqa: E402,F401
from .writer import GGUFWriter  # noqa: E402,F401
