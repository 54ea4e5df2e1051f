"""Helpers shared by the test suite: real parts started privately for one test run.

- `tests.support.mosquitto`: a private Mosquitto broker on a free loopback port.
- `tests.support.micropython`: run a script on real MicroPython (WebAssembly, under Node).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
