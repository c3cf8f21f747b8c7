"""KV cache element types and the cache configuration (sizes come from one table).

A cached K (or V) row is one token's ``num_heads * head_dim`` values of one layer,
stored contiguously as ``row_bytes`` bytes:

  F32   float32, little-endian                      4 bytes/value   (32 bits)
  F16   IEEE half, round to nearest even            2 bytes/value   (16 bits)
  BF16  bfloat16 (uint16), round to nearest even    2 bytes/value   (16 bits)
  MX*   OCP MX blocks of 32 values along the row,   block_bytes/32  (8.25 / 6.25 / 4.25 bits)
        layout of rocmforge.mx (byte 0 = E8M0 scale, then packed codes)

For MX types the row must be a whole number of 32-value blocks, so
``num_heads * head_dim % 32 == 0`` is checked when a ``CacheConfig`` is built.
"""
from __future__ import annotations

import enum
import operator
from dataclasses import dataclass

from rocmforge.mx.formats import BLOCK_SIZE, MxFormat


class KvCacheDtype(enum.Enum):
    """Storage type of cached K/V values; MX members carry their ``MxFormat``."""

    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    MXFP8_E4M3 = "mxfp8_e4m3"
    MXFP6_E2M3 = "mxfp6_e2m3"
    MXFP6_E3M2 = "mxfp6_e3m2"
    MXFP4 = "mxfp4"

    @property
    def mx_format(self) -> MxFormat | None:
        """The rocmforge.mx format of an MX member, None for F32/F16/BF16."""
        return _MX.get(self)

    @property
    def is_mx(self) -> bool:
        return self in _MX

    @property
    def bits_per_value(self) -> float:
        """Storage bits per cached value, scale bytes included (MXFP6: 6.25)."""
        fmt = self.mx_format
        if fmt is not None:
            return 8.0 * fmt.spec.block_bytes / BLOCK_SIZE
        return float(_PLAIN_BYTES[self] * 8)

    def row_bytes(self, n_values: int) -> int:
        """Bytes that one row of ``n_values`` values takes (n_values % 32 == 0 for MX)."""
        fmt = self.mx_format
        if fmt is None:
            return n_values * _PLAIN_BYTES[self]
        if n_values % BLOCK_SIZE:
            raise ValueError(f"{self.name} rows need a multiple of {BLOCK_SIZE} values, "
                             f"got {n_values}")
        return n_values // BLOCK_SIZE * fmt.spec.block_bytes

    @classmethod
    def parse(cls, dtype: "KvCacheDtype | str") -> "KvCacheDtype":
        """Accept a member or a case-insensitive name ("mxfp6_e2m3", "F16", "bf16")."""
        if isinstance(dtype, cls):
            return dtype
        if isinstance(dtype, str):
            key = dtype.strip().upper()
            if key in cls.__members__:
                return cls[key]
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown KV cache dtype {dtype!r}; expected one of: {names}")


_PLAIN_BYTES = {KvCacheDtype.F32: 4, KvCacheDtype.F16: 2, KvCacheDtype.BF16: 2}
_MX = {
    KvCacheDtype.MXFP8_E4M3: MxFormat.MXFP8_E4M3,
    KvCacheDtype.MXFP6_E2M3: MxFormat.MXFP6_E2M3,
    KvCacheDtype.MXFP6_E3M2: MxFormat.MXFP6_E3M2,
    KvCacheDtype.MXFP4: MxFormat.MXFP4,
}


def _positive_int(name: str, value) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"CacheConfig.{name} must be an integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"CacheConfig.{name} must be >= 1, got {value}")
    return value


@dataclass(frozen=True)
class CacheConfig:
    """Shape of a paged KV cache.

    page_size   tokens per page
    max_pages   pages in the pool (shared by all sequences; a page spans every layer)
    num_heads   KV heads (not query heads: grouped-query attention shares them)
    head_dim    values per head
    num_layers  transformer layers
    dtype       KvCacheDtype (or its name)
    """

    page_size: int
    max_pages: int
    num_heads: int
    head_dim: int
    num_layers: int
    dtype: KvCacheDtype = KvCacheDtype.F32

    def __post_init__(self):
        for name in ("page_size", "max_pages", "num_heads", "head_dim", "num_layers"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        dtype = KvCacheDtype.parse(self.dtype)
        object.__setattr__(self, "dtype", dtype)
        if dtype.is_mx and self.row_values % BLOCK_SIZE:
            raise ValueError(
                f"CacheConfig: dtype {dtype.name} quantizes each token's K/V row of "
                f"num_heads * head_dim = {self.num_heads} * {self.head_dim} = {self.row_values} "
                f"values in blocks of {BLOCK_SIZE}; {self.row_values} is not a multiple of "
                f"{BLOCK_SIZE} (use F32/F16/BF16 or another head layout)")

    # ---- sizes (all derived from KvCacheDtype.row_bytes, i.e. the MX block table) ----
    @property
    def row_values(self) -> int:
        """Values in one token's K (or V) row of one layer: num_heads * head_dim."""
        return self.num_heads * self.head_dim

    @property
    def row_bytes(self) -> int:
        """Bytes of one token's K (or V) row of one layer."""
        return self.dtype.row_bytes(self.row_values)

    @property
    def bytes_per_token(self) -> int:
        """Bytes one token takes: K and V rows of every layer."""
        return 2 * self.num_layers * self.row_bytes

    @property
    def bytes_per_page(self) -> int:
        return self.page_size * self.bytes_per_token

    @property
    def total_bytes(self) -> int:
        return self.max_pages * self.bytes_per_page

    @property
    def max_tokens(self) -> int:
        return self.max_pages * self.page_size

    @classmethod
    def from_budget(cls, budget_bytes: int, *, page_size: int, num_heads: int, head_dim: int,
                    num_layers: int, dtype: "KvCacheDtype | str" = KvCacheDtype.F32
                    ) -> "CacheConfig":
        """The config with as many pages as fit in ``budget_bytes`` (at least one)."""
        probe = cls(page_size, 1, num_heads, head_dim, num_layers, dtype)
        budget = int(budget_bytes)
        pages = budget // probe.bytes_per_page
        if pages < 1:
            raise ValueError(
                f"CacheConfig.from_budget: budget {budget} bytes is smaller than one page "
                f"({probe.bytes_per_page} bytes for dtype {probe.dtype.name}, "
                f"page_size {page_size}, {num_layers} layers)")
        return cls(page_size, pages, num_heads, head_dim, num_layers, probe.dtype)
