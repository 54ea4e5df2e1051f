"""NTAG 424 DNA (NT4H2421Gx) APDU framing, status words and errors; the card's crypto is in

    ntag424_auth      AuthenticateEV2First / NonFirst, both sides, session keys
    ntag424_sm        secure messaging: IVs, MACt, CommMode Plain / MAC / Full, both sides
    ntag424_commands  the reader's commands (GetVersion, GetCardUID, ChangeKey, ReadData, ..)
    ntag424_files     the file settings codec (SDM options and offsets)
    ntag424_sun       SUN / SDM messages: PICCData, SDMMAC, SDMENCFileData, URL parsing

Native commands travel ISO 7816-4 wrapped (NT4H2421Gx datasheet; AN12196):

    C-APDU  90 INS 00 00 [Lc data] 00          (Lc and data left out when there is no data)
    R-APDU  data 91 status                      status 00 OK, AF more frames, else an error

ISO commands (ISOSelectFile, ISOReadBinary, ISOUpdateBinary) use CLA 00 and answer 90 00.

Errors (see protocol.errors):

    ProtocolError
    +-- ValidationError      card_response_malformed, apdu_malformed, sun_malformed,
    |                        card_family_unknown, card_replayed
    +-- AuthenticationError  card_auth_failed: a MACt, RndA' or SDMMAC that does not verify
    +-- CardStatusError      the card answered an error status (91 AE: card_auth_failed,
                             anything else: card_command_refused); `.status_word` holds it
"""

from protocol.errors import ProtocolError, ValidationError
from protocol.reason_texts import DESCRIPTIONS as _ALL_DESCRIPTIONS
from protocol.reasons import (
    APDU_MALFORMED,
    CARD_AUTH_FAILED,
    CARD_COMMAND_REFUSED,
    CARD_FAMILY_UNKNOWN,
    CARD_RESPONSE_MALFORMED,
    SUN_MALFORMED,
)
from protocol.reasons import CARD_REPLAYED as SUN_REPLAYED

# The card's reason codes, described in protocol.reason_texts like every other code.
DESCRIPTIONS = {
    code: _ALL_DESCRIPTIONS[code]
    for code in (CARD_AUTH_FAILED, CARD_COMMAND_REFUSED, CARD_RESPONSE_MALFORMED,
                 APDU_MALFORMED, SUN_MALFORMED, CARD_FAMILY_UNKNOWN, SUN_REPLAYED)
}

CLA_NATIVE = 0x90
CLA_ISO = 0x00

INS_AUTHENTICATE_EV2_FIRST = 0x71
INS_AUTHENTICATE_EV2_NON_FIRST = 0x77
INS_ADDITIONAL_FRAME = 0xAF
INS_GET_VERSION = 0x60
INS_GET_CARD_UID = 0x51
INS_CHANGE_KEY = 0xC4
INS_GET_FILE_SETTINGS = 0xF5
INS_CHANGE_FILE_SETTINGS = 0x5F
INS_READ_DATA = 0xAD
INS_WRITE_DATA = 0x8D
INS_ISO_SELECT_FILE = 0xA4
INS_ISO_READ_BINARY = 0xB0
INS_ISO_UPDATE_BINARY = 0xD6

SW1_NATIVE = 0x91
STATUS_OK = 0x00
STATUS_ADDITIONAL_FRAME = 0xAF
STATUS_AUTHENTICATION_ERROR = 0xAE
STATUS_INTEGRITY_ERROR = 0x1E
STATUS_LENGTH_ERROR = 0x7E
STATUS_PERMISSION_DENIED = 0x9D
SW_ISO_OK = 0x9000

SHORT_APDU_DATA_BYTES_MAX = 255
ISO_OFFSET_MAX = 0x7FFF

NDEF_APPLICATION_DF_NAME = b"\xd2\x76\x00\x00\x85\x01\x01"  # NFC Forum Type 4 Tag application
FILE_ID_CAPABILITY_CONTAINER = 0xE103
FILE_ID_NDEF = 0xE104
FILE_ID_PROPRIETARY = 0xE105

_SELECT_BY_FILE_ID = 0x00
_SELECT_BY_DF_NAME = 0x04
_SELECT_NO_RESPONSE_DATA = 0x0C


class CardStatusError(ProtocolError):
    """The card answered with an error status word (`status_word`, e.g. 0x91AE, 0x6A82)."""

    def __init__(self, status_word, detail=""):
        reason = CARD_COMMAND_REFUSED
        if status_word == (SW1_NATIVE << 8) | STATUS_AUTHENTICATION_ERROR:
            reason = CARD_AUTH_FAILED
        super().__init__(reason, "status %04X %s" % (status_word, detail))
        self.status_word = status_word


def apdu(cla, ins, p1, p2, data=b"", le=None):
    """A short ISO 7816-4 C-APDU; `le` None leaves Le out, 0 asks for up to 256 bytes."""
    assert len(data) <= SHORT_APDU_DATA_BYTES_MAX, "split the data: short APDUs only"
    out = bytes((cla, ins, p1, p2))
    if data:
        out += bytes((len(data),)) + bytes(data)
    if le is not None:
        assert 0 <= le <= 0xFF
        out += bytes((le,))
    return out


def native_command(ins, data=b""):
    """A native command wrapped as 90 INS 00 00 [Lc data] 00."""
    return apdu(CLA_NATIVE, ins, 0, 0, data, 0)


def iso_select_df_name(df_name=NDEF_APPLICATION_DF_NAME):
    """ISOSelectFile by DF name, no FCI back: 00 A4 04 0C Lc name 00 (AN12196 Table 22)."""
    return apdu(
        CLA_ISO, INS_ISO_SELECT_FILE, _SELECT_BY_DF_NAME, _SELECT_NO_RESPONSE_DATA, df_name, 0
    )


def iso_select_file_id(file_id):
    """ISOSelectFile of an EF by its 2-byte file id, no FCI back: 00 A4 00 0C 02 id 00."""
    assert 0 <= file_id <= 0xFFFF
    return apdu(
        CLA_ISO,
        INS_ISO_SELECT_FILE,
        _SELECT_BY_FILE_ID,
        _SELECT_NO_RESPONSE_DATA,
        file_id.to_bytes(2, "big"),
        0,
    )


def iso_read_binary(offset, length):
    """ISOReadBinary of the selected EF: 00 B0 offset(2, big-endian) Le (0 = up to 256)."""
    assert 0 <= offset <= ISO_OFFSET_MAX and 0 <= length <= 0xFF
    return apdu(CLA_ISO, INS_ISO_READ_BINARY, offset >> 8, offset & 0xFF, b"", length)


def iso_update_binary(offset, data):
    """ISOUpdateBinary of the selected EF: 00 D6 offset(2, big-endian) Lc data."""
    assert 0 <= offset <= ISO_OFFSET_MAX and len(data) >= 1
    return apdu(CLA_ISO, INS_ISO_UPDATE_BINARY, offset >> 8, offset & 0xFF, data)


def split_response(rapdu):
    """(data, status word) of an R-APDU; ValidationError if it has no status word."""
    if len(rapdu) < 2:
        raise ValidationError(CARD_RESPONSE_MALFORMED, "response shorter than a status word")
    return bytes(rapdu[:-2]), (rapdu[-2] << 8) | rapdu[-1]


def native_response(rapdu, more_frames=False):
    """Data of a native response; CardStatusError unless 91 00 (or 91 AF if `more_frames`)."""
    data, status_word = split_response(rapdu)
    expected = STATUS_ADDITIONAL_FRAME if more_frames else STATUS_OK
    if status_word != (SW1_NATIVE << 8) | expected:
        raise CardStatusError(status_word)
    return data


def iso_response(rapdu):
    """Data of an ISO response; CardStatusError unless 90 00."""
    data, status_word = split_response(rapdu)
    if status_word != SW_ISO_OK:
        raise CardStatusError(status_word)
    return data


def status_response(status, data=b""):
    """Card side: data || 91 status."""
    return bytes(data) + bytes((SW1_NATIVE, status))


def parse_command(capdu):
    """Card side: (cla, ins, p1, p2, data, le) of a short C-APDU (le None when absent).

    ValidationError(apdu_malformed) when Lc disagrees with the number of bytes.
    """
    if len(capdu) < 4:
        raise ValidationError(APDU_MALFORMED, "C-APDU shorter than its header")
    cla, ins, p1, p2 = capdu[0], capdu[1], capdu[2], capdu[3]
    body = bytes(capdu[4:])
    if not body:
        return cla, ins, p1, p2, b"", None
    if len(body) == 1:
        return cla, ins, p1, p2, b"", body[0]
    length = body[0]
    if length == 0 or len(body) not in (1 + length, 2 + length):
        raise ValidationError(APDU_MALFORMED, "Lc does not match the C-APDU length")
    le = body[1 + length] if len(body) == 2 + length else None
    return cla, ins, p1, p2, body[1 : 1 + length], le
