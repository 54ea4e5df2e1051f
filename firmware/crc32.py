"""CRC-32 (IEEE 802.3, the zlib/PNG polynomial) for journal records.

Uses `binascii.crc32` where the interpreter has it; otherwise a 16-entry nibble table, which
costs 64 bytes of RAM instead of the usual 1 KB table. Check value: crc32(b"123456789")
is 0xCBF43926.
"""

try:
    from binascii import crc32 as _native_crc32
except ImportError:
    _native_crc32 = None  # type: ignore[assignment]

_NIBBLE_TABLE = (
    0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
    0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
)  # fmt: skip


def crc32_portable(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 4) ^ _NIBBLE_TABLE[(crc ^ byte) & 0x0F]
        crc = (crc >> 4) ^ _NIBBLE_TABLE[(crc ^ (byte >> 4)) & 0x0F]
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    if _native_crc32 is not None:
        return _native_crc32(data, crc) & 0xFFFFFFFF
    return crc32_portable(data, crc)
