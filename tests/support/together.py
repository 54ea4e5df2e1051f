"""Workers started at once on threads, for tests of what runs concurrently."""

from __future__ import annotations

import threading
from collections.abc import Callable

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
