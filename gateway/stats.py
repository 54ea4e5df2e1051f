"""Thread-safe counters: what came in, what was stored, what was refused and why; and
latency histograms (authorization), kept as bucket counts so a reader never sees a partial
observation. gateway/metrics.py exports both as they are, nothing counted twice."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the latency histograms' buckets, in seconds (+Inf is implied)."""


@dataclass(frozen=True)
class Histogram:
    """Observations up to each bound of LATENCY_BUCKETS_S (cumulative), all, and their sum."""

    cumulative: tuple[int, ...]
    count: int
    sum_s: float


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sums_s: dict[str, float] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def rejected(self, reason: str) -> None:
        self.add("rejected." + reason)

    def observe(self, name: str, seconds: float) -> None:
        """One observation of the latency `name` (e.g. "auth_seconds")."""
        index = next((i for i, bound in enumerate(LATENCY_BUCKETS_S) if seconds <= bound),
                     len(LATENCY_BUCKETS_S))
        with self._lock:
            buckets = self._buckets.setdefault(name, [0] * (len(LATENCY_BUCKETS_S) + 1))
            buckets[index] += 1
            self._sums_s[name] = self._sums_s.get(name, 0.0) + seconds

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def histograms(self) -> dict[str, Histogram]:
        with self._lock:
            found = {name: (list(buckets), self._sums_s[name])
                     for name, buckets in self._buckets.items()}
        result = {}
        for name, (buckets, sum_s) in found.items():
            cumulative, running = [], 0
            for count in buckets[:-1]:
                running += count
                cumulative.append(running)
            result[name] = Histogram(tuple(cumulative), running + buckets[-1], sum_s)
        return result

    def rejections(self) -> dict[str, int]:
        prefix = "rejected."
        return {k[len(prefix) :]: v for k, v in self.snapshot().items() if k.startswith(prefix)}
