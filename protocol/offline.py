"""Offline acceptance within signed limits (pure; the terminal applies it, the docs explain it).

When the gateway does not answer, a terminal may still approve a purchase, but only inside
the limits of its signed configuration:

    txn_minor_max               largest single offline purchase
    card_offline_minor_max      offline total per card until the terminal is back online
    terminal_offline_minor_max  offline total of the terminal until it is back online
    offline_s_max               longest time since the last online contact
    offline_txn_max             most offline transactions until it is back online

All limits default to 0: no configuration, no offline acceptance. The running totals are not
kept separately: they are the offline records still in the journal (records the gateway has
not yet acknowledged), so they survive a power cut and clear when the gateway acks them.
A terminal that restarts while offline accepts nothing offline until it has been online once,
because it cannot know how long it has been cut off.
"""

from protocol.errors import ValidationError
from protocol.money import is_amount
from protocol.reasons import (
    CONFIG_INVALID,
    OFFLINE_AMOUNT_LIMIT,
    OFFLINE_CARD_LIMIT,
    OFFLINE_COUNT_LIMIT,
    OFFLINE_TERMINAL_LIMIT,
    OFFLINE_TIME_LIMIT,
)

LIMIT_KEYS = (
    "txn_minor_max",
    "card_offline_minor_max",
    "terminal_offline_minor_max",
    "offline_s_max",
    "offline_txn_max",
)


def check_limits(limits):
    """Validate a limits map from configuration; returns it with every key present."""
    if not isinstance(limits, dict):
        raise ValidationError(CONFIG_INVALID, "limits is not a map")
    checked = {}
    for key in LIMIT_KEYS:
        value = limits.get(key, 0)
        if not is_amount(value):
            raise ValidationError(CONFIG_INVALID, "limit %s must be an integer >= 0" % key)
        checked[key] = value
    for key in limits:
        if key not in checked:
            raise ValidationError(CONFIG_INVALID, "unknown limit %s" % key)
    return checked


def decide(limits, offline_records, card, amount_minor, now_s, last_online_s):
    """The reason an offline purchase must be declined, or None when it may be approved.

    offline_records: (card, card_value_minor) of every unacknowledged offline record.
    """
    if last_online_s is None or now_s - last_online_s > limits["offline_s_max"]:
        return OFFLINE_TIME_LIMIT
    if amount_minor > limits["txn_minor_max"]:
        return OFFLINE_AMOUNT_LIMIT
    if len(offline_records) + 1 > limits["offline_txn_max"]:
        return OFFLINE_COUNT_LIMIT
    terminal_total = amount_minor
    card_total = amount_minor
    for record_card, value in offline_records:
        terminal_total += value
        if record_card == card:
            card_total += value
    if card_total > limits["card_offline_minor_max"]:
        return OFFLINE_CARD_LIMIT
    if terminal_total > limits["terminal_offline_minor_max"]:
        return OFFLINE_TERMINAL_LIMIT
    return None
