"""The verify stage: topic, envelope, MAC, schema and consistency of every uplink (pure).

Order matters for what a forger learns: the topic and size are checked first, the MAC before
any field is trusted, and only then the fields against the topic and the registry.
"""

from __future__ import annotations

from typing import Any

from gateway.registry import TerminalRegistry
from protocol import messages, sealed, topics, txn
from protocol.errors import AuthenticationError, DecodeError, ValidationError
from protocol.reasons import (
    MERCHANT_MISMATCH,
    MESSAGE_TOO_LARGE,
    TIME_INVALID,
    TOPIC_INVALID,
    TOPIC_MISMATCH,
)

CLOCK_SKEW_MAX_S = 300


class Verified:
    """A transaction whose MAC verified and whose fields are consistent."""

    __slots__ = ("terminal", "merchant", "seq", "fields", "record", "digest")

    def __init__(self, fields: dict[str, Any], record: bytes) -> None:
        self.terminal: str = fields["terminal"]
        self.merchant: str = fields["merchant"]
        self.seq: int = fields["seq"]
        self.fields = fields
        self.record = record
        self.digest = txn.digest(record)

    @property
    def txn_id(self) -> str:
        return txn.txn_id(self.terminal, self.seq)


class Verifier:
    def __init__(self, registry: TerminalRegistry) -> None:
        self.registry = registry

    def _open(self, topic: str, payload: bytes, leaf: str, message_type: int,
              now_s: float) -> tuple[dict[str, Any], str]:
        merchant, terminal, direction, topic_leaf = topics.parse(topic)
        if direction != topics.UP or topic_leaf != leaf:
            raise ValidationError(TOPIC_INVALID, topic)
        if len(payload) > messages.MESSAGE_BYTES_MAX:
            raise DecodeError(MESSAGE_TOO_LARGE, f"{len(payload)} bytes")
        mac0, kid_terminal = sealed.peek(payload)
        if kid_terminal != terminal:
            raise AuthenticationError(TOPIC_MISMATCH, "kid differs from the topic")
        entry = self.registry.get(terminal)
        if message_type == messages.TYPE_TXN:
            fields = txn.open_record(payload, entry.key, mac0, kid_terminal)
        else:
            fields = sealed.open_message(payload, message_type, entry.key, mac0, kid_terminal)
        if fields.get("merchant", merchant) != merchant:
            raise ValidationError(TOPIC_MISMATCH, "merchant differs from the topic")
        if merchant != entry.merchant:
            raise ValidationError(MERCHANT_MISMATCH, terminal)
        if fields.get("time", 0) > now_s + CLOCK_SKEW_MAX_S:
            raise ValidationError(TIME_INVALID, "time is in the future")
        return fields, terminal

    def transaction(self, topic: str, payload: bytes, now_s: float) -> Verified:
        fields, _ = self._open(topic, payload, topics.LEAF_TXN, messages.TYPE_TXN, now_s)
        return Verified(fields, bytes(payload))

    def auth_request(self, topic: str, payload: bytes, now_s: float) -> dict[str, Any]:
        fields, _ = self._open(
            topic, payload, topics.LEAF_AUTH, messages.TYPE_AUTH_REQUEST, now_s
        )
        return fields

    def status(self, topic: str, payload: bytes, now_s: float) -> dict[str, Any]:
        fields, _ = self._open(topic, payload, topics.LEAF_STATUS, messages.TYPE_STATUS, now_s)
        return fields


def claimed_terminal(topic: str) -> tuple[str, str] | None:
    """(merchant, terminal) named by a topic, for addressing a notice; None if foreign."""
    try:
        merchant, terminal, _, _ = topics.parse(topic)
    except ValidationError:
        return None
    return merchant, terminal

