"""Signed hostile messages: real messages, built with the project's encoders, then mutated
and MACed again with the stolen key (pure: a `random.Random` and a `Context` in, bytes out).

Three layers can be mutated:

- the message map (`mutate_item`): a field given the wrong type, a huge or negative
  integer, an unknown kind, a key dropped or added, a seq, prev, time, card, SUN, amount,
  reference, authorization or auth mode that breaks a rule, an offline or stand-in claim
  beyond the signed limits; or the map encoded against the deterministic rules (a key
  twice, keys out of order, a non-shortest head). Each mutation has a name, and a mutant
  carries the names of all it got;
- the payload bytes (`flip_bytes`): bits flipped or bytes overwritten, then MACed again;
- the COSE_Mac0 envelope (`mutate_envelope`): untagged, another tag, another algorithm in
  the protected header (MACed with it), an extra unprotected header, no kid or another
  terminal's, a short tag, an array of another length, a payload of another type.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import cbor, cose, messages, txn
from protocol.hmac256 import hmac_sha256
from tools.fuzz.junk import head, random_item, raw_map

UINT_MAX = 2**64 - 1
AMOUNT_PAST_MAX = 10**12 + 1
FAR_SEQ_MIN = 10**9  # a seq no chain of the campaign reaches: always held, never placed
MUTATIONS_PER_MESSAGE_MAX = 3

# Keys of protocol v1 (docs/protocol.md section 3).
K_TYPE, K_VERSION, K_TERMINAL, K_SEQ, K_PREV, K_TIME = 0, 1, 2, 3, 4, 5
K_MERCHANT, K_CARD, K_KIND, K_CURRENCY, K_AMOUNT, K_CARD_VALUE = 6, 7, 8, 9, 10, 11
K_BONUS, K_POINTS, K_REF, K_PROGRAM, K_AUTH_MODE, K_AUTH_ID = 12, 13, 14, 15, 16, 17
K_SUN, K_PROGRAM_VERSION, K_REQUEST, K_DISCOUNT, K_REDEEM_POINTS, K_REDEEM_MINOR = (
    18, 19, 20, 26, 27, 28)
K_DIGEST, K_STATE = 29, 40
AMOUNT_KEYS = (K_AMOUNT, K_CARD_VALUE, K_BONUS, K_POINTS, K_DISCOUNT, K_REDEEM_POINTS,
               K_REDEEM_MINOR)


@dataclass
class Context:
    """What the attacker knows when it mutates: values that make a mutation meaningful."""

    terminal: str
    now_s: int
    head_seq: int
    honest_cards: list[str] = field(default_factory=list)
    own_cards: list[str] = field(default_factory=list)
    suns: list[str] = field(default_factory=list)  # SUN URLs it read, used or not
    own_txn_ids: list[str] = field(default_factory=list)
    auth_ids: list[str] = field(default_factory=list)  # approvals it was given
    txn_minor_max: int = 0  # the signed offline limit per purchase


Mutator = Callable[[random.Random, dict[Any, Any], Context], "dict[Any, Any] | bytes"]


def _other_type(rng: random.Random) -> Any:
    return rng.choice(("x" * rng.randrange(70), b"\x00" * rng.randrange(40), [1, 2], {1: 2},
                       {"a": 1}, True, False, None, -1, UINT_MAX, cbor.Tag(17, []),
                       cbor.Tag(2, b"\x01")))


def _pick_key(rng: random.Random, item: dict[Any, Any]) -> Any:
    return rng.choice(sorted(item, key=repr)) if item else K_TYPE


def wrong_type(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    item[_pick_key(rng, item)] = _other_type(rng)
    return item


def huge_int(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    key = rng.choice((*AMOUNT_KEYS, K_SEQ, K_TIME, K_KIND, K_AUTH_MODE, K_PROGRAM_VERSION,
                      K_TYPE, K_VERSION, K_REQUEST))
    item[key] = rng.choice((2**31, 2**32, 2**63, UINT_MAX, AMOUNT_PAST_MAX, 10**12))
    return item


def negative(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    key = rng.choice((*AMOUNT_KEYS, K_SEQ, K_TIME, K_KIND, K_AUTH_MODE, K_REQUEST))
    item[key] = rng.choice((-1, -100, -(10**12), -(2**63), -(2**64)))
    return item


def unknown_kind(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    item[K_KIND] = rng.choice((0, txn.KIND_INQUIRY, txn.KIND_EXPIRE, 8, 99, 2**32))
    return item


def drop_key(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    if item:
        del item[_pick_key(rng, item)]
    return item


def extra_key(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    key = rng.choice((K_DIGEST, K_STATE, K_REQUEST, 30, 63, 64, 99, 2**32, -1, "x", "amount"))
    item[key] = rng.choice((0, 1, "x", b"", [], {}))
    return item


def wrong_seq(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    head_seq = ctx.head_seq
    item[K_SEQ] = rng.choice((0, max(1, head_seq), max(1, head_seq - 1), head_seq + 2,
                              head_seq + 3, FAR_SEQ_MIN + rng.randrange(10**9), UINT_MAX))
    return item


def wrong_prev(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    item[K_PREV] = rng.choice((rng.randbytes(32), txn.GENESIS_DIGEST, rng.randbytes(31),
                               rng.randbytes(33), "00" * 32))
    return item


def wrong_time(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    item[K_TIME] = rng.choice((ctx.now_s + 301 + rng.randrange(86_400), 0, 2**32 - 1, UINT_MAX,
                               ctx.now_s - 400 * 86_400))
    return item


def wrong_identity(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """Another merchant, another terminal in the signed payload, or ids that are not ids."""
    if rng.random() < 0.5:
        item[K_MERCHANT] = rng.choice(("M9", "M1 ", "", "M" * 33, "M/1"))
    else:
        item[K_TERMINAL] = rng.choice(("T1", "T2", "TX9", "", "T" * 33, "T#"))
    return item


def wrong_currency(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    item[K_CURRENCY] = rng.choice(("XXZ", "USD", "JPY", "eur", "", "EURO", 978))
    return item


def wrong_card(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """A card of an honest customer (its SUN is not ours), one never issued, another of our
    own (the SUN then names the wrong card), or no card id at all."""
    choices = ["04ffffffffffff", "04:ff", "0" * 33, "04" + rng.randbytes(6).hex()]
    choices += ctx.honest_cards[:8] + ctx.own_cards[:8]
    item[K_CARD] = rng.choice(choices)
    return item


def wrong_sun(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """A SUN read before (replayed), another card's, a forged or malformed one, none."""
    choices = ["https://tilltap.example/c?picc_data=00&cmac=00", "", "x" * 257,
               "https://tilltap.example/c?picc_data=" + "A" * 32 + "&cmac=" + "B" * 16]
    if ctx.suns:
        old = rng.choice(ctx.suns)
        position = rng.randrange(len(old))
        flipped = old[:position] + ("0" if old[position] != "0" else "1") + old[position + 1:]
        choices += [old, flipped]
    item[K_SUN] = rng.choice(choices)
    if rng.random() < 0.2:
        item.pop(K_SUN, None)
    return item


def wrong_amounts(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """Amounts that break the kind's consistency or the program's rules."""
    found = item.get(K_AMOUNT)
    amount: int = (found if isinstance(found, int) and not isinstance(found, bool)
                   and 0 <= found <= AMOUNT_PAST_MAX else 100)
    choice = rng.randrange(7)
    if choice == 0:
        item[K_CARD_VALUE] = amount + rng.choice((1, 1000))
    elif choice == 1:
        item[K_BONUS] = rng.choice((1, amount))
    elif choice == 2:
        item[K_POINTS] = rng.choice((1, 999, 10**6))
    elif choice == 3:
        item[K_DISCOUNT] = rng.choice((1, amount, amount + 1))
    elif choice == 4:
        item[K_REDEEM_POINTS] = rng.choice((1, 500))
        if rng.random() < 0.5:
            item[K_REDEEM_MINOR] = rng.choice((1, 500))
    elif choice == 5:
        item[K_AMOUNT] = 0
    else:
        item[K_AMOUNT] = amount * rng.choice((2, 10, 1000))
    return item


def wrong_program(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    item[K_PROGRAM] = rng.choice(("nosuch", "gift", "prepaid", "loyalty", "vip", "", "p" * 40))
    if rng.random() < 0.3:
        item[K_PROGRAM_VERSION] = rng.choice((0, 2, 999))
    return item


def wrong_ref(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    # Another terminal's sale, one never made, the gateway's own, not an id at all, or one
    # of its own sales (perhaps of another card).
    choices = [f"{ctx.terminal}-999999999", "T1-1", "T2-2", "r" * 65, "", "gw1.expiry-1"]
    choices += ctx.own_txn_ids[-8:]
    item[K_REF] = rng.choice(choices)
    if rng.random() < 0.5:
        item[K_KIND] = txn.KIND_REFUND
    return item


def wrong_auth(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """An approval never given, one given for another sale, a stand-in the gateway did not
    make, an auth mode that does not exist."""
    choices = ["a1-999999", "a999-1", "a" * 65, "", "gw1-a1-1"] + ctx.auth_ids[-8:]
    if rng.random() < 0.6:
        item[K_AUTH_ID] = rng.choice(choices)
    item[K_AUTH_MODE] = rng.choice((txn.AUTH_ONLINE, txn.AUTH_STAND_IN, txn.AUTH_STAND_IN, 0, 4,
                                    2**40))
    return item


def offline_claim(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """An offline approval: within the signed limits or beyond them (amount, kind, points
    redeemed); the gateway re-checks each and the episode's count, totals and time."""
    item[K_AUTH_MODE] = txn.AUTH_OFFLINE
    item.pop(K_AUTH_ID, None)
    choice = rng.randrange(5)
    limit = max(ctx.txn_minor_max, 1)
    if choice == 0:  # beyond the per-purchase limit
        amount = limit + 1 + rng.randrange(limit * 4)
        item.update({K_KIND: txn.KIND_PURCHASE, K_AMOUNT: amount, K_CARD_VALUE: amount})
    elif choice == 1:
        item[K_KIND] = rng.choice((txn.KIND_TOPUP, txn.KIND_ISSUE, txn.KIND_CASHOUT,
                                   txn.KIND_REFUND))
    elif choice == 2:
        item.update({K_REDEEM_POINTS: 10, K_REDEEM_MINOR: 10})
    elif choice == 3:  # old time: offline longer than allowed
        item[K_TIME] = ctx.now_s - rng.choice((7_200, 86_400, 400 * 86_400))
    else:  # within the limits: accepted while the episode's totals allow
        amount = 1 + rng.randrange(limit)
        item.update({K_KIND: txn.KIND_PURCHASE, K_AMOUNT: amount, K_CARD_VALUE: amount})
    return item


def wrong_header(rng: random.Random, item: dict[Any, Any], ctx: Context) -> dict[Any, Any]:
    """Message type or protocol version of another message or none."""
    if rng.random() < 0.6:
        item[K_TYPE] = rng.choice((messages.TYPE_AUTH_REQUEST, messages.TYPE_ACK,
                                   messages.TYPE_STATUS, messages.TYPE_CONFIG,
                                   messages.TYPE_LOST, 0, 9, 99))
    else:
        item[K_VERSION] = rng.choice((0, 2, 99))
    return item


def duplicate_key(rng: random.Random, item: dict[Any, Any], ctx: Context) -> bytes:
    """The map with one key twice (same or another value): never deterministic CBOR."""
    pairs = _sorted_pairs(item)
    if not pairs:
        return raw_map([(cbor.encode(0), cbor.encode(1))] * 2)
    key, value = rng.choice(pairs)
    twin = value if rng.random() < 0.5 else cbor.encode(_other_type(rng))
    index = pairs.index((key, value))
    pairs.insert(index + 1, (key, twin))
    return raw_map(pairs)


def unsorted_keys(rng: random.Random, item: dict[Any, Any], ctx: Context) -> bytes:
    pairs = _sorted_pairs(item)
    if len(pairs) >= 2:
        index = rng.randrange(len(pairs) - 1)
        pairs[index], pairs[index + 1] = pairs[index + 1], pairs[index]
    return raw_map(pairs)


def non_shortest(rng: random.Random, item: dict[Any, Any], ctx: Context) -> bytes:
    """One unsigned integer value written with a longer head than it needs."""
    pairs = _sorted_pairs(item)
    numbers = [i for i, (_, value) in enumerate(pairs)
               if value[0] >> 5 == 0 and cbor.decode(value) < 2**32]
    if numbers:
        index = rng.choice(numbers)
        key, value = pairs[index]
        pairs[index] = (key, head(0, cbor.decode(value), 8))
    return raw_map(pairs)


def junk_value(rng: random.Random, item: dict[Any, Any], ctx: Context) -> bytes:
    """One field's value replaced by raw CBOR junk (floats, undefined, indefinite, ...)."""
    pairs = _sorted_pairs(item)
    if pairs:
        index = rng.randrange(len(pairs))
        pairs[index] = (pairs[index][0], random_item(rng))
    return raw_map(pairs)


def _sorted_pairs(item: dict[Any, Any]) -> list[tuple[bytes, bytes]]:
    pairs = [(cbor.encode(key), cbor.encode(value)) for key, value in item.items()]
    return sorted(pairs)


# name -> (mutator, weight). Weights favour the mutations whose records pass the envelope
# and reach the gateway's rules.
FIELD_MUTATORS: dict[str, tuple[Mutator, int]] = {
    "wrong_type": (wrong_type, 6),
    "huge_int": (huge_int, 5),
    "negative": (negative, 4),
    "unknown_kind": (unknown_kind, 3),
    "drop_key": (drop_key, 4),
    "extra_key": (extra_key, 3),
    "wrong_seq": (wrong_seq, 5),
    "wrong_prev": (wrong_prev, 4),
    "wrong_time": (wrong_time, 3),
    "wrong_identity": (wrong_identity, 3),
    "wrong_currency": (wrong_currency, 3),
    "wrong_card": (wrong_card, 5),
    "wrong_sun": (wrong_sun, 5),
    "wrong_amounts": (wrong_amounts, 8),
    "wrong_program": (wrong_program, 3),
    "wrong_ref": (wrong_ref, 4),
    "wrong_auth": (wrong_auth, 6),
    "offline_claim": (offline_claim, 8),
    "wrong_header": (wrong_header, 2),
    "duplicate_key": (duplicate_key, 3),
    "unsorted_keys": (unsorted_keys, 2),
    "non_shortest": (non_shortest, 2),
    "junk_value": (junk_value, 2),
}
_NAMES = list(FIELD_MUTATORS)
_WEIGHTS = [FIELD_MUTATORS[name][1] for name in _NAMES]


def mutate_item(rng: random.Random, item: dict[Any, Any], ctx: Context
                ) -> tuple[list[str], bytes]:
    """1..MUTATIONS_PER_MESSAGE_MAX mutations of a message map; (their names, payload)."""
    current: dict[Any, Any] = dict(item)
    names: list[str] = []
    for _ in range(rng.randrange(1, MUTATIONS_PER_MESSAGE_MAX + 1)):
        name = rng.choices(_NAMES, _WEIGHTS)[0]
        names.append(name)
        result = FIELD_MUTATORS[name][0](rng, current, ctx)
        if isinstance(result, bytes):
            return names, result
        current = result
    return names, cbor.encode(current)


def flip_bytes(rng: random.Random, payload: bytes) -> bytes:
    """1..4 bits flipped or bytes overwritten, anywhere in the payload."""
    data = bytearray(payload)
    for _ in range(rng.randrange(1, 5)):
        if not data:
            break
        position = rng.randrange(len(data))
        if rng.random() < 0.7:
            data[position] ^= 1 << rng.randrange(8)
        else:
            data[position] = rng.randrange(256)
    return bytes(data)


def seal(key: bytes, payload: bytes, kid: bytes) -> bytes:
    """A well-formed COSE_Mac0 around any payload bytes, MACed under `key`."""
    return cose.create(key, payload, kid)


def _envelope(key: bytes, protected: bytes, unprotected: bytes, payload: bytes,
              tag_bytes: bytes | None = None, cose_tag: int | None = cose.COSE_MAC0_TAG,
              extra: bytes = b"", count: int = 4) -> bytes:
    """A COSE_Mac0 written by hand: the MAC computed over `protected` and `payload`."""
    if tag_bytes is None:
        tag_bytes = hmac_sha256(key, cbor.encode(["MAC0", protected, b"", payload]))
    body = (head(4, count) + cbor.encode(protected) + unprotected + cbor.encode(payload)
            + cbor.encode(tag_bytes) + extra)
    return body if cose_tag is None else head(6, cose_tag) + body


ENVELOPE_MUTATIONS = ("untagged", "other_tag", "double_tag", "alg", "extra_header", "no_kid",
                      "text_kid", "long_kid", "other_kid", "short_tag", "zero_tag",
                      "array_length", "text_payload", "nested")


def mutate_envelope(rng: random.Random, key: bytes, payload: bytes, kid: bytes
                    ) -> tuple[str, bytes]:
    """One envelope mutation around a genuine payload; (its name, the message)."""
    name = rng.choice(ENVELOPE_MUTATIONS)
    protected = cbor.encode({cose.HEADER_ALG: cose.ALG_HMAC_256_256})
    unprotected = cbor.encode({cose.HEADER_KID: kid})
    if name == "untagged":
        return name, _envelope(key, protected, unprotected, payload, cose_tag=None)
    if name == "other_tag":
        return name, _envelope(key, protected, unprotected, payload,
                               cose_tag=rng.choice((16, 18, 96, 97, 98)))
    if name == "double_tag":
        return name, head(6, 17) + _envelope(key, protected, unprotected, payload)
    if name == "alg":
        protected = rng.choice((cbor.encode({1: 4}), cbor.encode({1: 6}), cbor.encode({1: -7}),
                                b"", cbor.encode({}), cbor.encode({1: 5, 4: kid})))
        return name, _envelope(key, protected, unprotected, payload)
    if name == "extra_header":
        extra = rng.choice(({1: 5}, {5: b"\x00" * 12}, {33: b""}, {"x": 1}))
        return name, _envelope(key, protected, cbor.encode({cose.HEADER_KID: kid, **extra}),
                               payload)
    if name == "no_kid":
        return name, _envelope(key, protected, cbor.encode({}), payload)
    if name == "text_kid":
        return name, _envelope(key, protected, cbor.encode({cose.HEADER_KID: kid.decode()}),
                               payload)
    if name == "long_kid":
        return name, _envelope(key, protected, cbor.encode({cose.HEADER_KID: b"T" * 33}),
                               payload)
    if name == "other_kid":
        other = rng.choice((b"T1", b"T2", b"TZ", b"\xff\xfe"))
        return name, _envelope(key, protected, cbor.encode({cose.HEADER_KID: other}), payload)
    if name == "short_tag":
        tag = hmac_sha256(key, cbor.encode(["MAC0", protected, b"", payload]))
        return name, _envelope(key, protected, unprotected, payload, tag[:rng.randrange(32)])
    if name == "zero_tag":
        return name, _envelope(key, protected, unprotected, payload, bytes(32))
    if name == "array_length":
        count = rng.choice((3, 5))
        fifth = b"" if count == 3 else cbor.encode(b"")
        return name, _envelope(key, protected, unprotected, payload, extra=fifth, count=count)
    if name == "text_payload":
        body = (head(4, 4) + cbor.encode(protected) + unprotected
                + cbor.encode(payload.hex()[:64]) + cbor.encode(bytes(32)))
        return name, head(6, 17) + body
    return name, seal(key, seal(key, payload, kid), kid)  # nested
