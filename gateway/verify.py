"""The verify stage: topic, envelope, MAC, schema and consistency of every uplink (pure).

Order matters for what a forger learns: the topic and size are checked first, the MAC before
any field is trusted, and only then the fields against the topic and the registry.

What happens to a message that fails (docs/protocol.md section 5.1):

- before its MAC verifies: a ProtocolError, answered with an unsigned notice;
- a transaction whose MAC verifies but that breaks a rule: a `Verified` with `refusal` set,
  which is sequenced, stored as refused and acked with its seq like any other, so it can
  never hold up the terminal's later records;
- a message whose MAC verifies but whose own seq and prev (or request id) cannot be read:
  `SignedRefusal`, answered with a sealed notice (no chain can place it).

A lost notice (type 8 on `up/txn`: the terminal lost the record it sealed under a seq) is
a `Verified` too: refused `record_lost`, with the digest it names as its own, so it takes
the lost record's place in the chain (docs/protocol.md section 5.9). One whose seq or
digest cannot be read gets a sealed notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway import fast_cbor
from gateway.offline_episodes import Told
from gateway.registry import Terminal, TerminalRegistry
from protocol import PROTOCOL_VERSION, cbor, messages, sealed, topics, txn
from protocol.errors import AuthenticationError, DecodeError, ProtocolError, ValidationError
from protocol.reasons import (
    FIELD_INVALID,
    FIELD_MISSING,
    MERCHANT_MISMATCH,
    MESSAGE_MALFORMED,
    MESSAGE_TOO_LARGE,
    MESSAGE_TYPE_INVALID,
    RECORD_LOST,
    TIME_INVALID,
    TOPIC_INVALID,
    TOPIC_MISMATCH,
    VERSION_UNSUPPORTED,
)

CLOCK_SKEW_MAX_S = 300
STATUS_STATES = ("online", "offline", "heartbeat")
_K_SEQ = 3
_K_PREV = 4
_K_REQUEST = 20


class SignedRefusal(ProtocolError):
    """A message that proved its terminal's key but cannot be placed or answered in kind.

    `seq` is the seq it named, when readable (a notice names it back)."""

    def __init__(self, reason: str, detail: str = "", seq: int | None = None) -> None:
        super().__init__(reason, detail)
        self.seq = seq


class DeclinedRequest(ProtocolError):
    """An authorization request that proved its key but breaks a rule: a signed decline."""

    def __init__(self, reason: str, detail: str, request: int) -> None:
        super().__init__(reason, detail)
        self.request = request


class Verified:
    """A transaction whose MAC verified, in sequence from here on: the one record the
    gateway's stages pass along, built here and never changed (its fields are read-only;
    what the card book computes for it travels beside it, see `CardBook.apply`).

    `refusal` is None when every field is consistent; else the reason it will be stored as
    refused with (its fields are then what could be read: at least terminal, merchant of the
    topic, seq and prev).

    `told`: what the gateway had sent its terminal when it arrived (gateway/answered.py), for
    the offline re-check; None when it was verified outside the verify stage.

    A lost notice has refusal `record_lost`, no prev, and as `digest` the lost record's
    (given), which the terminal's next record chains from."""

    __slots__ = ("terminal", "merchant", "seq", "fields", "record", "digest", "refusal",
                 "told")

    terminal: str
    merchant: str
    seq: int
    fields: Mapping[str, Any]
    record: bytes
    digest: bytes
    refusal: str | None
    told: Told | None

    def __init__(self, fields: Mapping[str, Any], record: bytes,
                 refusal: str | None = None, told: Told | None = None,
                 digest: bytes | None = None) -> None:
        put = object.__setattr__
        put(self, "terminal", fields["terminal"])
        put(self, "merchant", fields["merchant"])
        put(self, "seq", fields["seq"])
        put(self, "fields", MappingProxyType(dict(fields)))
        put(self, "record", bytes(record))
        put(self, "digest", txn.digest(record) if digest is None else digest)
        put(self, "refusal", refusal)
        put(self, "told", told)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a verified record does not change")

    @property
    def txn_id(self) -> str:
        return txn.txn_id(self.terminal, self.seq)

    @property
    def lost(self) -> bool:
        """A lost notice, not a record: it holds the seq but says nothing of the sale."""
        return self.refusal == RECORD_LOST


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Verifier:
    def __init__(self, registry: TerminalRegistry) -> None:
        self.registry = registry

    def _authenticated(self, topic: str, payload: bytes, leaf: str
                       ) -> tuple[bytes, str, str, Terminal]:
        """(verified payload, topic merchant, terminal, its registry entry), or raise."""
        merchant, terminal, direction, topic_leaf = topics.parse(topic)
        if direction != topics.UP or topic_leaf != leaf:
            raise ValidationError(TOPIC_INVALID, topic)
        if len(payload) > messages.MESSAGE_BYTES_MAX:
            raise DecodeError(MESSAGE_TOO_LARGE, f"{len(payload)} bytes")
        fast = fast_cbor.envelope(payload)  # None: read by the general path
        mac0, kid_terminal = (fast, fast.terminal) if fast is not None else sealed.peek(payload)
        if kid_terminal != terminal:
            raise AuthenticationError(TOPIC_MISMATCH, "kid differs from the topic")
        entry = self.registry.get(terminal)
        return mac0.verify(entry.key), merchant, terminal, entry

    @staticmethod
    def _map(inner: bytes, message_type: int, also: int | None = None) -> dict[Any, Any]:
        """The verified payload as a map of this message type (or `also`) and version 1."""
        item = fast_cbor.flat_map(inner)
        try:
            if item is None:  # not the common shape: the general decoder reads or refuses it
                item = cbor.decode(inner)
        except DecodeError as error:
            raise SignedRefusal(error.reason, error.detail) from None
        if not isinstance(item, dict):
            raise SignedRefusal(MESSAGE_MALFORMED, "message is not a map")
        # `type(...) is int`: CBOR true is not the integer 1, although Python's True == 1.
        found = item.get(messages.K_TYPE)
        if type(found) is not int or found not in (message_type, also or message_type):
            raise SignedRefusal(MESSAGE_TYPE_INVALID, f"expected type {message_type}")
        version = item.get(messages.K_VERSION)
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise SignedRefusal(VERSION_UNSUPPORTED, f"version {version!r}")
        return item

    @staticmethod
    def _fields(item: dict[Any, Any], message_type: int, merchant: str, terminal: str,
                entry: Terminal) -> dict[str, Any]:
        fields = messages.unpack(item, message_type)
        if fields["terminal"] != terminal:
            raise ValidationError(TOPIC_MISMATCH, "signed terminal differs from the kid")
        if fields.get("merchant", merchant) != merchant:
            raise ValidationError(TOPIC_MISMATCH, "merchant differs from the topic")
        if merchant != entry.merchant:
            raise ValidationError(MERCHANT_MISMATCH, terminal)
        return fields

    def transaction(self, topic: str, payload: bytes, now_s: float,
                    told: Told | None = None) -> Verified:
        """The record `payload`; `told`: what the gateway had sent its terminal when it
        arrived (carried along, `Verified.told`)."""
        inner, merchant, terminal, entry = self._authenticated(topic, payload, topics.LEAF_TXN)
        item = self._map(inner, messages.TYPE_TXN, messages.TYPE_LOST)
        seq, prev = item.get(_K_SEQ), item.get(_K_PREV)
        if not _is_uint(seq):
            raise SignedRefusal(FIELD_MISSING if seq is None else FIELD_INVALID, "seq")
        if item[messages.K_TYPE] == messages.TYPE_LOST:
            return self._lost(item, payload, merchant, terminal, entry, told)
        if not (isinstance(prev, bytes) and len(prev) == 32):
            raise SignedRefusal(FIELD_MISSING if prev is None else FIELD_INVALID, "prev", seq)
        fields: dict[str, Any] = {"terminal": terminal, "merchant": merchant, "seq": seq,
                                  "prev": prev}
        try:
            fields = self._fields(item, messages.TYPE_TXN, merchant, terminal, entry)
            # Answers go where the terminal listens: the merchant of the topic it used.
            fields = dict(txn.check_consistency(fields), merchant=merchant)
            # Future against the latest time this gateway gave the terminal, not only its
            # clock now: terminals follow the gateway's time, so after the gateway's clock
            # steps back, records stamped with the time it gave out before are not refused.
            latest_s = max(now_s, told.answered_s) if told is not None else now_s
            if fields["time"] > latest_s + CLOCK_SKEW_MAX_S:
                raise ValidationError(TIME_INVALID, "time is in the future")
        except ProtocolError as error:
            fields["merchant"] = merchant
            return Verified(fields, bytes(payload), error.reason, told)
        return Verified(fields, bytes(payload), told=told)

    def _lost(self, item: dict[Any, Any], payload: bytes, merchant: str, terminal: str,
              entry: Terminal, told: Told | None) -> Verified:
        """A lost notice: placed as refused under its seq, with the lost record's digest."""
        try:
            fields = self._fields(item, messages.TYPE_LOST, merchant, terminal, entry)
        except ProtocolError as error:
            raise SignedRefusal(error.reason, error.detail, item[_K_SEQ]) from None
        fields["merchant"] = merchant
        return Verified(fields, bytes(payload), RECORD_LOST, told, fields["digest"])

    def auth_request(self, topic: str, payload: bytes) -> dict[str, Any]:
        """The request's fields; DeclinedRequest when it breaks a rule after its MAC
        verified (answered with a signed decline), SignedRefusal without a request id."""
        inner, merchant, terminal, entry = self._authenticated(topic, payload,
                                                               topics.LEAF_AUTH)
        item = self._map(inner, messages.TYPE_AUTH_REQUEST)
        request = item.get(_K_REQUEST)
        if not isinstance(request, int) or not _is_uint(request):
            raise SignedRefusal(FIELD_MISSING if request is None else FIELD_INVALID, "request")
        try:
            return self._fields(item, messages.TYPE_AUTH_REQUEST, merchant, terminal, entry)
        except ProtocolError as error:
            raise DeclinedRequest(error.reason, error.detail, request) from None

    def status(self, topic: str, payload: bytes) -> dict[str, Any]:
        inner, merchant, terminal, entry = self._authenticated(topic, payload,
                                                               topics.LEAF_STATUS)
        item = self._map(inner, messages.TYPE_STATUS)
        fields = self._fields(item, messages.TYPE_STATUS, merchant, terminal, entry)
        if fields["state"] not in STATUS_STATES:  # it names a counter: only known names
            raise ValidationError(FIELD_INVALID, "state")
        return fields


    def diag(self, topic: str, payload: bytes) -> dict[str, Any]:
        """A terminal's diag answer (gateway/diag.py), checked as every uplink is."""
        inner, merchant, terminal, entry = self._authenticated(topic, payload,
                                                               topics.LEAF_DIAG)
        item = self._map(inner, messages.TYPE_DIAG)
        return self._fields(item, messages.TYPE_DIAG, merchant, terminal, entry)


def claimed_terminal(topic: str) -> tuple[str, str] | None:
    """(merchant, terminal) named by a topic, for addressing a notice; None if foreign."""
    try:
        merchant, terminal, _, _ = topics.parse(topic)
    except ValidationError:
        return None
    return merchant, terminal
