"""Validate a settlement batch as decoded from JSON and turn it into a `Batch`.

Pure: no I/O. Everything the gateway sends is checked here, before the database is
touched. A fault of the envelope refuses the batch whole and changes nothing: the batch is
not an object, its own keys (batch_id, gateway_id, created, transactions) are missing,
unknown or wrong, it has too many transactions, or a transaction cannot be told apart from
the others (not an object, no valid txn_id, not JSON, or a txn_id twice with different
content: the answer names refused transactions by txn_id). Any other fault refuses only its
transaction: it becomes a `TxnRefusal` in the batch, and the rest is judged on.

Types are exact (an int is an int, never a bool or a float), keys are exact (missing and
unknown keys are both refused; a transaction's keys are `ledger.model`'s TXN_KEYS and
TXN_OPTIONAL_KEYS, which may be left out, null being the same as absent), and each refusal
names the transaction index and the field in its detail. A transaction's "legs" are checked
here leg by leg and for their balance per unit; rules that need the books (refunds, card
currency, holds, conflicts, whether the legs agree with the fields) live in
`ledger.plan`. Hold requests (POST /v1/holds) are checked here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ledger.currencies import POINTS_UNIT, is_known_currency
from ledger.errors import BatchConflict, BatchInvalid, BatchTooLarge
from ledger.hold_rules import HOLD_OPTIONAL_KEYS, HOLD_REQUEST_KEYS, HoldRequest
from ledger.limits import (
    AMOUNT_MINOR_MAX,
    BATCH_TXN_MAX,
    HOLD_GRANTS_MAX,
    HOLD_TTL_S_MAX,
    ID_CHARS_MAX,
    INT64_MAX,
    LEGS_MAX,
    POINTS_MAX,
    PROGRAM_VERSION_MAX,
    REFUSAL_DETAIL_CHARS_MAX,
    SUN_COUNTER_MAX,
)
from ledger.model import (
    KIND_CASHOUT,
    KIND_EXPIRE,
    KIND_ISSUE,
    KIND_PURCHASE,
    KIND_REFUND,
    KIND_TOPUP,
    KINDS,
    TXN_KEYS,
    TXN_OPTIONAL_KEYS,
    Batch,
    GivenLeg,
    Txn,
    TxnRefusal,
    canonical_json,
    sha256_hex,
)
from ledger.posting_rules import LEG_CAUSES, unit_allowed
from protocol.accounts import ACCOUNT_KINDS

BATCH_KEYS = frozenset({"batch_id", "gateway_id", "created", "transactions"})
# The keys of `ledger.model` and `ledger.hold_rules`, as sets for look-ups.
_TXN_KEYS = frozenset(TXN_KEYS)
_TXN_OPTIONAL_KEYS = frozenset(TXN_OPTIONAL_KEYS)
_HOLD_KEYS = frozenset(HOLD_REQUEST_KEYS)
_HOLD_OPTIONAL_KEYS = frozenset(HOLD_OPTIONAL_KEYS)
LEG_FIELDS = GivenLeg._fields
"""A leg is a JSON list of these four, in order: the engine's [account, unit, amount, cause]."""
ID_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{ID_CHARS_MAX}}}")
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")


def parse_batch(document: object) -> Batch:
    """Check a decoded batch completely; return it typed, each transaction a `Txn` or a
    `TxnRefusal`. A fault of the envelope raises a `LedgerRejected` (module docstring)."""
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
    parsed: list[Txn | TxnRefusal] = []
    texts: list[str] = []
    identities: dict[str, str] = {}
    for index, item in enumerate(transactions):
        where = f"transactions[{index}]"
        txn_id, text, identity = _identify(item, where)
        if identities.setdefault(txn_id, identity) != identity:
            raise BatchConflict(
                "txn_conflict",
                f"batch {batch_id}, {where}: txn {txn_id} is in it twice, with other content",
            )
        try:
            parsed.append(_parse_fields(item, where, identity))
        except BatchInvalid as refusal:
            detail = refusal.detail[:REFUSAL_DETAIL_CHARS_MAX]
            parsed.append(TxnRefusal(txn_id, refusal.reason, detail, identity, index))
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
    _, _, identity = _identify(document, where)
    assert isinstance(document, dict), "_identify refuses anything but an object"
    return _parse_fields(document, where, identity)


def _identify(document: object, where: str) -> tuple[str, str, str]:
    """(txn_id, canonical JSON text, identity hash) of a transaction: what tells it apart
    from the others of its batch. A transaction without them faults the whole batch."""
    if not isinstance(document, dict):
        raise BatchInvalid("field_type", f"{where}: must be a JSON object")
    if "txn_id" not in document:
        raise BatchInvalid("field_missing", f"{where}: missing txn_id")
    txn_id = _identifier(document, "txn_id", where)
    text = _canonical_text(document, where)
    identity = text
    if any(document[key] is None for key in _TXN_OPTIONAL_KEYS.intersection(document)):
        # The batch hash covers the text as sent; a txn's identity does not depend on whether
        # a sender writes an optional key as null or leaves it out (old transactions resent
        # with "hold_id": null, or "version": null, are the same transactions).
        identity = _without_nulls(document)
    return txn_id, text, sha256_hex(identity)


def _parse_fields(document: dict[str, Any], where: str, content_hash: str) -> Txn:
    """A transaction's fields and its kind's rules checked (BatchInvalid refuses it)."""
    _check_keys(document, _TXN_KEYS, where, _TXN_OPTIONAL_KEYS)
    kind = _kind(document, where)
    hold_id = _optional_identifier(document, "hold_id", where) if "hold_id" in document else None
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
        content_hash=content_hash,
        hold_id=hold_id,
        # Keyword arguments are evaluated in order: currency has been checked by now.
        legs=_legs(document, where, document["currency"]),
        version=_optional_integer(
            document, "version", where, PROGRAM_VERSION_MAX, "field_invalid", minimum=1
        ),
        discount_minor=_optional_integer(document, "discount_minor", where, AMOUNT_MINOR_MAX),
        redeem_points=_optional_integer(document, "redeem_points", where, POINTS_MAX),
        sun_counter=_optional_integer(document, "sun_counter", where, SUN_COUNTER_MAX,
                                      "field_invalid"),
        reward=(_optional_identifier(document, "reward", where)
                if "reward" in document else None),
        grants=_txn_grants(document, where),
    )
    _check_kind_rules(txn, where)
    _check_kind_references(txn, where)
    _check_program_fields(txn, where)
    return txn


def _without_nulls(document: Mapping[str, Any]) -> str:
    """Canonical JSON of a transaction without its optional keys that are null."""
    return canonical_json(
        {
            key: value
            for key, value in document.items()
            if value is not None or key not in _TXN_OPTIONAL_KEYS
        }
    )


def parse_hold_request(document: object) -> HoldRequest:
    """Check a decoded POST /v1/holds body completely; return it typed, or raise BatchInvalid."""
    if not isinstance(document, dict):
        raise BatchInvalid("request_malformed", "a hold request must be a JSON object")
    where = "hold"
    _check_keys(document, _HOLD_KEYS, where, _HOLD_OPTIONAL_KEYS)
    points = _integer(document, "points", where, POINTS_MAX) if "points" in document else 0
    amount_minor = _integer(document, "amount_minor", where, AMOUNT_MINOR_MAX)
    grants = _hold_grants(document, where)
    if not amount_minor and not points and not grants:
        raise BatchInvalid("amount_invalid",
                           f"{where}: holds value (amount_minor), points or grants")
    # "points": 0 is the same hold as no "points": hashed without it, so the hash of a hold
    # of value only is what it was before holds held points (a replay stays a replay).
    hashed = document if points else {k: v for k, v in document.items() if k != "points"}
    return HoldRequest(
        hold_id=_identifier(document, "hold_id", where),
        card=_identifier(document, "card", where),
        currency=_currency(document, where),
        amount_minor=amount_minor,
        ttl_s=_integer(document, "ttl_s", where, HOLD_TTL_S_MAX, "field_invalid", minimum=1),
        terminal=_identifier(document, "terminal", where),
        merchant=_identifier(document, "merchant", where),
        content_hash=sha256_hex(_canonical_text(hashed, where)),
        points=points,
        sun_counter=(_integer(document, "sun_counter", where, SUN_COUNTER_MAX, "field_invalid")
                     if "sun_counter" in document else None),
        reward=_hold_reward(document, where, points),
        grants=grants,
    )


def _txn_grants(document: Mapping[str, Any], where: str) -> str | None:
    """A purchase's targeted offers (0..HOLD_GRANTS_MAX ids, each once), kept as canonical
    JSON; absent or null: not said."""
    if document.get("grants") is None:
        return None
    return canonical_json(sorted(_offer_ids(document["grants"], where, 0)))


def _hold_grants(document: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """A hold's targeted offers: 1..HOLD_GRANTS_MAX offer ids, each once (absent: none)."""
    if "grants" not in document:
        return ()
    return _offer_ids(document["grants"], where, 1)


def _offer_ids(grants: object, where: str, least: int) -> tuple[str, ...]:
    """`least`..HOLD_GRANTS_MAX offer ids, each once; else field_invalid (field_type for an
    id that is not a string)."""
    if (not isinstance(grants, list) or not least <= len(grants) <= HOLD_GRANTS_MAX
            or len(set(map(str, grants))) != len(grants)):
        raise BatchInvalid("field_invalid", f"{where}.grants: a list of {least} to"
                           f" {HOLD_GRANTS_MAX} offer ids, each once")
    return tuple(_identifier({"grant": offer}, "grant", f"{where}.grants") for offer in grants)


def _hold_reward(document: Mapping[str, Any], where: str, points: int) -> str | None:
    """A hold's reward item: only on a hold of points (a reward is paid in points)."""
    if "reward" not in document:
        return None
    if not points:
        raise BatchInvalid("field_invalid", f"{where}.reward: only a hold of points pays one")
    return _identifier(document, "reward", where)


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


def _optional_integer(
    document: Mapping[str, Any],
    key: str,
    where: str,
    maximum: int,
    reason: str = "amount_invalid",
    minimum: int = 0,
) -> int | None:
    """An optional key's exact int (as `_integer`), or None when it is absent or null."""
    if document.get(key) is None:
        return None
    return _integer(document, key, where, maximum, reason, minimum)


def _legs(
    document: Mapping[str, Any], where: str, currency: str
) -> tuple[GivenLeg, ...] | None:
    """The transaction's "legs", each checked, together summing to zero per unit; or None."""
    value = document.get("legs")
    if value is None:
        return None
    where = f"{where}.legs"
    if not isinstance(value, list):
        raise BatchInvalid("field_type", f"{where}: must be a list")
    if len(value) > LEGS_MAX:
        raise BatchInvalid("field_invalid", f"{where}: {len(value)} legs, at most {LEGS_MAX}")
    legs = tuple(_leg(item, f"{where}[{index}]", currency) for index, item in enumerate(value))
    sums: dict[str, int] = {}
    for leg in legs:
        sums[leg.unit] = sums.get(leg.unit, 0) + leg.amount_minor
    unbalanced = {unit: total for unit, total in sorted(sums.items()) if total}
    if unbalanced:
        raise BatchInvalid(
            "legs_unbalanced", f"{where}: must sum to 0 in every unit, sum to {unbalanced}"
        )
    return legs


def _leg(item: object, where: str, currency: str) -> GivenLeg:
    """One leg: [account_kind, unit, amount_minor, cause], amount a non-zero exact int."""
    if not isinstance(item, list):
        raise BatchInvalid("field_type", f"{where}: must be a list [{', '.join(LEG_FIELDS)}]")
    if len(item) != len(LEG_FIELDS):
        raise BatchInvalid("field_invalid", f"{where}: must be [{', '.join(LEG_FIELDS)}]")
    account_kind, unit, amount_minor, cause = item
    for name, text in (("account_kind", account_kind), ("unit", unit), ("cause", cause)):
        if not isinstance(text, str):
            raise BatchInvalid("field_type", f"{where}.{name}: must be a string")
    if account_kind not in ACCOUNT_KINDS:
        raise BatchInvalid(
            "field_invalid",
            f"{where}.account_kind: {account_kind[:ID_CHARS_MAX]!r} is not one of {ACCOUNT_KINDS}",
        )
    if unit not in (currency, POINTS_UNIT) or not unit_allowed(account_kind, unit, currency):
        raise BatchInvalid(
            "field_invalid",
            f"{where}.unit: {unit[:ID_CHARS_MAX]!r} is not a unit of {account_kind}"
            f" in a {currency} transaction",
        )
    if type(amount_minor) is not int:
        raise BatchInvalid(
            "field_type",
            f"{where}.amount_minor: must be an integer, got {type(amount_minor).__name__}",
        )
    if amount_minor == 0 or abs(amount_minor) > AMOUNT_MINOR_MAX:
        raise BatchInvalid(
            "amount_invalid",
            f"{where}.amount_minor: must be non-zero, between -{AMOUNT_MINOR_MAX}"
            f" and {AMOUNT_MINOR_MAX}",
        )
    if cause not in LEG_CAUSES:
        raise BatchInvalid(
            "field_invalid", f"{where}.cause: {cause[:ID_CHARS_MAX]!r} is not one of {LEG_CAUSES}"
        )
    return GivenLeg(account_kind, unit, amount_minor, cause)


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
    if txn.bonus_minor and txn.kind not in (KIND_TOPUP, KIND_REFUND):
        raise BatchInvalid(
            "amount_invalid", f"{where}.bonus_minor: only a topup (or its refund) carries a bonus"
        )
    # card_value_minor is always the change in the card's value (protocol v1): an issue loads
    # its amount, a top-up its amount plus bonus. Anything else would post a different value
    # than the terminal showed the customer.
    loaded = {KIND_ISSUE: txn.amount_minor, KIND_TOPUP: txn.amount_minor + txn.bonus_minor}
    if txn.kind in loaded and (txn.card_value_minor != loaded[txn.kind] or txn.points):
        raise BatchInvalid(
            "amount_invalid",
            f"{where}: {txn.kind} must load card_value_minor = amount (+ bonus), no points",
        )
    if txn.kind == KIND_PURCHASE and txn.card_value_minor > txn.amount_minor:
        raise BatchInvalid("amount_invalid", f"{where}.card_value_minor: exceeds amount_minor")
    # A refund of a load takes the cash paid back (amount) and the bonus reversed off the
    # card; whether its original is a load (or a purchase, with no bonus) is plan's to judge.
    if txn.kind == KIND_REFUND and (
        txn.card_value_minor > txn.amount_minor + txn.bonus_minor
        or txn.bonus_minor > txn.card_value_minor
    ):
        raise BatchInvalid(
            "amount_invalid",
            f"{where}: a refund's card_value_minor must lie between bonus_minor and"
            " amount_minor + bonus_minor",
        )
    if txn.kind == KIND_EXPIRE and (
        txn.amount_minor != txn.card_value_minor or not (txn.card_value_minor or txn.points)
    ):
        raise BatchInvalid(
            "amount_invalid",
            f"{where}: expire must take card_value_minor (= amount_minor) and/or points",
        )
    # A cashout pays out in cash exactly the value it takes off the card.
    if txn.kind == KIND_CASHOUT and (
        txn.amount_minor == 0 or txn.card_value_minor != txn.amount_minor or txn.points
    ):
        raise BatchInvalid(
            "amount_invalid",
            f"{where}: cashout must take card_value_minor = amount_minor > 0, no points",
        )


def _check_kind_references(txn: Txn, where: str) -> None:
    """Refuse ids a kind does not carry: a hold, a program, an original to refund."""
    if txn.hold_id is not None and txn.kind not in (KIND_PURCHASE, KIND_CASHOUT):
        raise BatchInvalid(
            "field_invalid", f"{where}.hold_id: only a purchase or a cashout posts a hold")
    if txn.kind == KIND_ISSUE and txn.program is None:
        raise BatchInvalid("field_invalid", f"{where}.program: required on issue")
    if (txn.kind == KIND_REFUND) != (txn.ref_txn_id is not None):
        raise BatchInvalid(
            "field_invalid", f"{where}.ref_txn_id: required on refund and null on every other kind"
        )


def _check_program_fields(txn: Txn, where: str) -> None:
    """The program engine's optional fields, on the kinds that have them."""
    if txn.discount_minor is not None and txn.kind != KIND_PURCHASE:
        raise BatchInvalid("amount_invalid", f"{where}.discount_minor: only a purchase has one")
    if txn.discount_minor is not None and txn.discount_minor > txn.amount_minor:
        raise BatchInvalid("amount_invalid", f"{where}.discount_minor: exceeds amount_minor")
    if txn.redeem_points and txn.kind not in (KIND_PURCHASE, KIND_REFUND):
        raise BatchInvalid(
            "amount_invalid", f"{where}.redeem_points: only a purchase or a refund redeems points"
        )
    if txn.grants is not None and txn.kind != KIND_PURCHASE:
        raise BatchInvalid("field_invalid", f"{where}.grants: only a purchase gets offers")
    if txn.reward is not None and (txn.kind != KIND_PURCHASE or not txn.redeem_points):
        raise BatchInvalid(
            "field_invalid", f"{where}.reward: only a purchase redeeming points hands one over")
    if txn.redeem_points and txn.legs is None:
        # The posting rules know no redemption: without the engine's legs it would vanish.
        raise BatchInvalid("field_invalid", f"{where}.redeem_points: above zero only with legs")
