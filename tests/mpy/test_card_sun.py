"""Reading a card's SUN URL: the exact APDUs a terminal sends, NDEF URI parsing, and every
malformed or refused answer ending in a reason. Runs on CPython and real MicroPython."""

from firmware import card_sun, ndef
from mpytest import expect_raises
from protocol.errors import ValidationError

URL = "https://tilltap.example/c?picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086"


class NdefCard:
    """Answers the three commands with a file holding NLEN + the NDEF message."""

    def __init__(self, url, refuse=None, file_override=None):
        message = ndef.uri_message(url)
        self.file = file_override if file_override is not None else (
            bytes((len(message) >> 8, len(message) & 0xFF)) + message)
        self.refuse = refuse
        self.heard = []

    def apdu(self, command):
        self.heard.append(bytes(command).hex())
        if self.refuse is not None and bytes(command).hex().startswith(self.refuse):
            return b"\x6a\x82"
        if command[1] == 0xB0:
            return self.file + b"\x90\x00"
        return b"\x90\x00"


def test_the_terminal_sends_select_application_select_file_and_one_read():
    card = NdefCard(URL)
    assert card_sun.read_sun_url(card.apdu) == URL
    assert card.heard == ["00a4040c07d276000085010100", "00a4000c02e104", "00b0000000"]


def test_uri_prefix_codes_round_trip():
    for url in ("https://a.example/x", "http://b.example/", "https://www.c.example/?e=1"):
        message = ndef.uri_message(url)
        assert ndef.first_uri(message) == url
    # header MB ME SR TNF=1, type length 1, payload 12, type "U", identifier code 4 = https://
    assert ndef.uri_message("https://a.example/x")[:5].hex() == "d1010c5504"


def test_a_refused_select_is_card_command_refused():
    card = NdefCard(URL, refuse="00a4000c")
    error = expect_raises(ValidationError, card_sun.read_sun_url, card.apdu)
    assert error.reason == "card_command_refused"


def test_malformed_files_are_card_response_malformed():
    for bad in (b"", b"\x00", b"\x00\x10\xd1\x01", b"\x00\x04\xd1\x01\x01T"):
        card = NdefCard(URL, file_override=bad)
        error = expect_raises(ValidationError, card_sun.read_sun_url, card.apdu)
        assert error.reason == "card_response_malformed", bad
