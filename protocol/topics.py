"""MQTT topic layout of protocol v1.

    tilltap/v1/{merchant}/{terminal}/up/txn       terminal -> gateway  sealed transaction, QoS 1
    tilltap/v1/{merchant}/{terminal}/up/auth      terminal -> gateway  sealed authorization request
    tilltap/v1/{merchant}/{terminal}/up/status    terminal -> gateway  sealed status, retained; will
    tilltap/v1/{merchant}/{terminal}/down/ack     gateway -> terminal  sealed acknowledgement
    tilltap/v1/{merchant}/{terminal}/down/auth    gateway -> terminal  sealed authorization response
    tilltap/v1/{merchant}/{terminal}/down/notice  gateway -> terminal  unsigned rejection notice
    tilltap/v1/{merchant}/{terminal}/down/config  gateway -> terminal  sealed config, retained
    tilltap/v1/{merchant}/{terminal}/down/diag    gateway -> terminal  sealed diag request
    tilltap/v1/{merchant}/{terminal}/up/diag      terminal -> gateway  sealed diag answer

Ids are 1..32 chars of [A-Za-z0-9_-], so they never contain MQTT wildcards or separators.
A broker ACL can confine each terminal to `tilltap/v1/+/<its id>/#`.
"""

from protocol.errors import ValidationError
from protocol.messages import is_id
from protocol.reasons import TOPIC_INVALID

ROOT = "tilltap/v1"
UP = "up"
DOWN = "down"
LEAF_TXN = "txn"
LEAF_AUTH = "auth"
LEAF_STATUS = "status"
LEAF_ACK = "ack"
LEAF_NOTICE = "notice"
LEAF_CONFIG = "config"
LEAF_DIAG = "diag"  # both ways: a technician's request down, the answer up

_UP_LEAVES = (LEAF_TXN, LEAF_AUTH, LEAF_STATUS, LEAF_DIAG)
_DOWN_LEAVES = (LEAF_ACK, LEAF_AUTH, LEAF_NOTICE, LEAF_CONFIG, LEAF_DIAG)


def topic(merchant, terminal, direction, leaf):
    assert is_id(merchant) and is_id(terminal), "ids must be validated before use in topics"
    return "%s/%s/%s/%s/%s" % (ROOT, merchant, terminal, direction, leaf)


def up(merchant, terminal, leaf):
    return topic(merchant, terminal, UP, leaf)


def down(merchant, terminal, leaf):
    return topic(merchant, terminal, DOWN, leaf)


def gateway_subscription(merchant="+"):
    """What a gateway subscribes to: every terminal's uplinks (of one merchant or all)."""
    return "%s/%s/+/%s/#" % (ROOT, merchant, UP)


def gateway_subscriptions(merchant="+"):
    """The same uplinks as (filter, QoS) pairs: records and status at QoS 1, kept by the
    broker while the gateway is away; authorization requests at QoS 0, never kept: one
    that waited is past its terminal's wait, and answering it would only place holds.
    Diag answers too: one that waited is past the technician's wait."""
    return [("%s/%s/+/%s/%s" % (ROOT, merchant, UP, leaf),
             0 if leaf in (LEAF_AUTH, LEAF_DIAG) else 1)
            for leaf in _UP_LEAVES]


def terminal_subscription(merchant, terminal):
    return "%s/%s/%s/%s/#" % (ROOT, merchant, terminal, DOWN)


def parse(name):
    """Split a topic into (merchant, terminal, direction, leaf); ValidationError if foreign."""
    parts = name.split("/")
    if len(parts) != 6 or parts[0] + "/" + parts[1] != ROOT:
        raise ValidationError(TOPIC_INVALID, name[:80])
    merchant, terminal, direction, leaf = parts[2], parts[3], parts[4], parts[5]
    if not is_id(merchant) or not is_id(terminal):
        raise ValidationError(TOPIC_INVALID, name[:80])
    if not (
        (direction == UP and leaf in _UP_LEAVES) or (direction == DOWN and leaf in _DOWN_LEAVES)
    ):
        raise ValidationError(TOPIC_INVALID, name[:80])
    return merchant, terminal, direction, leaf
