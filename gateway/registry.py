"""Which terminals exist, which merchant each belongs to, and the key each signs with.

The registry is a JSON file written by provisioning:
    {"terminals": {"T1": {"merchant": "M1", "key_hex": "<64 hex chars>"}}}

A running gateway reads it again on SIGHUP (`replace`): terminals added to the file are
served from then on, removed ones refused. Removed terminals stay known for one thing only:
sealing the answer to a message that verified before they were removed (the view
`for_answers` gives the stages that answer), so a reload in the middle of an authorization
never leaves a stage without the key it must answer with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import AuthenticationError
from protocol.messages import is_id
from protocol.reasons import TERMINAL_UNKNOWN

TERMINAL_KEY_BYTES = 32


class RegistryInvalid(ValueError):
    """A registry file that cannot be used: not JSON, or an entry of the wrong shape. Its
    text names the entry, never a key."""


class Terminal:
    __slots__ = ("terminal", "merchant", "key")

    def __init__(self, terminal: str, merchant: str, key: bytes) -> None:
        assert is_id(terminal) and is_id(merchant), "ids are validated at provisioning"
        assert len(key) == TERMINAL_KEY_BYTES, "terminal keys are 32 bytes"
        self.terminal = terminal
        self.merchant = merchant
        self.key = key


@dataclass(frozen=True)
class RegistryChange:
    """What a `replace` changed, by terminal id."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  # another merchant or key
    terminals: int  # registered after it


class TerminalRegistry:
    def __init__(self, terminals: dict[str, Terminal] | None = None) -> None:
        # Replaced whole, never changed in place (but by `add` while it is built): a reader
        # on another thread sees the old map or the new one, without a lock.
        self._terminals = dict(terminals or {})
        self._retired: dict[str, Terminal] = {}  # removed by a `replace`: answers only

    def add(self, terminal: str, merchant: str, key: bytes) -> None:
        self._terminals[terminal] = Terminal(terminal, merchant, key)

    def get(self, terminal: str) -> Terminal:
        found = self._terminals.get(terminal)
        if found is None:
            raise AuthenticationError(TERMINAL_UNKNOWN, terminal)
        return found

    def ids(self) -> list[str]:
        return sorted(self._terminals)

    def replace(self, other: TerminalRegistry) -> RegistryChange:
        """Take `other`'s terminals as this registry's, at once; what changed."""
        old, new = self._terminals, dict(other._terminals)
        changed = tuple(sorted(t for t in old.keys() & new.keys()
                               if (old[t].merchant, old[t].key) != (new[t].merchant, new[t].key)))
        removed = tuple(sorted(old.keys() - new.keys()))
        retired = {t: e for t, e in self._retired.items() if t not in new}
        retired.update({t: old[t] for t in removed})
        self._retired = retired
        self._terminals = new
        return RegistryChange(tuple(sorted(new.keys() - old.keys())), removed, changed,
                              len(new))

    def for_answers(self) -> TerminalRegistry:
        """This registry, as the stages that seal answers see it: a terminal removed by a
        reload is still found (its key seals the answer to what it sent before)."""
        return _AnswerView(self)

    @classmethod
    def load(cls, path: str | Path) -> TerminalRegistry:
        """The registry in `path`: OSError if it cannot be read, RegistryInvalid if it is
        not one (checked whole: no entry of a bad file is taken)."""
        try:
            data = json.loads(Path(path).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RegistryInvalid(f"not JSON: {error}") from None
        except RecursionError:  # nested deeper than the parser goes: no registry either
            raise RegistryInvalid("not JSON: nested too deep") from None
        entries = data.get("terminals") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise RegistryInvalid('no "terminals" object')
        registry = cls()
        for terminal, entry in entries.items():
            merchant, key = _entry(terminal, entry)
            registry.add(terminal, merchant, key)
        return registry

    def save(self, path: str | Path) -> None:
        data = {
            "terminals": {
                t.terminal: {"merchant": t.merchant, "key_hex": t.key.hex()}
                for t in self._terminals.values()
            }
        }
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))


class _AnswerView(TerminalRegistry):
    """`TerminalRegistry.for_answers`: reads through to the registry it views."""

    def __init__(self, registry: TerminalRegistry) -> None:
        super().__init__()
        self._registry = registry

    def add(self, terminal: str, merchant: str, key: bytes) -> None:
        self._registry.add(terminal, merchant, key)

    def get(self, terminal: str) -> Terminal:
        found = (self._registry._terminals.get(terminal)
                 or self._registry._retired.get(terminal))
        if found is None:
            raise AuthenticationError(TERMINAL_UNKNOWN, terminal)
        return found

    def ids(self) -> list[str]:
        return self._registry.ids()

    def replace(self, other: TerminalRegistry) -> RegistryChange:
        return self._registry.replace(other)

    def for_answers(self) -> TerminalRegistry:
        return self

    def save(self, path: str | Path) -> None:
        self._registry.save(path)


def _entry(terminal: object, entry: object) -> tuple[str, bytes]:
    """(merchant, key) of one entry, checked: ids as provisioning makes them, a 32-byte
    key in hex. RegistryInvalid names the terminal, never the key."""
    name = repr(terminal)[:80]
    if not isinstance(terminal, str) or not is_id(terminal):
        raise RegistryInvalid(f"terminal {name}: not a valid id")
    if not isinstance(entry, dict):
        raise RegistryInvalid(f"terminal {name}: not an object")
    merchant, key_hex = entry.get("merchant"), entry.get("key_hex")
    if not isinstance(merchant, str) or not is_id(merchant):
        raise RegistryInvalid(f"terminal {name}: merchant missing or not a valid id")
    try:
        key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
    except ValueError:
        key = b""
    if len(key) != TERMINAL_KEY_BYTES:
        raise RegistryInvalid(f"terminal {name}: key_hex is not {TERMINAL_KEY_BYTES} bytes "
                              "in hex")
    return merchant, key
