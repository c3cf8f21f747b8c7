"""Models built from GGUF metadata: architectures, tokenizer, sampler."""
from .tokenizer import StreamDecoder, Tokenizer, TokenizerError  # noqa: F401
