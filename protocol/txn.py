"""Terminal transactions: kinds, consistency rules, sealing in COSE_Mac0, the hash chain.

A transaction is identified by (terminal, seq): that pair is the idempotency key everywhere.
Each record names the SHA-256 digest of the terminal's previous sealed record (`prev`), so a
gateway can tell a missing, reordered or rewritten record from a resend. The first record of
a terminal names GENESIS_DIGEST.

    seal(key, fields)          -> record bytes (COSE_Mac0 over the deterministic CBOR map)
    open_record(record, key)   -> fields, after MAC, schema and consistency checks
    digest(record)      -> the 32 bytes the next record names as `prev`
    seal_lost(key, terminal, seq, digest) -> the lost notice that takes a lost record's seq
"""

import hashlib

from protocol import messages, sealed
from protocol.errors import ValidationError
from protocol.reasons import AMOUNT_INVALID, FIELD_INVALID, FIELD_MISSING, KIND_UNKNOWN

GENESIS_DIGEST = bytes(32)

KIND_ISSUE = 1
KIND_TOPUP = 2
KIND_PURCHASE = 3
KIND_REFUND = 4
KIND_INQUIRY = 5  # authorization requests only; never journaled
# Written by the gateway, never by a terminal: value or points that expired on a card with no
# operation that day (the program engine's breakage), settled like any record.
KIND_EXPIRE = 6
KIND_CASHOUT = 7  # card value paid out in cash (programs with cash_out = true)

KIND_NAMES = {
    KIND_ISSUE: "issue",
    KIND_TOPUP: "topup",
    KIND_PURCHASE: "purchase",
    KIND_REFUND: "refund",
    KIND_INQUIRY: "inquiry",
    KIND_EXPIRE: "expire",
    KIND_CASHOUT: "cashout",
}
JOURNALED_KINDS = (KIND_ISSUE, KIND_TOPUP, KIND_PURCHASE, KIND_REFUND, KIND_CASHOUT)

# How a transaction was authorized: online (the gateway approved it and, with a ledger, the
# ledger holds its card value), offline (the terminal alone, within its signed limits), or
# stand_in (the gateway approved it on its own card book, the ledger being out of reach).
AUTH_ONLINE = 1
AUTH_OFFLINE = 2
AUTH_STAND_IN = 3
AUTH_MODE_NAMES = {AUTH_ONLINE: "online", AUTH_OFFLINE: "offline", AUTH_STAND_IN: "stand_in"}


EXPIRY_TERMINAL_SUFFIX = ".expiry"
"""A gateway's own expire records come from terminal "<gateway id>.expiry": no terminal id
has a dot, so they never meet a terminal's chain, and the ledger knows them as the gateway's."""


def expiry_terminal(gateway_id):
    """The terminal id of a gateway's own expire records."""
    return gateway_id + EXPIRY_TERMINAL_SUFFIX


def txn_id(terminal, seq):
    """The text form of the idempotency key, used by the gateway and the ledger."""
    return "%s-%d" % (terminal, seq)


def check_consistency(fields):
    """Rules that hold for every transaction whatever the card program.

    issue:    card_value = amount (may be 0 for a points-only card), names its program, no ref
    topup:    card_value = amount + bonus, amount > 0, no ref
    cashout:  card_value = amount > 0 (value paid out in cash), nothing else
    purchase: discount + redeem_minor + card_value <= amount, amount > 0, no bonus;
              redeem_minor > 0 exactly when redeem_points > 0; `split` (true, or left
              out) only here: the card paid card_value, other tender the rest;
              `reward` (an item id) only here: paid in points (redeem_points > 0) and
              other tender, nothing from the card, no discount, not split
    refund:   card_value <= amount + bonus (a refund of a top-up takes its bonus back too),
              amount > 0, no discount, names the original in `ref`
    """
    kind = fields["kind"]
    if kind not in JOURNALED_KINDS:
        raise ValidationError(KIND_UNKNOWN, "kind %r" % (kind,))
    if fields.get("split") is not None and (kind != KIND_PURCHASE or fields["split"] is not True):
        # Left out unless true, so a record's bytes do not depend on how "no" is spelled.
        raise ValidationError(FIELD_INVALID, "split is true on a purchase, else left out")
    if fields.get("reward") is not None and kind != KIND_PURCHASE:
        raise ValidationError(FIELD_INVALID, "reward on a %s" % KIND_NAMES[kind])
    if fields["auth_mode"] not in AUTH_MODE_NAMES:
        raise ValidationError(FIELD_INVALID, "auth_mode")
    amount = fields["amount_minor"]
    card_value = fields["card_value_minor"]
    bonus = fields["bonus_minor"]
    discount = fields.get("discount_minor") or 0
    redeem_points = fields.get("redeem_points") or 0
    redeem_minor = fields.get("redeem_minor") or 0
    if kind != KIND_PURCHASE and (discount or (kind != KIND_REFUND and redeem_points)):
        raise ValidationError(AMOUNT_INVALID, "discount or redemption on a %s" % KIND_NAMES[kind])
    # `is not None`: an empty ref is a ref too (the ledger takes "" as a named original).
    if kind != KIND_REFUND and fields.get("ref") is not None:
        # Only a refund names an original (the ledger's ref_txn_id is a refund's alone).
        raise ValidationError(FIELD_INVALID, "ref on a %s" % KIND_NAMES[kind])
    if kind == KIND_ISSUE:
        if card_value != amount or bonus or fields["points"]:
            raise ValidationError(AMOUNT_INVALID, "issue loads exactly its amount")
        if fields.get("program") is None:
            raise ValidationError(FIELD_MISSING, "program")
        return fields
    if amount == 0:
        raise ValidationError(AMOUNT_INVALID, "amount must be positive")
    if kind == KIND_TOPUP:
        if card_value != amount + bonus or fields["points"]:
            raise ValidationError(AMOUNT_INVALID, "topup loads amount + bonus")
        return fields
    if kind == KIND_CASHOUT:
        if card_value != amount or bonus or fields["points"] or redeem_points:
            raise ValidationError(AMOUNT_INVALID, "a cash-out pays out exactly its amount")
        return fields
    if (redeem_points == 0) != (redeem_minor == 0):
        raise ValidationError(AMOUNT_INVALID, "redeem_points and redeem_minor go together")
    if kind == KIND_PURCHASE:
        if bonus or discount + redeem_minor + card_value > amount:
            raise ValidationError(AMOUNT_INVALID, "discount, points and card exceed the amount")
        if fields.get("reward") is not None and (
                not redeem_points or card_value or discount or fields.get("split")):
            raise ValidationError(AMOUNT_INVALID, "a reward is paid in points and other tender")
        return fields
    if card_value > amount + bonus:
        raise ValidationError(AMOUNT_INVALID, "refund card part exceeds amount + bonus")
    if not fields.get("ref"):
        raise ValidationError(FIELD_MISSING, "ref")
    return fields


def seal(key, fields):
    """Check, encode and MAC a transaction; returns the record bytes a terminal journals."""
    return sealed.seal(key, messages.TYPE_TXN, check_consistency(fields))


def digest(record):
    return hashlib.sha256(record).digest()


def seal_lost(key, terminal, seq, lost_digest):
    """The lost notice for `seq`: the terminal lost the record it sealed there, whose digest
    was `lost_digest` (GENESIS_DIGEST when it cannot tell); it takes the record's place."""
    fields = {"terminal": terminal, "seq": seq, "digest": lost_digest}
    return sealed.seal(key, messages.TYPE_LOST, fields)


def open_record(record, key, mac0=None, terminal=None):
    """Verify and check a record under `key` (looked up by `sealed.peek`); fields by name."""
    fields = sealed.open_message(record, messages.TYPE_TXN, key, mac0, terminal)
    return check_consistency(fields)
