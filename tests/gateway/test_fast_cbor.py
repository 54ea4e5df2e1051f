"""The verify stage's fast path (gateway/fast_cbor.py) reads exactly what the general path
reads: over generated records, mutations of them and arbitrary CBOR items it either answers
None (the general path then decides) or the same values, of the same types, as
`cbor.decode`, `sealed.peek` and `cose.Mac0.verify`, and as cbor2; and every well-formed
record takes it."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import fast_cbor
from protocol import cbor, cose, messages, sealed, txn
from protocol.errors import AuthenticationError, ProtocolError
from protocol.money import AMOUNT_MINOR_MAX
from protocol.reasons import MAC_INVALID

KEY = bytes(range(32))
UINT_MAX = 2**64 - 1

_ids = st.text(alphabet=messages._ID_CHARS, min_size=1, max_size=messages.ID_CHARS_MAX)
_BY_KIND: dict[str, st.SearchStrategy[Any]] = {
    "uint": st.integers(0, UINT_MAX),
    "amount": st.integers(0, AMOUNT_MINOR_MAX),
    "id": _ids,
    "text": st.text(max_size=messages.TEXT_CHARS_MAX),
    "currency": st.just("EUR"),
    "digest": st.binary(min_size=32, max_size=32),
    "bool": st.booleans(),
    "sun": st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=128),
}


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, str]:
    """A record as a terminal seals it, every optional field present or not: (bytes, its
    terminal). Not checked for consistency: the decoder reads what the rules refuse too."""
    fields: dict[str, Any] = {}
    for _, name, kind, required in messages.SCHEMAS[messages.TYPE_TXN]:
        if required or draw(st.booleans()):
            fields[name] = draw(_BY_KIND[kind])
    fields["terminal"] = draw(_ids)
    payload = messages.encode(messages.TYPE_TXN, fields)
    return cose.create(KEY, payload, fields["terminal"].encode()), fields["terminal"]


_scalars = (st.none() | st.booleans() | st.integers(-(2**64), UINT_MAX)
            | st.binary(max_size=300) | st.text(max_size=30))
_items = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.integers(-30, 300) | st.text(max_size=3), children, max_size=30)
    | st.builds(cbor.Tag, st.integers(0, 30), children),
    max_leaves=30)
_maps = st.dictionaries(st.integers(0, 300), _scalars, max_size=30)


def _mutated(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """`data` with each edit (what, where, byte) applied: replace, insert, delete or cut."""
    out = bytearray(data)
    for what, where, byte in edits:
        at = where % (len(out) + 1)
        if what == 0 and at < len(out):
            out[at] = byte
        elif what == 1:
            out.insert(at, byte)
        elif what == 2 and at < len(out):
            del out[at]
        elif what == 3:
            del out[at:]
    return bytes(out)


_edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2000), st.integers(0, 255)),
                  min_size=1, max_size=3)


def _generic_map(data: bytes) -> Any:
    """What the general decoder makes of `data`, or the DecodeError it raises."""
    try:
        return cbor.decode(data)
    except ProtocolError as error:
        return error


def _assert_map_agrees(data: bytes) -> dict[int, Any] | None:
    fast = fast_cbor.flat_map(data)
    generic = _generic_map(data)
    if fast is None:
        return None
    assert not isinstance(generic, ProtocolError), (data.hex(), generic)
    assert list(fast.items()) == list(generic.items())
    # Python's True == 1 and b"" == b"": the types must agree too.
    assert [type(value) for value in fast.values()] == [type(v) for v in generic.values()]
    assert cbor2.loads(data) == fast
    return fast


def _generic_envelope(data: bytes) -> Any:
    try:
        return sealed.peek(data)
    except ProtocolError as error:
        return error


def _assert_envelope_agrees(data: bytes) -> fast_cbor.Envelope | None:
    fast = fast_cbor.envelope(data)
    generic = _generic_envelope(data)
    if fast is None:
        return None
    assert not isinstance(generic, ProtocolError), (data.hex(), generic)
    mac0, terminal = generic
    assert (fast.payload, fast.tag, fast.terminal) == (mac0.payload, mac0.tag, terminal)
    for key in (KEY, bytes(32)):
        assert _outcome(lambda k=key: fast.verify(k)) == _outcome(lambda k=key: mac0.verify(k))
    return fast


def _outcome(call: Any) -> Any:
    try:
        return call()
    except AuthenticationError as error:
        return (error.reason, error.detail)


@settings(max_examples=300, deadline=None)
@given(records())
def test_every_record_takes_the_fast_path_and_reads_as_the_general_path(
        record: tuple[bytes, str]) -> None:
    data, terminal = record
    if len(data) > messages.MESSAGE_BYTES_MAX:  # refused for its size before it is read
        assert fast_cbor.envelope(data) is None
        return
    fast = _assert_envelope_agrees(data)
    assert fast is not None and fast.terminal == terminal
    assert fast.verify(KEY) == fast.payload
    assert _assert_map_agrees(fast.payload) is not None


@settings(max_examples=300, deadline=None)
@given(records(), _edits)
def test_a_mutated_record_reads_as_the_general_path_or_goes_to_it(
        record: tuple[bytes, str], edits: list[tuple[int, int, int]]) -> None:
    data, _ = record
    _assert_envelope_agrees(_mutated(data, edits))
    payload = sealed.peek(data)[0].payload
    _assert_map_agrees(_mutated(payload, edits))


@settings(max_examples=200, deadline=None)
@given(_maps | _items)
def test_any_item_reads_as_the_general_path_or_goes_to_it(item: Any) -> None:
    data = cbor.encode(item)
    fast = _assert_map_agrees(data)
    if isinstance(item, dict) and all(not isinstance(value, (list, dict, cbor.Tag))
                                      for value in item.values()):
        # A flat map of small unsigned keys is the fast path's own: it must not go by.
        small = all(isinstance(key, int) and 0 <= key < 256 for key in item)
        assert (fast is not None) == small


@given(st.binary(max_size=80))
def test_arbitrary_bytes_read_as_the_general_path_or_go_to_it(data: bytes) -> None:
    _assert_map_agrees(data)
    _assert_envelope_agrees(data)
    _assert_envelope_agrees(bytes.fromhex("d18443a10105a104") + data)


@pytest.mark.parametrize("detail", ["tag", "payload", "key"])
def test_a_forged_record_fails_its_mac_on_the_fast_path_as_on_the_general(
        detail: str) -> None:
    fields = {"terminal": "T1", "seq": 7, "prev": bytes(32), "time": 1, "merchant": "M1",
              "card": "04aa", "kind": txn.KIND_PURCHASE, "currency": "EUR",
              "amount_minor": 500, "card_value_minor": 0, "bonus_minor": 0, "points": 5,
              "auth_mode": txn.AUTH_ONLINE}
    data = bytearray(txn.seal(KEY, fields))
    key = KEY
    if detail == "tag":
        data[-1] ^= 1
    elif detail == "payload":
        data[-40] ^= 1  # the payload's last byte, before the tag's 2-byte head and 32 bytes
    else:
        key = bytes(32)
    fast = fast_cbor.envelope(bytes(data))
    assert fast is not None
    with pytest.raises(AuthenticationError) as caught:
        fast.verify(key)
    assert caught.value.reason == MAC_INVALID
    with contextlib.suppress(ProtocolError), pytest.raises(AuthenticationError):
        sealed.peek(bytes(data))[0].verify(key)


@st.composite
def _widened(draw: st.DrawFn) -> bytes:
    """A flat map with one value's head written wider than it needs (any width), or its
    key's: what a strict decoder must refuse, however its loop is written."""
    item = draw(st.dictionaries(st.integers(0, 255), st.integers(0, UINT_MAX)
                                | st.binary(max_size=300), min_size=1, max_size=30))
    keys = sorted(item)
    index = draw(st.integers(0, len(keys) - 1))
    out = bytearray(bytes((0xB8, len(keys))) if len(keys) >= 24 else bytes((0xA0 | len(keys),)))
    for position, key in enumerate(keys):
        value = item[key]
        head_major = 0 if isinstance(value, int) else 2
        argument = value if isinstance(value, int) else len(value)
        widen = position == index
        if widen and draw(st.booleans()) and key < 24:
            out += bytes((24, key))  # the key one byte wider
            widen = False
        else:
            out += cbor.encode(key)
        shortest = (0 if argument < 24 else 1 if argument < 0x100 else 2 if argument < 0x10000
                    else 4 if argument < 2**32 else 8)
        width = draw(st.sampled_from([w for w in (1, 2, 4, 8) if w > shortest])) if (
            widen and shortest < 8) else shortest
        info = argument if width == 0 else 23 + width.bit_length()
        out.append(head_major << 5 | info)
        if width:
            out += argument.to_bytes(width, "big")
        if not isinstance(value, int):
            out += value
    return bytes(out)


@given(_widened())
def test_a_head_wider_than_it_needs_goes_to_the_general_path(data: bytes) -> None:
    generic = _generic_map(data)
    fast = _assert_map_agrees(data)
    assert (fast is None) == isinstance(generic, ProtocolError)
