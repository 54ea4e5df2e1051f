"""Signed messages: any protocol v1 message wrapped in COSE_Mac0 under a terminal's key.

Uplinks are signed by the terminal; acknowledgements and authorization responses are signed
by the gateway with the same per-terminal key, so a terminal deletes journal entries or
completes a sale only on a message that its own key proves. The kid is the terminal id.
"""

from protocol import cose, messages
from protocol.errors import AuthenticationError, DecodeError
from protocol.reasons import MESSAGE_TOO_LARGE, TERMINAL_UNKNOWN


def _bytes_max(message_type):
    if message_type == messages.TYPE_CONFIG:
        return messages.CONFIG_BYTES_MAX
    return messages.MESSAGE_BYTES_MAX


def seal(key, message_type, fields):
    payload = messages.encode(message_type, fields)
    data = cose.create(key, payload, fields["terminal"].encode())
    assert len(data) <= _bytes_max(message_type), "message exceeds its size limit"
    return data


def peek(data, bytes_max=messages.MESSAGE_BYTES_MAX):
    """Parse the envelope and return (mac0, terminal id from the kid), unverified."""
    if len(data) > bytes_max:
        raise DecodeError(MESSAGE_TOO_LARGE, "%d bytes" % len(data))
    mac0 = cose.parse(data)
    kid = mac0.kid
    terminal = None
    if kid is not None:
        try:
            terminal = kid.decode()
        except UnicodeError:
            terminal = None
    if terminal is None or not messages.is_id(terminal):
        raise AuthenticationError(TERMINAL_UNKNOWN, "kid absent or not a terminal id")
    return mac0, terminal


def open_message(data, message_type, key, mac0=None, terminal=None):
    """Verify under `key` and check the schema; the signed terminal must equal the kid."""
    if mac0 is None:
        mac0, terminal = peek(data, _bytes_max(message_type))
    payload = mac0.verify(key)
    fields = messages.decode(payload, message_type)
    if fields["terminal"] != terminal:
        raise AuthenticationError(TERMINAL_UNKNOWN, "kid differs from the signed terminal")
    return fields
