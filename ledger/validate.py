"""Validate a settlement batch as decoded from JSON and turn it into a `Batch`.

Pure: no I/O. Everything the gateway sends is checked here, before the database is
touched, so a bad batch is refused whole and changes nothing. Types are exact (an int
is an int, never a bool or a float), keys are exact (missing and unknown keys are both
refused; ``hold_id`` is the one optional key), and each refusal names the transaction
index and the field in its detail. Rules that need the books (refunds, card currency,
holds, conflicts) live in `ledger.plan`. Hold requests (POST /v1/holds) are checked here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ledger.currencies import is_known_currency
from ledger.errors import BatchInvalid, BatchTooLarge
from ledger.holds import HoldRequest
from ledger.limits import (
    AMOUNT_MINOR_MAX,
    BATCH_TXN_MAX,
    HOLD_TTL_S_MAX,
    ID_CHARS_MAX,
    INT64_MAX,
    POINTS_MAX,
)
from ledger.model import (
    KIND_EXPIRE,
    KIND_ISSUE,
    KIND_PURCHASE,
    KIND_REFUND,
    KIND_TOPUP,
    KINDS,
    Batch,
    Txn,
    canonical_json,
    sha256_hex,
)

BATCH_KEYS = frozenset({"batch_id", "gateway_id", "created", "transactions"})
TXN_KEYS = frozenset(
    {
        "txn_id",
        "terminal",
        "seq",
        "merchant",
        "time",
        "kind",
        "card",
        "currency",
        "amount_minor",
        "card_value_minor",
        "bonus_minor",
        "points",
        "ref_txn_id",
        "program",
        "digest",
        "auth",
    }
)
TXN_OPTIONAL_KEYS = frozenset({"hold_id"})
"""Keys a transaction may leave out; ``"hold_id": null`` and no hold_id are the same txn."""
HOLD_KEYS = frozenset(
    {"hold_id", "card", "currency", "amount_minor", "ttl_s", "terminal", "merchant"}
)
ID_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{ID_CHARS_MAX}}}")
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")


def parse_batch(document: object) -> Batch:
    """Check a decoded batch completely; return it typed, or raise a `LedgerRejected`."""
    if not isinstance(document, dict):
        raise BatchInvalid("batch_malformed", "the batch must be a JSON object")
    _check_keys(document, BATCH_KEYS, "batch")
    transactions = document["transactions"]
    if not isinstance(transactions, list):
        raise BatchInvalid("field_type", "batch.transactions: must be a list")
    if len(transactions) > BATCH_TXN_MAX:
        raise BatchTooLarge(
            "batch_too_large", f"{len(transactions)} transactions, at most {BATCH_TXN_MAX}"
        )
    batch_id = _identifier(document, "batch_id", "batch")
    gateway_id = _identifier(document, "gateway_id", "batch")
    created = _integer(document, "created", "batch", INT64_MAX, "field_invalid")
    parsed: list[Txn] = []
    texts: list[str] = []
    for index, txn in enumerate(transactions):
        parsed_txn, text = _parse_txn_text(txn, f"transactions[{index}]")
        parsed.append(parsed_txn)
        texts.append(text)
    return Batch(batch_id, gateway_id, created, tuple(parsed), _batch_hash(document, texts))


def _batch_hash(document: Mapping[str, Any], txn_texts: list[str]) -> str:
    """content_hash(document), reusing the transactions' canonical texts (encoded once)."""
    head = {key: value for key, value in document.items() if key != "transactions"}
    head_text = _canonical_text(head, "batch")
    # "transactions" sorts after the other three keys, so it is the last member.
    assert sorted(BATCH_KEYS)[-1] == "transactions"
    text = f'{head_text[:-1]},"transactions":[{",".join(txn_texts)}]}}'
    return sha256_hex(text)


def parse_txn(document: object, where: str = "txn") -> Txn:
    """Check one transaction's fields and its kind's rules; `where` prefixes every detail."""
    return _parse_txn_text(document, where)[0]


def _parse_txn_text(document: object, where: str) -> tuple[Txn, str]:
    """parse_txn, also returning the transaction's canonical JSON text (for the batch hash)."""
    if not isinstance(document, dict):
        raise BatchInvalid("field_type", f"{where}: must be a JSON object")
    _check_keys(document, TXN_KEYS, where, TXN_OPTIONAL_KEYS)
    kind = _kind(document, where)
    text = _canonical_text(document, where)
    hold_id = _optional_identifier(document, "hold_id", where) if "hold_id" in document else None
    identity = text
    if hold_id is None and "hold_id" in document:
        # The batch hash covers the text as sent; a txn's identity does not depend on whether
        # a sender without holds writes "hold_id": null or leaves the key out.
        identity = _without_hold(document)
    txn = Txn(
        txn_id=_identifier(document, "txn_id", where),
        terminal=_identifier(document, "terminal", where),
        seq=_integer(document, "seq", where, INT64_MAX, "field_invalid"),
        merchant=_identifier(document, "merchant", where),
        time=_integer(document, "time", where, INT64_MAX, "field_invalid"),
        kind=kind,
        card=_identifier(document, "card", where),
        currency=_currency(document, where),
        amount_minor=_integer(document, "amount_minor", where, AMOUNT_MINOR_MAX),
        card_value_minor=_integer(document, "card_value_minor", where, AMOUNT_MINOR_MAX),
        bonus_minor=_integer(document, "bonus_minor", where, AMOUNT_MINOR_MAX),
        points=_integer(document, "points", where, POINTS_MAX),
        ref_txn_id=_optional_identifier(document, "ref_txn_id", where),
        program=_optional_identifier(document, "program", where),
        digest=_digest(document, where),
        auth=_identifier(document, "auth", where),
        content_hash=sha256_hex(identity),
        hold_id=hold_id,
    )
    _check_kind_rules(txn, where)
    return txn, text


def _without_hold(document: Mapping[str, Any]) -> str:
    """Canonical JSON of a transaction without its (null) hold_id key."""
    return canonical_json({key: value for key, value in document.items() if key != "hold_id"})


def parse_hold_request(document: object) -> HoldRequest:
    """Check a decoded POST /v1/holds body completely; return it typed, or raise BatchInvalid."""
    if not isinstance(document, dict):
        raise BatchInvalid("request_malformed", "a hold request must be a JSON object")
    where = "hold"
    _check_keys(document, HOLD_KEYS, where)
    return HoldRequest(
        hold_id=_identifier(document, "hold_id", where),
        card=_identifier(document, "card", where),
        currency=_currency(document, where),
        amount_minor=_integer(document, "amount_minor", where, AMOUNT_MINOR_MAX, minimum=1),
        ttl_s=_integer(document, "ttl_s", where, HOLD_TTL_S_MAX, "field_invalid", minimum=1),
        terminal=_identifier(document, "terminal", where),
        merchant=_identifier(document, "merchant", where),
        content_hash=sha256_hex(_canonical_text(document, where)),
    )


def _canonical_text(document: Mapping[str, Any], where: str) -> str:
    """Canonical JSON of a transaction; a Python caller's non-JSON value is a type error."""
    try:
        return canonical_json(document)
    except (TypeError, ValueError) as error:
        raise BatchInvalid("field_type", f"{where}: not JSON-serializable: {error}") from error


def _check_keys(
    document: Mapping[str, Any],
    expected: frozenset[str],
    where: str,
    optional: frozenset[str] = frozenset(),
) -> None:
    """Refuse missing and unknown keys, so a renamed field can never be silently ignored."""
    missing = expected.difference(document)
    if missing:
        raise BatchInvalid("field_missing", f"{where}: missing {', '.join(sorted(missing))}")
    unknown = set(document).difference(expected, optional)
    if unknown:
        names = ", ".join(sorted(repr(key) for key in unknown))
        raise BatchInvalid("field_unknown", f"{where}: unknown {names}")


def _kind(document: Mapping[str, Any], where: str) -> str:
    """The transaction kind, checked first because the other rules depend on it."""
    kind = document["kind"]
    if not isinstance(kind, str):
        raise BatchInvalid("field_type", f"{where}.kind: must be a string")
    if kind not in KINDS:
        raise BatchInvalid(
            "kind_unknown", f"{where}.kind: {kind[:ID_CHARS_MAX]!r} is not one of {KINDS}"
        )
    return kind


def _identifier(document: Mapping[str, Any], key: str, where: str) -> str:
    """A required id: 1 to ID_CHARS_MAX visible ASCII characters (safe in URLs and logs)."""
    value = document[key]
    if not isinstance(value, str):
        raise BatchInvalid("field_type", f"{where}.{key}: must be a string")
    if ID_PATTERN.fullmatch(value) is None:
        raise BatchInvalid(
            "field_invalid",
            f"{where}.{key}: must be 1 to {ID_CHARS_MAX} visible ASCII characters",
        )
    return value


def _optional_identifier(document: Mapping[str, Any], key: str, where: str) -> str | None:
    """An id that may be null (ref_txn_id, program, hold_id); its presence is judged per kind."""
    if document[key] is None:
        return None
    return _identifier(document, key, where)


def _integer(
    document: Mapping[str, Any],
    key: str,
    where: str,
    maximum: int,
    reason: str = "amount_invalid",
    minimum: int = 0,
) -> int:
    """An exact int from `minimum` (0) to `maximum`; bools and floats are type errors."""
    value = document[key]
    if type(value) is not int:
        raise BatchInvalid(
            "field_type", f"{where}.{key}: must be an integer, got {type(value).__name__}"
        )
    if not minimum <= value <= maximum:
        raise BatchInvalid(reason, f"{where}.{key}: must be between {minimum} and {maximum}")
    return value


def _currency(document: Mapping[str, Any], where: str) -> str:
    """An ISO 4217 alphabetic code from the ledger's table (upper case, exactly three letters)."""
    value = document["currency"]
    if not isinstance(value, str):
        raise BatchInvalid("field_type", f"{where}.currency: must be a string")
    if not is_known_currency(value):
        raise BatchInvalid(
            "currency_unknown", f"{where}.currency: {value[:8]!r} is not a known ISO 4217 code"
        )
    return value


def _digest(document: Mapping[str, Any], where: str) -> str:
    """The terminal's transaction digest: 64 lowercase hex characters."""
    value = document["digest"]
    if not isinstance(value, str):
        raise BatchInvalid("field_type", f"{where}.digest: must be a string")
    if DIGEST_PATTERN.fullmatch(value) is None:
        raise BatchInvalid("field_invalid", f"{where}.digest: must be 64 lowercase hex characters")
    return value


def _check_kind_rules(txn: Txn, where: str) -> None:
    """Refuse fields a kind does not use when non-zero, so no value is ever silently dropped."""
    if txn.bonus_minor and txn.kind != KIND_TOPUP:
        raise BatchInvalid("amount_invalid", f"{where}.bonus_minor: only a topup may carry a bonus")
    # card_value_minor is always the change in the card's value (protocol v1): an issue loads
    # its amount, a top-up its amount plus bonus. Anything else would post a different value
    # than the terminal showed the customer.
    loaded = {KIND_ISSUE: txn.amount_minor, KIND_TOPUP: txn.amount_minor + txn.bonus_minor}
    if txn.kind in loaded and (txn.card_value_minor != loaded[txn.kind] or txn.points):
        raise BatchInvalid(
            "amount_invalid",
            f"{where}: {txn.kind} must load card_value_minor = amount (+ bonus), no points",
        )
    if txn.kind in (KIND_PURCHASE, KIND_REFUND) and txn.card_value_minor > txn.amount_minor:
        raise BatchInvalid("amount_invalid", f"{where}.card_value_minor: exceeds amount_minor")
    if txn.kind == KIND_EXPIRE and (
        txn.amount_minor != txn.card_value_minor or not (txn.card_value_minor or txn.points)
    ):
        raise BatchInvalid(
            "amount_invalid",
            f"{where}: expire must take card_value_minor (= amount_minor) and/or points",
        )
    if txn.hold_id is not None and txn.kind != KIND_PURCHASE:
        raise BatchInvalid("field_invalid", f"{where}.hold_id: only a purchase posts a hold")
    if txn.kind == KIND_ISSUE and txn.program is None:
        raise BatchInvalid("field_invalid", f"{where}.program: required on issue")
    if (txn.kind == KIND_REFUND) != (txn.ref_txn_id is not None):
        raise BatchInvalid(
            "field_invalid", f"{where}.ref_txn_id: required on refund and null on every other kind"
        )
