"""The reader's NTAG 424 DNA commands as C-APDUs (NT4H2421Gx datasheet; AN12196 section 6).

With a Session the command goes through secure messaging (the session checks and decrypts the
answer: `session.response(rapdu)`); with `session=None` it is sent plain, before or without
authentication, and `ntag424.native_response(rapdu)` reads the answer.

    GetVersion          60, then AF twice: hardware, software, production frames (plain)
    GetCardUID          51, CommMode Full: the 7-byte UID, also when the card sends random IDs
    ChangeKey           C4 KeyNo, Full: NewKey || KeyVer (the key that authenticated) or
                        (NewKey ^ OldKey) || KeyVer || CRC32NK(NewKey) (any other key)
    GetFileSettings     F5 FileNo, MAC
    ChangeFileSettings  5F FileNo, Full
    ReadData            AD FileNo Offset(3) Length(3), the file's CommMode
    WriteData           8D FileNo Offset(3) Length(3) data, the file's CommMode
"""

from protocol import aes
from protocol.errors import ValidationError
from protocol.ntag424 import (
    CARD_RESPONSE_MALFORMED,
    INS_ADDITIONAL_FRAME,
    INS_CHANGE_FILE_SETTINGS,
    INS_CHANGE_KEY,
    INS_GET_CARD_UID,
    INS_GET_FILE_SETTINGS,
    INS_GET_VERSION,
    INS_READ_DATA,
    INS_WRITE_DATA,
    native_command,
)
from protocol.ntag424_sm import COMM_FULL, COMM_MAC, COMM_PLAIN

UID_BYTES = 7
FILE_NUMBER_MAX = 0x1F
FILE_OFFSET_MAX = 0xFFFFFF
VERSION_PART_BYTES = 7

FILE_CAPABILITY_CONTAINER = 1
FILE_NDEF = 2
FILE_PROPRIETARY = 3

_CRC32_POLYNOMIAL_REFLECTED = 0xEDB88320


def crc32_nk(data):
    """CRC32NK for ChangeKey: IEEE CRC-32 without the final XOR (JAMCRC), 4 bytes LSB first."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32_POLYNOMIAL_REFLECTED if crc & 1 else 0)
    return crc.to_bytes(4, "little")


def _send(session, ins, header, data, comm_mode):
    if session is None:
        return native_command(ins, bytes(header) + bytes(data))
    return session.command(ins, header, data, comm_mode)


# -- GetVersion ----------------------------------------------------------------------------


def get_version():
    """The first GetVersion frame; answer 91 AF to it and to `additional_frame()` once more."""
    return native_command(INS_GET_VERSION)


def additional_frame():
    return native_command(INS_ADDITIONAL_FRAME)


def _version_part(part):
    return {
        "vendor_id": part[0],
        "type": part[1],
        "subtype": part[2],
        "major": part[3],
        "minor": part[4],
        "storage_size": part[5],
        "protocol": part[6],
    }


def parse_version(hardware, software, production):
    """GetVersion's three plain answers (data only) as a dict.

    production = UID(7) || BatchNo and FabKey (5) || CWProd (BCD) || YearProd (BCD) [FabKeyID]
    """
    if len(hardware) != VERSION_PART_BYTES or len(software) != VERSION_PART_BYTES:
        raise ValidationError(CARD_RESPONSE_MALFORMED, "GetVersion part is not 7 bytes")
    if len(production) not in (14, 15):
        raise ValidationError(CARD_RESPONSE_MALFORMED, "GetVersion production part length")
    return {
        "hardware": _version_part(hardware),
        "software": _version_part(software),
        "uid": bytes(production[:UID_BYTES]),
        "batch": bytes(production[UID_BYTES:12]),
        "production_week_bcd": production[12] & 0x7F,
        "production_year_bcd": production[13],
        "fab_key_id": production[14] if len(production) == 15 else None,
    }


# -- Commands in a session -------------------------------------------------------------------


def get_card_uid(session):
    """GetCardUID in CommMode Full; `session.response(rapdu)` then `parse_card_uid`."""
    return session.command(INS_GET_CARD_UID, b"", b"", COMM_FULL)


def parse_card_uid(data):
    if len(data) != UID_BYTES:
        raise ValidationError(CARD_RESPONSE_MALFORMED, "GetCardUID answer is not 7 bytes")
    return data


def change_key(session, key_number, new_key, key_version, old_key=None):
    """ChangeKey, CommMode Full. `old_key` is needed unless `key_number` authenticated.

    Changing the key that authenticated ends the session: the card answers a plain 91 00.
    """
    assert len(new_key) == aes.KEY_BYTES and 0 <= key_version <= 0xFF
    header = bytes((key_number,))
    if key_number == session.key_number:
        data = bytes(new_key) + bytes((key_version,))
        return session.command(INS_CHANGE_KEY, header, data, COMM_FULL, COMM_PLAIN, True)
    assert old_key is not None and len(old_key) == aes.KEY_BYTES, "old key is needed"
    data = aes.xor_bytes(new_key, old_key) + bytes((key_version,)) + crc32_nk(new_key)
    return session.command(INS_CHANGE_KEY, header, data, COMM_FULL)


def _file_header(file_number, offset, length):
    assert 0 <= file_number <= FILE_NUMBER_MAX
    assert 0 <= offset <= FILE_OFFSET_MAX and 0 <= length <= FILE_OFFSET_MAX
    return bytes((file_number,)) + offset.to_bytes(3, "little") + length.to_bytes(3, "little")


def get_file_settings(file_number, session=None):
    """GetFileSettings (CommMode MAC in a session); decode with ntag424_files.decode_settings."""
    assert 0 <= file_number <= FILE_NUMBER_MAX
    return _send(session, INS_GET_FILE_SETTINGS, bytes((file_number,)), b"", COMM_MAC)


def change_file_settings(session, file_number, settings_data):
    """ChangeFileSettings, CommMode Full; `settings_data` from ntag424_files.encode_change."""
    assert 0 <= file_number <= FILE_NUMBER_MAX
    return session.command(
        INS_CHANGE_FILE_SETTINGS, bytes((file_number,)), settings_data, COMM_FULL
    )


def read_data(file_number, offset, length, session=None, comm_mode=COMM_PLAIN):
    """ReadData of `length` bytes (0: to the end of the file) in the file's CommMode."""
    assert session is not None or comm_mode == COMM_PLAIN, "MAC and Full need a session"
    header = _file_header(file_number, offset, length)
    return _send(session, INS_READ_DATA, header, b"", comm_mode)


def write_data(file_number, offset, data, session=None, comm_mode=COMM_PLAIN):
    """WriteData of `data` at `offset` in the file's CommMode (Full: the card gets 16n bytes)."""
    assert data, "nothing to write"
    assert session is not None or comm_mode == COMM_PLAIN, "MAC and Full need a session"
    header = _file_header(file_number, offset, len(data))
    return _send(session, INS_WRITE_DATA, header, data, comm_mode)
