"""Small parts the program engine shares: balanced legs, refund shares, op fields, state copies.

A leg is `[account, unit, amount, cause]`, its account one of `protocol.accounts`: positive
is a debit, negative a credit (the ledger's convention, docs/ledger.md). Legs are only ever
written in pairs by `move`, so the legs of every operation sum to zero in every unit by
construction.
"""

from protocol import money
from protocol.errors import ValidationError
from protocol.reasons import AMOUNT_INVALID, FIELD_INVALID, FIELD_MISSING

OP_ID_LENGTH_MAX = 64
CHANGED_SALES = "_changed_sales"  # in a working copy only, never in a state apply returns


def move(legs, debit, credit, unit, amount, cause):
    """Append the two legs of `amount` moving from `credit` into `debit`; nothing for 0."""
    assert isinstance(amount, int) and amount >= 0, "moves are non-negative"
    if amount:
        legs.append([debit, unit, amount, cause])
        legs.append([credit, unit, -amount, cause])


def share(total, amount, before, after):
    """The part of `total` reversed by refunding `before`..`after` of a sale of `amount`.

    What the sale keeps, total * (amount - refunded) / amount, is rounded down, and each
    refund takes the difference: the parts of all refunds of a sale sum to exactly `total`.
    """
    return total * (amount - before) // amount - total * (amount - after) // amount


def apportion(amount, parts, steps):
    """Split `amount` over `parts` in proportion, by largest remainder (named rule
    LARGEST_REMAINDER): the shares add up to `amount` exactly, each at most its part.

    `steps[i]` is the smallest share part i can take (its part is a multiple of it): 1 for
    minor units, the value of one point for points. Each part first takes the whole steps of
    its exact share rounded down; what is left goes one step at a time to the parts with the
    largest remainders (ties: the earlier part). A remainder smaller than a points part's
    step goes to parts counted in minor units. Returns None when no split exists (every part
    with room is counted in steps larger than what is left).
    """
    whole = 0
    for part in parts:
        whole += part
    assert 0 <= amount <= whole, "an amount within its parts"
    if amount == whole:
        return list(parts)
    shares = []
    order = []
    for index in range(len(parts)):
        step = steps[index]
        exact = (parts[index] // step) * amount  # in steps, times `whole`
        shares.append(exact // whole * step)
        order.append((-(exact % whole) * step, index))
    order.sort()
    left = amount
    for share_ in shares:
        left -= share_
    for remainder, index in order:
        step = steps[index]
        if remainder and left >= step and shares[index] + step <= parts[index]:
            shares[index] += step
            left -= step
    for _, index in order:
        if left and steps[index] == 1:
            taken = min(left, parts[index] - shares[index])
            shares[index] += taken
            left -= taken
    while left:
        # The minor-unit parts are full: a points part takes one more step, and the minor
        # units it takes beyond what is left come back off the minor-unit parts.
        for _, index in order:
            step = steps[index]
            if step > 1 and shares[index] + step <= parts[index] and \
                    step - left <= _minor_shares(shares, steps):
                shares[index] += step
                over = step - left
                left = max(0, left - step)
                for _, minor in reversed(order):
                    if over > 0 and steps[minor] == 1:
                        back = min(over, shares[minor])
                        shares[minor] -= back
                        over -= back
                break
        else:
            return None
    return shares


def _minor_shares(shares, steps):
    total = 0
    for index in range(len(shares)):
        if steps[index] == 1:
            total += shares[index]
    return total


def read_amount(op, key, default=None):
    """op[key] as an amount; `default` when absent; amount_invalid for floats, bools, < 0."""
    if key not in op:
        if default is None:
            raise ValidationError(FIELD_MISSING, key)
        return default
    value = op[key]
    if not money.is_amount(value):
        raise ValidationError(AMOUNT_INVALID, "%s must be an integer in 0..AMOUNT_MINOR_MAX" % key)
    return value


def read_id(op, key):
    value = op.get(key)
    if value is None:
        raise ValidationError(FIELD_MISSING, key)
    if not isinstance(value, str) or not 0 < len(value) <= OP_ID_LENGTH_MAX:
        raise ValidationError(FIELD_INVALID, key + " must be a text of 1..64 characters")
    return value


def copy_state(value):
    """A deep copy of plain data (dicts, lists, scalars): a working copy of a card's state."""
    if isinstance(value, dict):
        return {key: copy_state(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_state(item) for item in value]
    return value


def working_copy(state):
    """The copy of a card's state an operation works on (copy-on-write for the sales).

    A card's sales (kept for the refund window) are most of its state and an operation
    changes one or two of them: the sales map is copied but its sale records are shared
    until `own_sale` copies the one about to change. The points lots are shared the same
    way (engine_points replaces a lot rather than change it). Everything else is copied
    whole. So
    an operation costs what it touches, not the card's history, and the state it was given
    is never changed.
    """
    copy = dict(state)
    for key, item in state.items():
        if key == "sales":
            copy[key] = dict(item)
        elif key == "lots":
            copy[key] = list(item)  # lots are replaced, never changed in place
        else:
            copy[key] = copy_state(item)
    copy[CHANGED_SALES] = []
    return copy


def own_sale(state, sale_id):
    """The sale record `sale_id` of a working copy, copied before anything changes it
    (None when the card no longer remembers the sale)."""
    sales = state["sales"]
    sale = sales.get(sale_id)
    if sale is not None:
        sale = sales[sale_id] = copy_state(sale)
        note_sale(state, sale_id)
    return sale


def note_sale(state, sale_id):
    """Note that the operation added, changed or forgot sale `sale_id` (effects say which:
    `sales_changed`, so a store writes those and not the card's whole history)."""
    changed = state.get(CHANGED_SALES)
    if changed is not None:
        changed.append(sale_id)


def value_terms(program):
    """The program's stored-value section (prepaid or gift), or None for points/discount only."""
    return program["prepaid"] or program["gift"]


def add_to(effects, key, amount):
    if amount:
        effects[key] = effects.get(key, 0) + amount
