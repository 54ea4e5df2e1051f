"""The NDEF a tilltap card carries: one URI record (NFC Forum NDEF 1.0, URI RTD 1.0).

Only what a terminal needs: pull the URL out of the first URI record of an NDEF message,
expanding the one-byte URI identifier code (0x04 = "https://", ...). Anything else is
`card_response_malformed`.
"""

from protocol.errors import ValidationError
from protocol.reasons import CARD_RESPONSE_MALFORMED

_TNF_WELL_KNOWN = 0x01
_FLAG_SHORT_RECORD = 0x10
_FLAG_ID_LENGTH = 0x08
_URI_PREFIXES = ("", "http://www.", "https://www.", "http://", "https://")


def _fail(detail):
    raise ValidationError(CARD_RESPONSE_MALFORMED, detail)


def first_uri(message):
    """The URL of the first record, which must be a well-known URI record ("U")."""
    if len(message) < 4:
        _fail("NDEF message too short")
    header = message[0]
    if header & 0x07 != _TNF_WELL_KNOWN:
        _fail("first record is not a well-known type")
    type_length = message[1]
    if header & _FLAG_SHORT_RECORD:
        payload_length = message[2]
        offset = 3
    else:
        if len(message) < 6:
            _fail("NDEF record header truncated")
        payload_length = int.from_bytes(message[2:6], "big")
        offset = 6
    id_length = 0
    if header & _FLAG_ID_LENGTH:
        id_length = message[offset]
        offset += 1
    record_type = message[offset : offset + type_length]
    offset += type_length + id_length
    payload = message[offset : offset + payload_length]
    if record_type != b"U" or len(payload) != payload_length or payload_length < 1:
        _fail("first record is not a complete URI record")
    code = payload[0]
    if code >= len(_URI_PREFIXES):
        _fail("URI identifier code %d not supported" % code)
    try:
        return _URI_PREFIXES[code] + bytes(payload[1:]).decode()
    except UnicodeError:
        _fail("URI is not UTF-8")


def uri_message(url):
    """Encode `url` as a one-record NDEF message (short record), for card personalization."""
    code = 0
    for index in range(len(_URI_PREFIXES) - 1, 0, -1):
        if url.startswith(_URI_PREFIXES[index]):
            code = index
            break
    payload = bytes((code,)) + url[len(_URI_PREFIXES[code]) :].encode()
    assert len(payload) < 256, "tilltap URLs fit a short record"
    return bytes((0xD1, 0x01, len(payload))) + b"U" + payload
