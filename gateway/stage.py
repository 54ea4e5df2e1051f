"""A pipeline stage: one thread that takes items from a bounded queue until it reads None.

No thread of the gateway dies alone: every thread it starts (the stages, the sweeps, the
settlement timer, paho's callbacks) runs under `guarded`, and an exception nothing handled
calls `on_death`, by default `exit_process`: the process stops with EXIT_THREAD_DIED, and
the terminals' journals and resends carry what it had not acknowledged to the next start.
A gateway half alive (authorizing, never acking) is worse than one that is down.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
OnDeath = Callable[[str, BaseException], None]

EXIT_THREAD_DIED = 70  # sysexits EX_SOFTWARE: an internal error stopped the gateway

log = logging.getLogger(__name__)


def exit_process(name: str, error: BaseException) -> None:
    """Log why, then end the whole process at once (its threads cannot be trusted now)."""
    log.critical("gateway thread %s died (%s: %s): the gateway stops", name,
                 type(error).__name__, error, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_THREAD_DIED)


def guarded(name: str, target: Callable[[], None], on_death: OnDeath) -> Callable[[], None]:
    """`target`, with any exception it lets out handed to `on_death`."""

    def run() -> None:
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - whatever it was, the thread is gone
            on_death(name, error)

    return run


def thread(name: str, target: Callable[[], None], on_death: OnDeath) -> threading.Thread:
    return threading.Thread(target=guarded(name, target, on_death), name=name, daemon=True)


EMPTY: Any = object()  # take_now's "nothing came"


def take_now(inbox: queue.Queue[Any], gather_s: float = 0.0) -> Any:
    """The inbox's next item without blocking, after waiting `gather_s` once if it is
    empty; EMPTY if nothing came."""
    try:
        return inbox.get_nowait()
    except queue.Empty:
        if not gather_s:
            return EMPTY
    time.sleep(gather_s)
    try:
        return inbox.get_nowait()
    except queue.Empty:
        return EMPTY


class Stage(Generic[Item]):
    """`gather_s` > 0: a stage whose inbox runs dry waits that long once and takes what came
    meanwhile, before it blocks: under load it wakes once for several items, not once per
    item (each wake is a thread switch and a hand-over of the interpreter lock); idle, it
    blocks as before. For stages where that wait costs nothing (records, not answers a
    terminal waits for)."""

    name = "gateway-stage"
    gather_s = 0.0

    def __init__(self, inbox: queue.Queue[Item | None],
                 on_death: OnDeath = exit_process) -> None:
        self.inbox = inbox
        self._thread = thread(self.name, self._run, on_death)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item: Item | None = self.inbox.get()
            while item is not None:
                self.handle(item)
                item = take_now(self.inbox, self.gather_s)
                if item is EMPTY:
                    break
            else:
                return

    def handle(self, item: Item) -> None:
        raise NotImplementedError
