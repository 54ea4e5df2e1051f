"""A pipeline stage: one thread that takes items from a bounded queue until it reads None."""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Stage(Generic[Item]):
    name = "gateway-stage"

    def __init__(self, inbox: queue.Queue[Item | None]) -> None:
        self.inbox = inbox
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            self.handle(item)

    def handle(self, item: Item) -> None:
        raise NotImplementedError
