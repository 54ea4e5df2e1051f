"""NTAG 424 DNA EV2 secure messaging (AN12196 rev1.8 sections 5.3-5.4, 6.8, 6.9, 6.16).

After AuthenticateEV2First both sides hold SesAuthENCKey, SesAuthMACKey, the 4-byte
transaction identifier TI and the command counter CmdCtr (2 bytes, LSB first on the wire):

    IVc  = E(SesAuthENCKey, A5 5A || TI || CmdCtr   || 00 * 8)
    IVr  = E(SesAuthENCKey, 5A A5 || TI || CmdCtr+1 || 00 * 8)
    command MACt  over  Ins || CmdCtr   || TI || CmdHeader || payload
    response MACt over  RC  || CmdCtr+1 || TI || payload            (RC = 00)

CommMode Plain sends data as is; MAC appends MACt; Full sends payload = E(IVc, data || 80 00..)
(always padded, no ciphertext at all when there is no data) and appends MACt; responses likewise
with IVr. CmdCtr goes up by one with every answered command in the session. One `Session`
serves either side: the reader calls `command` then `response`; the card (an emulator)
calls `open_command` then `answer`. Any error ends the session: authenticate again.
"""

from protocol import aes, cmac
from protocol.errors import AuthenticationError, ValidationError
from protocol.hmac256 import digests_equal
from protocol.ntag424 import (
    APDU_MALFORMED,
    CARD_AUTH_FAILED,
    CARD_RESPONSE_MALFORMED,
    STATUS_OK,
    SW1_NATIVE,
    CardStatusError,
    native_command,
    split_response,
    status_response,
)

COMM_PLAIN = 0
COMM_MAC = 1
COMM_FULL = 3

TRANSACTION_ID_BYTES = 4
COMMAND_COUNTER_MAX = 0xFFFF

_IV_COMMAND_LABEL = b"\xa5\x5a"
_IV_RESPONSE_LABEL = b"\x5a\xa5"
_IV_PADDING = bytes(8)


def unpad(data, reason=CARD_RESPONSE_MALFORMED):
    """Remove ISO/IEC 9797-1 method 2 padding (80 00..) from the last block, or raise."""
    end = len(data)
    limit = max(0, end - aes.BLOCK_BYTES)
    while end > limit and data[end - 1] == 0:
        end -= 1
    if end == limit or data[end - 1] != 0x80:
        raise ValidationError(reason, "decrypted data is not 80 00.. padded")
    return bytes(data[: end - 1])


class Session:
    """Keys, TI and CmdCtr of one authenticated session with one card."""

    def __init__(self, enc_key, mac_key, transaction_id, key_number, command_counter=0):
        assert len(enc_key) == aes.KEY_BYTES and len(mac_key) == aes.KEY_BYTES
        assert len(transaction_id) == TRANSACTION_ID_BYTES
        assert 0 <= command_counter <= COMMAND_COUNTER_MAX
        self.enc_key = bytes(enc_key)
        self.mac_key = bytes(mac_key)
        self.transaction_id = bytes(transaction_id)
        self.key_number = key_number
        self.command_counter = command_counter
        self.active = True
        self._mac_subkeys = cmac.subkeys(self.mac_key)
        self._pending = None  # reader side: (comm_mode of the answer, ends_session)

    # -- the cryptographic pieces, named as in the datasheet ------------------------------

    def _counter(self, step):
        return (self.command_counter + step).to_bytes(2, "little")

    def command_iv(self):
        return aes.encrypt_block(
            self.enc_key, _IV_COMMAND_LABEL + self.transaction_id + self._counter(0) + _IV_PADDING
        )

    def response_iv(self):
        return aes.encrypt_block(
            self.enc_key, _IV_RESPONSE_LABEL + self.transaction_id + self._counter(1) + _IV_PADDING
        )

    def _mac_t(self, message):
        key1, key2 = self._mac_subkeys
        return cmac.truncate(cmac.mac_with_subkeys(self.mac_key, key1, key2, message))

    def command_mac(self, ins, header, payload):
        """MACt over Ins || CmdCtr || TI || CmdHeader || payload (payload encrypted if Full)."""
        return self._mac_t(
            bytes((ins,)) + self._counter(0) + self.transaction_id + bytes(header) + payload
        )

    def response_mac(self, status, payload):
        """MACt over RC || CmdCtr+1 || TI || payload."""
        return self._mac_t(bytes((status,)) + self._counter(1) + self.transaction_id + payload)

    def _encrypt(self, iv, data):
        if not data:
            return b""
        return aes.cbc_encrypt(self.enc_key, iv, cmac.pad(bytes(data)))

    def _decrypt(self, iv, payload, reason):
        if not payload:
            return b""
        if len(payload) % aes.BLOCK_BYTES:
            raise ValidationError(reason, "ciphertext is not whole blocks")
        return unpad(aes.cbc_decrypt(self.enc_key, iv, payload), reason)

    def _advance(self):
        self.command_counter += 1

    def _end(self, error):
        """Forget the session (the card does too) and return `error` for raising."""
        self.active = False
        self._pending = None
        return error

    # -- reader (PCD) side -----------------------------------------------------------------

    def command(
        self, ins, header=b"", data=b"", comm_mode=COMM_FULL, response_mode=None, ends_session=False
    ):
        """The C-APDU of a native command in this session; call `response` with its answer.

        `response_mode` defaults to `comm_mode`; `ends_session` marks a command after which
        the card forgets the session (ChangeKey of the key that authenticated).
        """
        assert self.active, "session ended: authenticate again"
        assert self._pending is None, "the previous command has no response yet"
        assert self.command_counter < COMMAND_COUNTER_MAX, "CmdCtr exhausted: authenticate again"
        if comm_mode == COMM_PLAIN:
            body = bytes(header) + bytes(data)
        else:
            payload = bytes(data)
            if comm_mode == COMM_FULL:
                payload = self._encrypt(self.command_iv(), data)
            else:
                assert comm_mode == COMM_MAC
            body = bytes(header) + payload + self.command_mac(ins, header, payload)
        self._pending = (comm_mode if response_mode is None else response_mode, ends_session)
        return native_command(ins, body)

    def response(self, rapdu):
        """The plain response data of the pending command, MACt checked, Full decrypted.

        Raises CardStatusError for an error status, AuthenticationError(card_auth_failed) for a
        wrong MACt, ValidationError(card_response_malformed) for a wrong length; each ends the
        session.
        """
        assert self._pending is not None, "no command is waiting for a response"
        comm_mode, ends_session = self._pending
        data, status_word = split_response(rapdu)
        if status_word != (SW1_NATIVE << 8) | STATUS_OK:
            raise self._end(CardStatusError(status_word))
        if comm_mode == COMM_PLAIN:
            plain = data
        else:
            if len(data) < cmac.MAC_T_BYTES:
                raise self._end(ValidationError(CARD_RESPONSE_MALFORMED, "response has no MACt"))
            payload, mac = data[: -cmac.MAC_T_BYTES], data[-cmac.MAC_T_BYTES :]
            if not digests_equal(self.response_mac(STATUS_OK, payload), mac):
                raise self._end(AuthenticationError(CARD_AUTH_FAILED, "response MACt"))
            plain = payload
            if comm_mode == COMM_FULL:
                try:
                    plain = self._decrypt(self.response_iv(), payload, CARD_RESPONSE_MALFORMED)
                except ValidationError as error:
                    raise self._end(error)
        self._pending = None
        self._advance()
        if ends_session:
            self.active = False
        return plain

    # -- card (PICC) side ------------------------------------------------------------------

    def open_command(self, ins, body, header_bytes, comm_mode):
        """(header, plain data) of a command's data field `body`; MACt checked, Full decrypted.

        AuthenticationError(card_auth_failed) or ValidationError end the session; a card
        answers them with 91 1E (integrity error).
        """
        assert self.active, "session ended"
        mac_bytes = 0 if comm_mode == COMM_PLAIN else cmac.MAC_T_BYTES
        if len(body) < header_bytes + mac_bytes:
            raise self._end(ValidationError(APDU_MALFORMED, "command header or MACt missing"))
        if comm_mode == COMM_PLAIN:
            return bytes(body[:header_bytes]), bytes(body[header_bytes:])
        header = bytes(body[:header_bytes])
        payload = bytes(body[header_bytes : -cmac.MAC_T_BYTES])
        if not digests_equal(self.command_mac(ins, header, payload), body[-cmac.MAC_T_BYTES :]):
            raise self._end(AuthenticationError(CARD_AUTH_FAILED, "command MACt"))
        if comm_mode == COMM_MAC:
            return header, payload
        try:
            return header, self._decrypt(self.command_iv(), payload, APDU_MALFORMED)
        except ValidationError as error:
            raise self._end(error)

    def answer(self, data=b"", comm_mode=COMM_FULL):
        """Card side: the R-APDU data || [MACt] || 91 00 for a successful command."""
        assert self.active, "session ended"
        payload = bytes(data)
        if comm_mode != COMM_PLAIN:
            if comm_mode == COMM_FULL:
                payload = self._encrypt(self.response_iv(), data)
            payload += self.response_mac(STATUS_OK, payload)
        self._advance()
        return status_response(STATUS_OK, payload)
