"""Workers started at once on threads, for tests of what runs concurrently."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from ledger.errors import LedgerRejected

JOIN_TIMEOUT_S = 120.0
"""How long a worker may take; one still running after it has hung (a deadlock?)."""


def run_together(workers: list[Callable[[], None]],
                 join_timeout_s: float = JOIN_TIMEOUT_S) -> list[BaseException]:
    """Run the workers on threads started at one barrier; what they raised. A worker that
    does not end within `join_timeout_s` fails the test."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(worker: Callable[[], None]) -> None:
        barrier.wait()
        try:
            worker()
        except BaseException as error:  # collected and asserted by the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(join_timeout_s)
    assert not any(thread.is_alive() for thread in threads), "a worker hung (a deadlock?)"
    return errors


Attempt = tuple[str, Callable[[], object]]
"""A named call a racer makes; the ledger refusing it (LedgerRejected) is an outcome."""


def race(racers: list[list[Attempt]]) -> tuple[list[str], Counter[str]]:
    """Each racer makes its attempts in order, on its own thread, all started at once
    (run_together): the names of the attempts that went through, and how many were
    refused for each reason. Anything else raised fails the test."""
    done: list[str] = []
    refused: Counter[str] = Counter()
    lock = threading.Lock()

    def racer(attempts: list[Attempt]) -> Callable[[], None]:
        def work() -> None:
            for name, attempt in attempts:
                try:
                    attempt()
                except LedgerRejected as refusal:
                    with lock:
                        refused[refusal.reason] += 1
                    continue
                with lock:
                    done.append(name)
        return work

    assert run_together([racer(attempts) for attempts in racers]) == []
    return done, refused
