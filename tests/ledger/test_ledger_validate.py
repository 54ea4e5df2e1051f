"""Validation and content hashing of batches, without a database."""

from __future__ import annotations

import json

import pytest

from ledger.errors import BatchInvalid
from ledger.model import content_hash
from ledger.server import decode_json
from ledger.validate import parse_batch
from tests.ledger.builders import batch, issue, purchase, refund, topup


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
    """Ids are visible ASCII only, so they are safe in URLs, logs and the canonical hash."""
    with pytest.raises(BatchInvalid) as caught:
        parse_batch(batch("gw1-1", issue("T1-1", card="kärtchen")))
    assert caught.value.reason == "field_invalid"


def test_details_name_the_transaction_and_field() -> None:
    """A rejection's detail points at the transaction index and field."""
    with pytest.raises(BatchInvalid) as caught:
        parse_batch(batch("gw1-1", issue("T1-1"), purchase("T1-2") | {"points": -1}))
    assert caught.value.detail.startswith("transactions[1].points")


@pytest.mark.parametrize("body", [b'{"a":1,"a":2}', b"[NaN]", b"[Infinity]", b"\xc3"])
def test_strict_json_decoding(body: bytes) -> None:
    """Duplicate keys, NaN, Infinity and invalid UTF-8 are batch_malformed."""
    with pytest.raises(BatchInvalid) as caught:
        decode_json(body)
    assert caught.value.reason == "batch_malformed"
