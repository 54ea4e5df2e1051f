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

# COSE_Mac0 around a payload: tag, array, protected, kid (<= 32 bytes), bstr heads, the tag.
ENVELOPE_BYTES_MAX = 96
HOTLIST_TRIM = 8  # cards dropped per try while a configuration does not fit


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
