"""Validation and content hashing of batches, without a database."""

from __future__ import annotations

import json
import re

import pytest

from ledger.errors import BatchInvalid
from ledger.limits import REFUSAL_DETAIL_CHARS_MAX
from ledger.model import Txn, TxnRefusal, content_hash
from ledger.server import decode_json
from ledger.validate import parse_batch, parse_txn
from protocol import money
from tests.ledger.builders import batch, issue, purchase, refund, topup
from tests.support import REPO_ROOT


def test_batch_hash_is_the_sha256_of_the_canonical_json_of_the_whole_batch() -> None:
    """The batch hash equals sha256 of json.dumps(batch, sort_keys, compact separators)."""
    document = batch("gw1-1", issue("T1-1"), topup("T1-2", bonus_minor=5), refund("T1-3", "T1-2"))
    assert parse_batch(document).content_hash == content_hash(document)
    assert parse_batch(batch("gw1-0")).content_hash == content_hash(batch("gw1-0"))


def test_txn_hash_ignores_key_order_and_whitespace_of_the_sent_json() -> None:
    """Two encodings of the same transaction (key order, spacing) have the same hash."""
    document = purchase("T1-1")
    reordered = json.loads(json.dumps(dict(reversed(list(document.items()))), indent=2))
    first = parse_batch(batch("gw1-1", document)).transactions[0]
    second = parse_batch(batch("gw1-1", reordered)).transactions[0]
    assert first.content_hash == second.content_hash


def test_txn_hash_changes_with_any_field() -> None:
    """A transaction differing in one field (the digest) has another hash."""
    first = parse_batch(batch("gw1-1", purchase("T1-1"))).transactions[0]
    changed = purchase("T1-1") | {"digest": "cd" * 32}
    assert parse_batch(batch("gw1-1", changed)).transactions[0].content_hash != first.content_hash


def test_non_ascii_ids_are_refused() -> None:
    """Ids are visible ASCII only, so they are safe in URLs, logs and the canonical hash: a
    card refuses its transaction, a txn_id (which names the transaction) the batch."""
    [refusal] = parse_batch(batch("gw1-1", issue("T1-1", card="kärtchen"))).transactions
    assert isinstance(refusal, TxnRefusal) and refusal.reason == "field_invalid"
    with pytest.raises(BatchInvalid) as caught:
        parse_batch(batch("gw1-1", issue("T1-ä")))
    assert caught.value.reason == "field_invalid"


def test_details_name_the_transaction_and_field() -> None:
    """A refusal's detail points at the transaction index and field; it is refused alone,
    at its index in the batch, with its identity hash."""
    bad = purchase("T1-2") | {"points": -1}
    good, refusal = parse_batch(batch("gw1-1", issue("T1-1"), bad)).transactions
    assert isinstance(good, Txn) and isinstance(refusal, TxnRefusal)
    assert (refusal.txn_id, refusal.reason, refusal.position) == ("T1-2", "amount_invalid", 1)
    assert refusal.detail.startswith("transactions[1].points")
    assert refusal.content_hash == content_hash(bad)


def test_a_refusal_detail_is_bounded() -> None:
    """A detail quoting what was sent (a thousand unknown keys) is cut to
    REFUSAL_DETAIL_CHARS_MAX: it is kept with the refusal and its alarm for years."""
    noisy = issue("T1-1") | {f"extra_key_{n}": 0 for n in range(1000)}
    [refusal] = parse_batch(batch("gw1-1", noisy)).transactions
    assert isinstance(refusal, TxnRefusal) and refusal.reason == "field_unknown"
    assert len(refusal.detail) == REFUSAL_DETAIL_CHARS_MAX


def test_amount_bounds_are_protocols_one_definition() -> None:
    """The ledger refuses exactly what the gateway's ingest refuses: amounts and points up
    to protocol/money.py's bounds pass, one more is amount_invalid; and no other module of
    the ledger, the gateway or the protocol writes those bounds again."""
    top = money.AMOUNT_MINOR_MAX
    assert parse_txn(topup("T1-1", amount_minor=top)).amount_minor == top
    assert parse_txn(purchase("T1-2", points=money.POINTS_MAX)).points == money.POINTS_MAX
    for too_much in (topup("T1-1", amount_minor=top + 1),
                     topup("T1-1", amount_minor=top, bonus_minor=1),
                     purchase("T1-2", points=money.POINTS_MAX + 1)):
        with pytest.raises(BatchInvalid) as caught:
            parse_txn(too_much)
        assert caught.value.reason == "amount_invalid"
    assignment = re.compile(r"^\s*(AMOUNT_MINOR_MAX|POINTS_MAX)\s*=", re.MULTILINE)
    written = sorted(
        str(path.relative_to(REPO_ROOT))
        for folder in ("ledger", "gateway", "protocol")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if assignment.search(path.read_text())
    )
    assert written == ["protocol/money.py"]


@pytest.mark.parametrize("body", [b'{"a":1,"a":2}', b"[NaN]", b"[Infinity]", b"\xc3"])
def test_strict_json_decoding(body: bytes) -> None:
    """Duplicate keys, NaN, Infinity and invalid UTF-8 are batch_malformed."""
    with pytest.raises(BatchInvalid) as caught:
        decode_json(body)
    assert caught.value.reason == "batch_malformed"
