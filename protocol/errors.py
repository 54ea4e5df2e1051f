"""Typed operating errors of the protocol layer.

Every error carries a stable reason code (see `protocol.reasons`) that travels on the wire and
that a terminal can show to the cashier; `detail` is for logs only.

    ProtocolError            any input that this layer refuses (reason code + detail)
    +-- DecodeError          bytes that are not a well-formed deterministic CBOR item
    +-- ValidationError      a well-formed message whose fields break a rule
    +-- AuthenticationError  a MAC that does not verify, an unknown key or algorithm

Programmer errors (wrong argument types passed by our own code) are assertions, not these.
"""


class ProtocolError(Exception):
    def __init__(self, reason, detail=""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self):
        if self.detail:
            return self.reason + ": " + self.detail
        return self.reason


class DecodeError(ProtocolError):
    pass


class ValidationError(ProtocolError):
    pass


class AuthenticationError(ProtocolError):
    pass
