"""Tests run MicroPython through the same runner as the bench and the build: tools.mpy.runner."""

from tools.mpy.runner import (
    MICROPYTHON_PACKAGE_PATH,
    RUNNER_PATH,
    VECTORS_FOLDER,
    MicroPythonFailed,
    MicroPythonResult,
    MicroPythonUnavailable,
    node_binary,
    run_micropython,
)

__all__ = [
    "MICROPYTHON_PACKAGE_PATH",
    "RUNNER_PATH",
    "VECTORS_FOLDER",
    "MicroPythonFailed",
    "MicroPythonResult",
    "MicroPythonUnavailable",
    "node_binary",
    "run_micropython",
]
