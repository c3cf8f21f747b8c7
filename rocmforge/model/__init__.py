"""Models built from GGUF metadata: architectures, tokenizer, sampler."""
from .config import SUPPORTED_ARCHS, ModelConfig, ModelError
from .sampler import Sampler, SamplerConfig
from .tokenizer import StreamDecoder, Tokenizer, TokenizerError

__all__ = ["SUPPORTED_ARCHS", "ModelConfig", "ModelError", "Sampler", "SamplerConfig",
           "StreamDecoder", "Tokenizer", "TokenizerError"]
