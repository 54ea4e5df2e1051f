"""Read a card's SUN: select the NDEF application and file, read the file once.

NFC Forum Type 4 Tag commands (ISO 7816-4), as NTAG 424 DNA answers them:

    00 A4 04 0C 07 D2760000850101 00   select the NDEF application by DF name, no FCI
    00 A4 00 0C 02 E104                select the NDEF file (file id E104)
    00 B0 00 00 00                     read the file from offset 0 (up to 256 bytes)

The file is read once, whole: each read advances the card's SDM read counter, and the
counter is what makes the URL unique. The first two bytes are NLEN, then the NDEF message,
whose URI record carries the SUN parameters (PICCData, SDMMAC).
"""

from firmware.ndef import first_uri
from protocol.errors import ValidationError
from protocol.reasons import CARD_COMMAND_REFUSED, CARD_RESPONSE_MALFORMED

SELECT_NDEF_APPLICATION = bytes.fromhex("00a4040c07d276000085010100")
SELECT_NDEF_FILE = bytes.fromhex("00a4000c02e104")
READ_NDEF_FILE = bytes.fromhex("00b0000000")
_OK = b"\x90\x00"


def _checked(exchange, apdu):
    response = exchange(apdu)
    if len(response) < 2:
        raise ValidationError(CARD_RESPONSE_MALFORMED, "answer shorter than a status word")
    if response[-2:] != _OK:
        raise ValidationError(CARD_COMMAND_REFUSED, "status %s" % bytes(response[-2:]).hex())
    return response[:-2]


def on_card_read_sun(reader, target):
    """`Pn532Reader(..., on_card=on_card_read_sun)`: every tap also reads the card's SUN,
    which becomes the `sun` of the tap read_card returns."""
    return read_sun_url(reader.exchange_apdu)


def read_sun_url(exchange):
    """The card's current SUN URL; `exchange(apdu) -> response` talks to the selected card."""
    _checked(exchange, SELECT_NDEF_APPLICATION)
    _checked(exchange, SELECT_NDEF_FILE)
    data = _checked(exchange, READ_NDEF_FILE)
    if len(data) < 2:
        raise ValidationError(CARD_RESPONSE_MALFORMED, "NDEF file shorter than NLEN")
    length = (data[0] << 8) | data[1]
    if length + 2 > len(data):
        raise ValidationError(CARD_RESPONSE_MALFORMED, "NLEN beyond what the card sent")
    return first_uri(data[2 : 2 + length])
