"""The examples of docs/protocol.md section 8 are the bytes the code produces.

Each example is named in the docs by a fenced block ```hex NAME; this module holds the
fields behind each one, seals them with the project's code and compares. The conformance
suite (tests/conformance/) reads and verifies the same bytes with cbor2 and `cryptography`.
`python -m tests.protocol.test_protocol_examples` prints the section's examples, for a
person updating the docs after a deliberate change."""

from __future__ import annotations

import re
from typing import Any

from protocol import cbor, messages, sealed, txn
from tests.support import REPO_ROOT

KEY = bytes(range(32))
TIME = 1_764_000_000
_ISSUE = {"terminal": "T1", "seq": 1, "prev": txn.GENESIS_DIGEST, "time": TIME,
          "merchant": "M1", "card": "04a1b2c3d4e5f6", "kind": txn.KIND_ISSUE,
          "currency": "EUR", "amount_minor": 5000, "card_value_minor": 5000, "bonus_minor": 0,
          "points": 0, "program": "gift", "auth_mode": txn.AUTH_ONLINE, "auth_id": "a1-1",
          "version": 1}
_ISSUE_BYTES = txn.seal(KEY, _ISSUE)
_PURCHASE = dict(_ISSUE, seq=2, prev=txn.digest(_ISSUE_BYTES), time=TIME + 60,
                 kind=txn.KIND_PURCHASE, amount_minor=1250, card_value_minor=1250,
                 program="gift", auth_id="a1-2")
_PURCHASE_BYTES = txn.seal(KEY, _PURCHASE)

# name -> (message type, fields, sealed?)
EXAMPLES: dict[str, tuple[int, dict[str, Any], bool]] = {
    "txn-issue": (messages.TYPE_TXN, _ISSUE, True),
    "auth-request-purchase": (messages.TYPE_AUTH_REQUEST, {
        "terminal": "T1", "request": 305419896, "seq": 2, "time": TIME + 58,
        "merchant": "M1", "card": "04a1b2c3d4e5f6", "kind": txn.KIND_PURCHASE,
        "currency": "EUR", "amount_minor": 1250, "card_value_minor": 1250}, True),
    "auth-response-approved": (messages.TYPE_AUTH_RESPONSE, {
        "terminal": "T1", "time": TIME + 59, "request": 305419896, "approved": True,
        "program": "gift", "currency": "EUR", "version": 1, "amount_minor": 1250,
        "card_value_minor": 1250, "auth_id": "a1-2", "value_minor": 3750,
        "points_balance": 0, "discount_pct": 0}, True),
    "txn-purchase": (messages.TYPE_TXN, _PURCHASE, True),
    "ack": (messages.TYPE_ACK, {
        "terminal": "T1", "time": TIME + 61, "acked_through": 5,
        "rejected": [[4, "rule_mismatch"]],
        "replayed": [[2, bytes.fromhex("00" * 31 + "01")]]}, True),
    "status-heartbeat": (messages.TYPE_STATUS, {
        "terminal": "T1", "state": "heartbeat", "time": TIME + 120, "journal_depth": 0,
        "firmware": "0.1.0", "refused": 1}, True),
    "notice-unsigned": (messages.TYPE_NOTICE, {"terminal": "T1", "reason": "mac_invalid"},
                        False),
    "notice-sealed": (messages.TYPE_NOTICE, {"terminal": "T1", "seq": 7,
                                             "reason": "field_missing"}, True),
    "config": (messages.TYPE_CONFIG, {
        "terminal": "T1", "config_version": 3,
        "limits": {"txn_minor_max": 2000, "card_offline_minor_max": 5000,
                   "terminal_offline_minor_max": 20000, "offline_s_max": 3600,
                   "offline_txn_max": 20},
        "programs": {"gift": {"id": "gift", "version": 1, "currency": "EUR",
                              "name": "Gift card", "refund_window_days": 90, "points": None,
                              "prepaid": None, "gift": {"expiry_days": 365, "cash_out": False},
                              "discount": None, "tiers": None, "volume": None,
                              "promotions": None, "rewards": None}},
        "hotlist": ["04deadbeef0001"]}, True),
    # Had the terminal lost txn-purchase from its journal, this would take its place.
    "lost": (messages.TYPE_LOST, {"terminal": "T1", "seq": 2,
                                  "digest": txn.digest(_PURCHASE_BYTES)}, True),
}


def example_bytes(name: str) -> bytes:
    message_type, fields, signed = EXAMPLES[name]
    if not signed:
        return messages.encode(message_type, fields)
    return sealed.seal(KEY, message_type, fields)


def documented() -> dict[str, str]:
    doc = (REPO_ROOT / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"^```hex ([a-z-]+)\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
    return {name: "".join(body.split()) for name, body in blocks}


def test_every_example_in_the_docs_is_what_the_code_produces() -> None:
    docs = documented()
    assert set(docs) == set(EXAMPLES)
    for name in EXAMPLES:
        assert docs[name] == example_bytes(name).hex(), name


def test_the_examples_verify_and_decode_back_to_their_fields() -> None:
    for name, (message_type, fields, signed) in EXAMPLES.items():
        data = bytes.fromhex(documented()[name])
        if signed:
            assert sealed.open_message(data, message_type, KEY) == fields
        else:
            assert messages.decode(data, message_type) == fields


def diagnostic(item: Any) -> str:
    """CBOR diagnostic notation (RFC 8949 section 8) of the subset the protocol uses."""
    if isinstance(item, dict):  # in the deterministic order: by the keys' encoded bytes
        pairs = sorted(item.items(), key=lambda pair: cbor.encode(pair[0]))
        return "{" + ", ".join(f"{diagnostic(k)}: {diagnostic(v)}" for k, v in pairs) + "}"
    if isinstance(item, list):
        return "[" + ", ".join(diagnostic(v) for v in item) + "]"
    if isinstance(item, bytes):
        return f"h'{item.hex()}'"
    if isinstance(item, str):
        return '"' + item + '"'
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


def render() -> str:
    """The examples of docs/protocol.md section 8: the message in diagnostic notation, then
    the whole sealed (or plain) bytes, 64 hex digits a line."""
    out = []
    for name, (message_type, fields, signed) in EXAMPLES.items():
        data = example_bytes(name)
        text = data.hex()
        lines = [text[i:i + 64] for i in range(0, len(text), 64)]
        what = "sealed" if signed else "plain CBOR, no envelope"
        out.append(f"**{name}** ({len(data)} bytes, {what}); the message:\n\n```\n"
                   + diagnostic(messages.pack(message_type, fields)) + "\n```\n\n"
                   + f"```hex {name}\n" + "\n".join(lines) + "\n```\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(render())
