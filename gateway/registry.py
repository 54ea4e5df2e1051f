"""Which terminals exist, which merchant each belongs to, and the key each signs with.

The registry is a JSON file written by provisioning:
    {"terminals": {"T1": {"merchant": "M1", "key_hex": "<64 hex chars>"}}}
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol.errors import AuthenticationError
from protocol.messages import is_id
from protocol.reasons import TERMINAL_UNKNOWN

TERMINAL_KEY_BYTES = 32


class Terminal:
    __slots__ = ("terminal", "merchant", "key")

    def __init__(self, terminal: str, merchant: str, key: bytes) -> None:
        assert is_id(terminal) and is_id(merchant), "ids are validated at provisioning"
        assert len(key) == TERMINAL_KEY_BYTES, "terminal keys are 32 bytes"
        self.terminal = terminal
        self.merchant = merchant
        self.key = key


class TerminalRegistry:
    def __init__(self, terminals: dict[str, Terminal] | None = None) -> None:
        self._terminals = dict(terminals or {})

    def add(self, terminal: str, merchant: str, key: bytes) -> None:
        self._terminals[terminal] = Terminal(terminal, merchant, key)

    def get(self, terminal: str) -> Terminal:
        found = self._terminals.get(terminal)
        if found is None:
            raise AuthenticationError(TERMINAL_UNKNOWN, terminal)
        return found

    def ids(self) -> list[str]:
        return sorted(self._terminals)

    @classmethod
    def load(cls, path: str | Path) -> TerminalRegistry:
        data = json.loads(Path(path).read_text())
        registry = cls()
        for terminal, entry in data["terminals"].items():
            registry.add(terminal, entry["merchant"], bytes.fromhex(entry["key_hex"]))
        return registry

    def save(self, path: str | Path) -> None:
        data = {
            "terminals": {
                t.terminal: {"merchant": t.merchant, "key_hex": t.key.hex()}
                for t in self._terminals.values()
            }
        }
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
