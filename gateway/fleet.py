"""Fleet configuration: each terminal's signed, versioned programs, offline limits, hotlist.

The gateway publishes one sealed configuration per terminal, retained on
`.../down/config`, so a terminal gets the current one whenever it (re)connects. Sealing with
the terminal's own key means nobody else can loosen a terminal's limits; the version number
means an old message replayed later is refused by the terminal (`config_rollback`).
"""

from __future__ import annotations

from typing import Any

from gateway.acks import Publish
from gateway.registry import TerminalRegistry
from protocol import messages, offline, sealed, topics
from protocol.errors import ValidationError
from protocol.reasons import CONFIG_INVALID

# COSE_Mac0 around a payload: tag, array, protected, kid (<= 32 bytes), bstr heads, the tag.
ENVELOPE_BYTES_MAX = 96
HOTLIST_TRIM = 8  # cards dropped per try while a configuration does not fit
# Blocked cards a configuration must still have room for beside its programs: programs that
# leave less would keep a store's blocked cards off its terminals (declined online only).
HOTLIST_ROOM_MIN_CARDS = 16
CONFIG_VERSION_WORST = 2**31 - 1  # the largest version: the most bytes it can take


class ConfigTooLarge(ValidationError):
    """Programs (with the limits) that do not fit a terminal's signed configuration."""


def config_room_bytes(programs: dict[str, dict[str, Any]], limits: dict[str, int]) -> int:
    """Bytes of CONFIG_BYTES_MAX left for the hotlist by these programs and limits, for the
    longest terminal id and version, with HOTLIST_ROOM_MIN_CARDS of the longest card ids
    counted as taken; ConfigTooLarge when that is below zero. Pure: the gateway checks it
    before it starts, `tilltap programs check` with the largest limits."""
    fields = {"terminal": "t" * messages.ID_CHARS_MAX, "config_version": CONFIG_VERSION_WORST,
              "limits": limits, "programs": programs,
              "hotlist": [f"{n:0{messages.ID_CHARS_MAX}d}" for n in range(HOTLIST_ROOM_MIN_CARDS)]}
    size = len(messages.encode(messages.TYPE_CONFIG, fields)) + ENVELOPE_BYTES_MAX
    if size > messages.CONFIG_BYTES_MAX:
        raise ConfigTooLarge(CONFIG_INVALID, (
            f"the programs take {size - messages.CONFIG_BYTES_MAX} bytes too many of a "
            f"terminal's {messages.CONFIG_BYTES_MAX}-byte configuration (room for "
            f"{HOTLIST_ROOM_MIN_CARDS} blocked cards kept): fewer programs, offers or rewards, "
            "or shorter names"))
    return messages.CONFIG_BYTES_MAX - size


class FleetConfig:
    """`hotlist`: every blocked card, the earliest blocked first. The gateway enforces all of
    them; a terminal's configuration carries as many as fit one message (at most
    HOTLIST_MAX, and within CONFIG_BYTES_MAX), so a long hotlist never stops the gateway:
    first the cards this store serves, the most recently blocked first, then the others.

    Why the served ones first: a terminal sells offline only a card it was told about in an
    online answer of this store (firmware `known_cards`, else `offline_card_unknown`), and
    an answer puts the card in this store's card book. A blocked card this store never
    served cannot be sold offline here by a terminal keeping its rules, so a chain's long
    hotlist costs a store only the blocked cards it served (`served`); `hotlist_left_out`
    counts the blocked cards terminals do not get (declined only online)."""

    def __init__(self, version: int, programs: dict[str, dict[str, Any]],
                 limits: dict[str, int], hotlist: list[str] | None = None) -> None:
        self.version = version
        self.programs = programs
        self.limits = offline.check_limits(limits)
        config_room_bytes(programs, self.limits)  # ConfigTooLarge: the gateway does not start
        self.hotlist = list(hotlist or [])
        self.served: set[str] = set()  # blocked cards this store serves: carried first
        self.hotlist_left_out = 0
        # The blocked cards every terminal's configuration of this version carries (a
        # longer terminal id may leave one more out): what a terminal surely knew.
        self.carried: set[str] = set(self.hotlist)

    def sealed_for(self, registry: TerminalRegistry, terminal: str) -> bytes:
        # No time: one version always has the same bytes (docs/protocol.md section 5.7).
        key = registry.get(terminal).key
        ranked = ([card for card in self.hotlist if card not in self.served]
                  + [card for card in self.hotlist if card in self.served])
        carried = ranked[-messages.HOTLIST_MAX:]  # the served ones last: trimmed last
        while True:
            fields = {"terminal": terminal, "config_version": self.version,
                      "limits": self.limits, "programs": self.programs,
                      "hotlist": sorted(carried)}
            payload = messages.encode(messages.TYPE_CONFIG, fields)
            if len(payload) + ENVELOPE_BYTES_MAX <= messages.CONFIG_BYTES_MAX or not carried:
                break
            carried = carried[HOTLIST_TRIM:]  # drop the oldest until it fits
        self.hotlist_left_out = len(self.hotlist) - len(carried)
        self.carried &= set(carried)
        return sealed.seal(key, messages.TYPE_CONFIG, fields)

    def publish(self, registry: TerminalRegistry, publish: Publish,
                served: set[str] | None = None) -> int:
        """Publish (retained) every registered terminal's configuration; returns the count.
        `served`: the blocked cards this store serves (kept from the last call if None).
        `carried` is then what all of them carry."""
        if served is not None:
            self.served = set(served)
        self.carried = set(self.hotlist)
        for terminal in registry.ids():
            merchant = registry.get(terminal).merchant
            topic = topics.down(merchant, terminal, topics.LEAF_CONFIG)
            publish(topic, self.sealed_for(registry, terminal))
        return len(registry.ids())
