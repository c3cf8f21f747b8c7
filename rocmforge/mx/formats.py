"""The one table of OCP MX v1.0 formats that every other module reads.

An MX block is 32 elements sharing one E8M0 scale X = 2**e, with
e = floor(log2(amax)) - emax_elem clamped to [-127, 127].  Each element is
stored as a small code: a float (sign, ``ebits`` exponent bits with ``bias``,
``mbits`` mantissa bits, subnormals, no Inf/NaN codes for FP4/FP6) or, for
MXINT8, a two's-complement byte with an implied scale of 2**-6.

Byte layout of one block (see DESIGN.md "Layouts"):
  byte 0          E8M0 scale (bias 127, 0xFF = NaN)
  bytes 1..       32 element codes packed at ``bits`` per code
    4 bits:  byte j holds element j in its low nibble, element j+16 in its high
             nibble (ggml's block_mxfp4)
    6 bits:  four codes in three bytes, little-endian:
             w = c0 | c1 << 6 | c2 << 12 | c3 << 18 -> bytes w, w >> 8, w >> 16
    8 bits:  one code per byte
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

BLOCK_SIZE = 32          # elements per MX block (OCP MX v1.0)
E8M0_BIAS = 127
E8M0_NAN = 0xFF
SCALE_EXP_MIN = -127     # the shared exponent is clamped to this range
SCALE_EXP_MAX = 127

# GGUF type ids: MXFP4 is ggml's own type 39; ggml has no FP6/FP8/INT8 MX types, so
# rocmforge's start at 1000 (ggml assigns 43 next and forks use up to 143).
GGUF_MX_LAYOUT_KEY = "rocmforge.mx.layout_version"
GGUF_MX_LAYOUT_VERSION = 1


@dataclass(frozen=True)
class FormatSpec:
    name: str
    kind: str            # "fp" or "int"
    bits: int            # bits per element code
    ebits: int           # exponent bits (0 for int)
    mbits: int           # mantissa bits (for int: magnitude bits, 7)
    bias: int            # exponent bias (0 for int)
    emax: int            # exponent of the largest normal, the OCP emax_elem
    max: float           # largest finite magnitude
    max_code: int        # code (sign bit clear) of +max
    gguf_type: int       # GGUF tensor type id

    @property
    def block_bytes(self) -> int:
        return 1 + BLOCK_SIZE * self.bits // 8

    @property
    def sign_bit(self) -> int:
        return 1 << (self.bits - 1)

    @property
    def n_codes(self) -> int:
        return 1 << self.bits

    @property
    def bits_per_value(self) -> float:
        return 8.0 * self.block_bytes / BLOCK_SIZE


class MxFormat(enum.Enum):
    """The block formats; ``MxFormat.MXFP6_E2M3.spec`` gives the table row."""

    MXFP4 = FormatSpec("MXFP4", "fp", 4, 2, 1, 1, 2, 6.0, 0x7, 39)
    MXFP6_E2M3 = FormatSpec("MXFP6_E2M3", "fp", 6, 2, 3, 1, 2, 7.5, 0x1F, 1000)
    MXFP6_E3M2 = FormatSpec("MXFP6_E3M2", "fp", 6, 3, 2, 3, 4, 28.0, 0x1F, 1001)
    MXFP8_E4M3 = FormatSpec("MXFP8_E4M3", "fp", 8, 4, 3, 7, 8, 448.0, 0x7E, 1002)
    MXFP8_E5M2 = FormatSpec("MXFP8_E5M2", "fp", 8, 5, 2, 15, 15, 57344.0, 0x7B, 1003)
    MXINT8 = FormatSpec("MXINT8", "int", 8, 0, 6, 0, 0, 127 / 64, 0x7F, 1004)

    @property
    def spec(self) -> FormatSpec:
        return self.value

    @property
    def block_bytes(self) -> int:
        return self.value.block_bytes

    @classmethod
    def parse(cls, fmt: "MxFormat | str") -> "MxFormat":
        """Accept an MxFormat or a case-insensitive name ("mxfp6_e2m3", "MXFP4")."""
        if isinstance(fmt, cls):
            return fmt
        if isinstance(fmt, str):
            key = fmt.strip().upper()
            if key in cls.__members__:
                return cls[key]
        names = ", ".join(m.lower() for m in cls.__members__)
        raise ValueError(f"unknown MX format {fmt!r}; expected one of: {names}")


FORMATS = tuple(MxFormat)
