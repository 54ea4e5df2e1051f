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


class FleetConfig:
    def __init__(self, version: int, programs: dict[str, dict[str, Any]],
                 limits: dict[str, int], hotlist: list[str] | None = None) -> None:
        self.version = version
        self.programs = programs
        self.limits = offline.check_limits(limits)
        self.hotlist = sorted(hotlist or [])
        assert len(self.hotlist) <= messages.HOTLIST_MAX, "hotlist beyond one message"

    def sealed_for(self, registry: TerminalRegistry, terminal: str) -> bytes:
        # No time: one version always has the same bytes (docs/protocol.md section 5.7).
        fields = {"terminal": terminal, "config_version": self.version,
                  "limits": self.limits, "programs": self.programs, "hotlist": self.hotlist}
        return sealed.seal(registry.get(terminal).key, messages.TYPE_CONFIG, fields)

    def publish(self, registry: TerminalRegistry, publish: Publish) -> int:
        """Publish (retained) every registered terminal's configuration; returns the count."""
        for terminal in registry.ids():
            merchant = registry.get(terminal).merchant
            topic = topics.down(merchant, terminal, topics.LEAF_CONFIG)
            publish(topic, self.sealed_for(registry, terminal))
        return len(registry.ids())
