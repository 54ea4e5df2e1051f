"""scripts/lint_micropython.sh type-checks firmware against MicroPython's own stubs (esp32 and
rp2): a call MicroPython's `machine` or `time` would refuse fails it, and each board module is
checked against its own port only. (`make lint` runs it over firmware/ and protocol/.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "lint_micropython.sh"
LINT_TIMEOUT_S = 120


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *map(str, paths)], capture_output=True,
                          text=True, timeout=LINT_TIMEOUT_S, cwd=REPO_ROOT, check=False)


def firmware_package(tmp_path: Path, modules: dict[str, str]) -> Path:
    """A throwaway `firmware` package (the script reports errors for firmware.* modules)."""
    package = tmp_path / "firmware"
    (package / "boards").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "boards" / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / name).write_text(source)
    return package


def test_code_micropython_accepts_passes_on_both_ports(tmp_path: Path) -> None:
    package = firmware_package(tmp_path, {"good.py": (
        "import time\n\nimport machine\n\n\n"
        "def scan():\n"
        "    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=100_000)\n"
        "    started = time.ticks_ms()\n"
        "    return i2c.scan(), time.ticks_diff(time.ticks_ms(), started)\n"
    )})
    result = lint(package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Success: no issues found") == 2


def test_calls_micropython_would_refuse_fail(tmp_path: Path) -> None:
    package = firmware_package(tmp_path, {"bad.py": (
        "import time\n\nimport machine\n\n\n"
        "def scan():\n"
        "    machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), frequency=100_000)\n"
        "    return time.monotonic()\n"
    )})
    result = lint(package)
    assert result.returncode != 0
    assert 'Unexpected keyword argument "frequency"' in result.stdout
    assert 'Module has no attribute "monotonic"' in result.stdout


def test_a_board_module_is_checked_against_its_own_port_only(tmp_path: Path) -> None:
    # esp32.ULP exists only on the ESP32: fine in an esp32 board, an error in a Pico W board.
    source = "def ulp():\n    import esp32\n\n    return esp32.ULP()\n"
    package = firmware_package(tmp_path, {})
    (package / "boards" / "esp32_probe.py").write_text(source)
    assert lint(package).returncode == 0
    (package / "boards" / "pico_w_probe.py").write_text(source)
    result = lint(package)
    assert result.returncode != 0
    assert "pico_w_probe.py" in result.stdout and "esp32_probe.py" not in result.stdout
