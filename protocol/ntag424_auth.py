"""AuthenticateEV2First / AuthenticateEV2NonFirst (AN12196 rev1.8 6.6 Table 14, 6.14 Table 24).

Both sides as pure state machines; the random numbers come from the caller.

    PCD -> PICC  90 71 00 00 02 KeyNo LenCap(00) 00          (NonFirst: 90 77 .. 01 KeyNo 00)
    PICC -> PCD  E(K, RndB) 91 AF
    PCD -> PICC  90 AF 00 00 20 E(K, RndA || RndB<<<8) 00
    PICC -> PCD  E(K, TI || RndA<<<8 || PDcap2 || PCDcap2) 91 00   (NonFirst: E(K, RndA<<<8))

E is AES-128-CBC with a zero IV for each message; <<<8 rotates one byte to the left. Then

    SV1 = A5 5A 00 01 00 80 || RndA[0:2] || (RndA[2:8] ^ RndB[0:6]) || RndB[6:16] || RndA[8:16]
    SV2 = 5A A5 ..same..      SesAuthENCKey = CMAC(K, SV1)   SesAuthMACKey = CMAC(K, SV2)

First starts CmdCtr at 0 with a TI the card picks; NonFirst keeps TI and CmdCtr.
"""

from protocol import aes, cmac
from protocol.errors import AuthenticationError, ValidationError
from protocol.hmac256 import digests_equal
from protocol.ntag424 import (
    APDU_MALFORMED,
    CARD_AUTH_FAILED,
    CARD_RESPONSE_MALFORMED,
    INS_ADDITIONAL_FRAME,
    INS_AUTHENTICATE_EV2_FIRST,
    INS_AUTHENTICATE_EV2_NON_FIRST,
    STATUS_ADDITIONAL_FRAME,
    STATUS_OK,
    native_command,
    native_response,
    status_response,
)
from protocol.ntag424_sm import TRANSACTION_ID_BYTES, Session

RANDOM_BYTES = 16
CAPABILITIES_BYTES = 6
KEY_NUMBER_MAX = 4

_SV_ENC_LABEL = b"\xa5\x5a\x00\x01\x00\x80"
_SV_MAC_LABEL = b"\x5a\xa5\x00\x01\x00\x80"
_ZERO_CAPABILITIES = bytes(CAPABILITIES_BYTES)


def rotate_left(block):
    """The block rotated left by one byte (RndA' / RndB')."""
    return bytes(block[1:]) + bytes(block[:1])


def session_vectors(rnd_a, rnd_b):
    """(SV1, SV2) of AuthenticateEV2First: 32 bytes each."""
    mixed = (
        bytes(rnd_a[0:2])
        + aes.xor_bytes(rnd_a[2:8], rnd_b[0:6])
        + bytes(rnd_b[6:16])
        + bytes(rnd_a[8:16])
    )
    return _SV_ENC_LABEL + mixed, _SV_MAC_LABEL + mixed


def session_keys(key, rnd_a, rnd_b):
    """(SesAuthENCKey, SesAuthMACKey) for the authenticating key and both random numbers."""
    sv1, sv2 = session_vectors(rnd_a, rnd_b)
    return cmac.aes_cmac(key, sv1), cmac.aes_cmac(key, sv2)


def _encrypt(key, data):
    return aes.cbc_encrypt(key, aes.ZERO_BLOCK, data)


def _decrypt(key, data):
    return aes.cbc_decrypt(key, aes.ZERO_BLOCK, data)


def _check_random(value):
    assert len(value) == RANDOM_BYTES, "random numbers are 16 bytes"


class PcdAuthentication:
    """The reader side: `start()`, `answer_challenge(rapdu)`, `finish(rapdu)` -> Session.

    With `previous` (a Session) it is AuthenticateEV2NonFirst and keeps its TI and CmdCtr.
    """

    def __init__(self, key, key_number, rnd_a, previous=None):
        assert 0 <= key_number <= KEY_NUMBER_MAX
        _check_random(rnd_a)
        assert previous is None or previous.transaction_id
        self.key = bytes(key)
        self.key_number = key_number
        self.rnd_a = bytes(rnd_a)
        self.previous = previous
        self.rnd_b = None

    def start(self):
        """The first C-APDU: KeyNo and LenCap 0 (First), KeyNo only (NonFirst)."""
        if self.previous is None:
            return native_command(INS_AUTHENTICATE_EV2_FIRST, bytes((self.key_number, 0)))
        return native_command(INS_AUTHENTICATE_EV2_NON_FIRST, bytes((self.key_number,)))

    def answer_challenge(self, rapdu):
        """From the card's E(K, RndB) | 91 AF, the C-APDU carrying E(K, RndA || RndB')."""
        data = native_response(rapdu, more_frames=True)
        if len(data) != RANDOM_BYTES:
            raise ValidationError(CARD_RESPONSE_MALFORMED, "E(K, RndB) is not 16 bytes")
        self.rnd_b = _decrypt(self.key, data)
        token = _encrypt(self.key, self.rnd_a + rotate_left(self.rnd_b))
        return native_command(INS_ADDITIONAL_FRAME, token)

    def finish(self, rapdu):
        """Check RndA' in the card's last answer and return the new Session."""
        assert self.rnd_b is not None, "answer_challenge first"
        data = native_response(rapdu)
        expected_bytes = RANDOM_BYTES if self.previous else 2 * RANDOM_BYTES
        if len(data) != expected_bytes:
            raise ValidationError(CARD_RESPONSE_MALFORMED, "authentication answer length")
        plain = _decrypt(self.key, data)
        if self.previous is None:
            transaction_id = plain[:TRANSACTION_ID_BYTES]
            rnd_a_rotated = plain[TRANSACTION_ID_BYTES : TRANSACTION_ID_BYTES + RANDOM_BYTES]
            counter = 0
        else:
            transaction_id = self.previous.transaction_id
            rnd_a_rotated = plain
            counter = self.previous.command_counter
        if not digests_equal(rnd_a_rotated, rotate_left(self.rnd_a)):
            raise AuthenticationError(CARD_AUTH_FAILED, "RndA' from the card does not match")
        enc_key, mac_key = session_keys(self.key, self.rnd_a, self.rnd_b)
        return Session(enc_key, mac_key, transaction_id, self.key_number, counter)


def parse_first_command(data):
    """Card side: (key_number, PCDcap2) of AuthenticateEV2First's data (KeyNo LenCap PCDcap2)."""
    if len(data) < 2 or len(data) != 2 + data[1] or data[1] > CAPABILITIES_BYTES:
        raise ValidationError(APDU_MALFORMED, "AuthenticateEV2First data")
    capabilities = bytes(data[2:])
    return data[0], capabilities + bytes(CAPABILITIES_BYTES - len(capabilities))


class PiccAuthentication:
    """The card side: `challenge()` -> R-APDU, `verify(data)` -> (R-APDU, Session).

    The card picks RndB and, for AuthenticateEV2First, the TI; with `previous` it is NonFirst.
    A wrong RndB' raises AuthenticationError; the card answers it with 91 AE.
    """

    def __init__(
        self,
        key,
        key_number,
        rnd_b,
        transaction_id=None,
        previous=None,
        pcd_capabilities=_ZERO_CAPABILITIES,
        pd_capabilities=_ZERO_CAPABILITIES,
    ):
        _check_random(rnd_b)
        assert (transaction_id is None) == (previous is not None), "TI for First only"
        assert transaction_id is None or len(transaction_id) == TRANSACTION_ID_BYTES
        assert len(pcd_capabilities) == CAPABILITIES_BYTES
        assert len(pd_capabilities) == CAPABILITIES_BYTES
        self.key = bytes(key)
        self.key_number = key_number
        self.rnd_b = bytes(rnd_b)
        self.transaction_id = transaction_id
        self.previous = previous
        self.capabilities = bytes(pd_capabilities) + bytes(pcd_capabilities)

    def challenge(self):
        return status_response(STATUS_ADDITIONAL_FRAME, _encrypt(self.key, self.rnd_b))

    def verify(self, data):
        """From the reader's E(K, RndA || RndB'), the last R-APDU and the new Session."""
        if len(data) != 2 * RANDOM_BYTES:
            raise ValidationError(APDU_MALFORMED, "E(K, RndA || RndB') is not 32 bytes")
        plain = _decrypt(self.key, data)
        rnd_a = plain[:RANDOM_BYTES]
        if not digests_equal(plain[RANDOM_BYTES:], rotate_left(self.rnd_b)):
            raise AuthenticationError(CARD_AUTH_FAILED, "RndB' from the reader does not match")
        enc_key, mac_key = session_keys(self.key, rnd_a, self.rnd_b)
        if self.previous is None:
            proof = self.transaction_id + rotate_left(rnd_a) + self.capabilities
            session = Session(enc_key, mac_key, self.transaction_id, self.key_number)
        else:
            proof = rotate_left(rnd_a)
            session = Session(
                enc_key,
                mac_key,
                self.previous.transaction_id,
                self.key_number,
                self.previous.command_counter,
            )
        return status_response(STATUS_OK, _encrypt(self.key, proof)), session
