"""Configuration versions only go up, and one version always has one content
(docs/protocol.md section 5.7): restarts with the same programs keep the version,
`--config-version` raises it and never lowers it, a change of programs or a hotlist entry
adds one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from tools.demo import DEMO_PROGRAMS


def _version(db: Path, floor: int, programs: dict | None = None,
             limits: dict | None = None) -> int:
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    gateway = Gateway("gw1", "127.0.0.1", 1, str(db), registry, programs or DEMO_PROGRAMS,
                      limits=limits, config_version=floor)
    try:
        version: int = gateway.fleet.version
        sealed_once = gateway.fleet.sealed_for(registry, "T1")
        assert gateway.fleet.sealed_for(registry, "T1") == sealed_once  # no time inside
        return version
    finally:
        gateway.store.close()


def test_the_version_follows_content_and_the_floor_and_never_goes_back(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    assert [_version(db, floor) for floor in (1, 2, 1, 4)] == [1, 2, 2, 4]
    assert _version(db, 1) == 4  # same content: the same version again
    assert _version(db, 1, limits={"txn_minor_max": 500}) == 5  # new limits: + 1
    assert _version(db, 1, limits={"txn_minor_max": 500}) == 5
    changed = {k: dict(v) for k, v in DEMO_PROGRAMS.items() if k != "saver"}
    assert _version(db, 3, programs=changed, limits={"txn_minor_max": 500}) == 6


def test_a_hotlist_entry_is_a_new_version_that_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    gateway = Gateway("gw1", "127.0.0.1", 1, str(db), registry, DEMO_PROGRAMS)
    gateway.mqtt.publish = lambda *args, **kwargs: None  # type: ignore[method-assign]
    assert gateway.fleet.version == 1
    gateway.block_card("04a1a2a3a4a5a6")
    assert gateway.fleet.version == 2
    # Offline sales naming version 2 or later of this card are refused from now on.
    assert gateway.cards.blocked_in == {"04a1a2a3a4a5a6": 2}
    gateway.store.close()
    assert _version(db, 1) == 2


def test_a_long_hotlist_never_stops_the_gateway_and_terminals_get_the_newest_blocks(
        tmp_path: Path) -> None:
    from gateway.store import GatewayStore
    from protocol import messages, sealed

    db = tmp_path / "gw.db"
    store = GatewayStore(str(db))
    for number in range(260):  # 32-character ids: the largest an id can be
        store.block(f"{number:032d}", "reported lost")
    store.close()
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    gateway = Gateway("gw1", "127.0.0.1", 1, str(db), registry, DEMO_PROGRAMS)
    try:
        data = gateway.fleet.sealed_for(registry, "T1")
        assert len(data) <= messages.CONFIG_BYTES_MAX
        carried = sealed.open_message(data, messages.TYPE_CONFIG, bytes(32))["hotlist"]
        assert f"{259:032d}" in carried and f"{0:032d}" not in carried  # the newest go
        assert gateway.fleet.hotlist_left_out == 260 - len(carried) > 0
        assert len(gateway.cards.hotlist) == 260  # the gateway itself declines them all
        # An offline sale is refused for a block only where the terminal knew of it.
        gateway.fleet.publish(registry, lambda topic, payload: None)
        assert gateway.fleet.carried == set(carried)
    finally:
        gateway.store.close()


def test_blocks_made_at_the_ledger_are_applied_once_from_a_kept_cursor(tmp_path: Path) -> None:
    from ledger.errors import LedgerUnavailable

    class Feed:
        def __init__(self) -> None:
            self.changes: list[dict[str, Any]] = []
            self.down = False

        def block_changes(self, since: int = 0) -> dict[str, Any]:
            if self.down:
                raise LedgerUnavailable("down")
            new = [c for c in self.changes if c["id"] > since]
            return {"blocks": new, "next": new[-1]["id"] if new else since}

    db = tmp_path / "gw.db"
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    feed = Feed()

    def gateway() -> Gateway:
        made = Gateway("gw1", "127.0.0.1", 1, str(db), registry, DEMO_PROGRAMS)
        made.mqtt.publish = lambda *args, **kwargs: None  # type: ignore[method-assign]
        made.ledger = feed  # type: ignore[assignment]
        return made

    first = gateway()
    feed.changes = [{"id": 1, "card": "04a1", "blocked": True, "reason": "stolen"},
                    {"id": 2, "card": "04b2", "blocked": True, "reason": "lost"},
                    {"id": 3, "card": "04b2", "blocked": False, "reason": "found"}]
    assert first.follow_blocks_once() == 3
    assert first.fleet.hotlist == ["04a1"] and "04a1" in first.cards.hotlist
    assert first.fleet.version == 4  # one configuration per change
    feed.down = True
    assert first.follow_blocks_once() == 0  # the ledger away: nothing changes, no error
    first.store.close()
    feed.down = False
    restarted = gateway()  # the cursor survives: nothing is applied twice
    assert restarted.follow_blocks_once() == 0 and restarted.fleet.hotlist == ["04a1"]
    restarted.store.close()
