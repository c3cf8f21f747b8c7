"""Byte layouts of every block format, written as binary literals."""
import numpy as np

from rocmforge import mx
from rocmforge.mx import MxFormat


def test_block_sizes():
    assert [f.block_bytes for f in MxFormat] == [17, 25, 25, 33, 33, 33]
    assert [f.spec.bits_per_value for f in MxFormat] == [4.25, 6.25, 6.25, 8.25, 8.25, 8.25]


def test_mxfp4_nibbles_are_ggml_block_mxfp4():
    codes = np.zeros(32, np.uint8)
    codes[0] = 0b0001            # element 0  -> low nibble of byte 0
    codes[16] = 0b1010           # element 16 -> high nibble of byte 0
    codes[15] = 0b0111           # element 15 -> low nibble of byte 15
    codes[31] = 0b1111           # element 31 -> high nibble of byte 15
    packed = mx.pack(codes, MxFormat.MXFP4)
    assert packed.shape == (16,)
    assert packed[0] == 0b1010_0001       # elem16:elem0
    assert packed[15] == 0b1111_0111      # elem31:elem15
    assert not packed[1:15].any()
    np.testing.assert_array_equal(mx.unpack(packed, MxFormat.MXFP4), codes)


def test_mxfp6_four_codes_in_three_bytes_little_endian():
    codes = np.zeros(32, np.uint8)
    codes[:4] = [0b000001, 0b100000, 0b111111, 0b010101]
    packed = mx.pack(codes, MxFormat.MXFP6_E2M3)
    assert packed.shape == (24,)
    # 24-bit word = c3:c2:c1:c0 = 010101 111111 100000 000001
    assert packed[0] == 0b00_000001       # c1 low 2 bits : c0
    assert packed[1] == 0b1111_1000       # c2 low 4 bits : c1 high 4 bits
    assert packed[2] == 0b010101_11       # c3 : c2 high 2 bits
    assert not packed[3:].any()
    codes[28:] = [0b111111, 0, 0, 0b100000]                     # last group: bytes 21..23
    packed = mx.pack(codes, MxFormat.MXFP6_E3M2)
    assert list(packed[21:]) == [0b00_111111, 0, 0b100000_00]
    np.testing.assert_array_equal(mx.unpack(packed, MxFormat.MXFP6_E3M2), codes)


def test_mxfp8_and_mxint8_one_code_per_byte():
    codes = np.arange(32, dtype=np.uint8) * 7
    for fmt in (MxFormat.MXFP8_E4M3, MxFormat.MXFP8_E5M2, MxFormat.MXINT8):
        np.testing.assert_array_equal(mx.pack(codes, fmt), codes)


def test_scale_byte_leads_each_block():
    x = np.zeros(64, np.float32)
    x[0] = 1.0                    # block 0: amax 1 -> e = 0 - emax
    x[32] = 8.0                   # block 1: amax 8 -> e = 3 - emax
    for fmt in MxFormat:
        q = mx.quantize(x, fmt)
        bb = fmt.block_bytes
        assert q[0] == 127 - fmt.spec.emax and q[bb] == 130 - fmt.spec.emax, fmt.name
    q = mx.quantize(x, MxFormat.MXFP4)
    # 1.0 / 2**-2 = 4.0 = E2M1 0b110 in element 0's low nibble; 8.0 / 2 = 4.0 likewise
    assert q[1] == 0b0000_0110 and q[18] == 0b0000_0110
