"""Thread-safe counters: what came in, what was stored, what was refused and why."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def rejected(self, reason: str) -> None:
        self.add("rejected." + reason)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def rejections(self) -> dict[str, int]:
        prefix = "rejected."
        return {k[len(prefix) :]: v for k, v in self.snapshot().items() if k.startswith(prefix)}
