"""`tilltap gateway run` with a wall clock that can jump: the gauntlet's clock hook.

    python -m tools.gauntlet.clocked_gateway --clock-file FILE <gateway run options>

Before the gateway is built, `time.time` (and `time.time_ns`) are replaced by the system's
plus an offset in seconds that a thread reads from FILE every CLOCK_POLL_S: an NTP step or
a wrong RTC moves the wall clock, not the monotonic one, and so does this. Nothing in
gateway/ is changed; the gateway's own code sees the jump wherever it reads the wall clock.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

from tools.gateway_run import main as gateway_main

CLOCK_POLL_S = 0.2


class _Offset:
    seconds = 0.0


def _read(path: Path) -> None:
    # No file yet, or one being written: the offset stays.
    with contextlib.suppress(OSError, ValueError):
        _Offset.seconds = float(path.read_text().strip() or 0)


def _follow(path: Path) -> None:
    while True:
        _read(path)
        time.sleep(CLOCK_POLL_S)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["--clock-file"] or len(argv) < 2:
        print("usage: python -m tools.gauntlet.clocked_gateway --clock-file FILE ...",
              file=sys.stderr)
        return 2
    path = Path(argv[1])
    system_time, system_time_ns = time.time, time.time_ns
    time.time = lambda: system_time() + _Offset.seconds
    time.time_ns = lambda: system_time_ns() + int(_Offset.seconds * 1e9)
    _read(path)
    threading.Thread(target=_follow, args=(path,), name="gauntlet-clock", daemon=True).start()
    return gateway_main(argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
