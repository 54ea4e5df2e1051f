"""`tilltap firmware build` / `deploy`: the folder a board gets, proved on real MicroPython,
and the exact mpremote command lines (checked against mpremote's own parsers; no board here);
a build stopped half-way (Ctrl-C, SIGKILL) leaves nothing that blocks the next.
Also the board modules' peripherals, built against a fake `machine`."""

from __future__ import annotations

import argparse
import json
import signal
import stat
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT
from tests.support.micropython import run_micropython
from tools import firmware
from tools.cli import main

BOARDS = ("esp32_pn532", "pico_w_pn532")
KEY_HEX = "5ec2e7" + "ab" * 29
CONFIG = {
    "terminal": "t-0001", "merchant": "m-01", "currency": "EUR", "key_hex": KEY_HEX,
    "wifi_ssid": "shop", "wifi_password": "wifi-secret-9", "broker_host": "192.0.2.10",
    "broker_port": 1883, "programs": {}, "broker_tls": False,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> firmware.BuildReport:
    return firmware.build("esp32_pn532", tmp_path_factory.mktemp("build") / "firmware")


def firmware_modules() -> set[str]:
    """lib/ paths of every firmware module but the boards and the manifest: a board needs all."""
    paths = set()
    for source in (REPO_ROOT / "firmware").rglob("*.py"):
        relative = source.relative_to(REPO_ROOT)
        if "__pycache__" in relative.parts or relative.as_posix() == "firmware/manifest.py":
            continue
        if relative.parent.as_posix() == "firmware/boards" and relative.stem != "__init__":
            continue
        paths.add("lib/" + relative.with_suffix(".mpy").as_posix())
    return paths


# Gateway- and technician-side protocol code that must stay off a board's flash. (A board
# does ship protocol/programs.py, to refuse a bad pushed program itself, and the engine's
# pricing parts behind protocol/engine_offline.py, to quote offline sales.)
NOT_ON_A_BOARD = ("lib/protocol/keys.mpy", "lib/protocol/ntag424_auth.mpy",
                  "lib/protocol/engine.mpy", "lib/protocol/engine_adopt.mpy")


def test_build_compiles_what_the_board_imports_and_ships_the_board_as_source(
        built: firmware.BuildReport) -> None:
    out = built.out_dir
    mpy_files = {path for path in built.files if path.endswith(".mpy")}
    assert firmware_modules() <= mpy_files
    assert {"lib/protocol/cbor.mpy", "lib/protocol/offline.mpy"} <= mpy_files
    assert not mpy_files & set(NOT_ON_A_BOARD)
    assert not [path for path in built.files if "pico_w" in path or "esp32_pn532.mpy" in path]
    assert (out / "board.py").read_text() == (
        REPO_ROOT / "firmware" / "boards" / "esp32_pn532.py").read_text()
    assert (out / "main.py").read_text() == firmware.MAIN_PY
    assert not (out / "config.json").exists()
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()) \
        == sorted([*built.files, "build.json"])


def test_build_json_lists_every_file_with_its_size_and_the_mpy_total(
        built: firmware.BuildReport) -> None:
    out = built.out_dir
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["board"] == "esp32_pn532"
    assert manifest["micropython_lib"] == ["umqtt.simple"]
    for path, size in manifest["files"].items():
        assert (out / path).stat().st_size == size, path
    mpy_total = sum((out / path).stat().st_size for path in manifest["files"]
                    if path.endswith(".mpy"))
    assert manifest["mpy_bytes_total"] == mpy_total > 0
    assert set(manifest["files"]) == set(built.files)


def test_every_built_module_imports_from_its_mpy_on_micropython(
        built: firmware.BuildReport) -> None:
    lib = built.out_dir / "lib"
    modules = sorted(path[len("lib/"):-len(".mpy")].replace("/", ".").removesuffix(".__init__")
                     for path in built.files if path.endswith(".mpy"))
    script = (
        f"for name in {modules!r}:\n"
        "    module = __import__(name, None, None, ['x'])\n"
        "    assert module.__file__.endswith('.mpy'), module.__file__\n"
        "import board\n"
        "print(len(" + repr(modules) + "), board.NAME, board.PN532_INTERFACE)\n"
    )
    result = run_micropython(
        script,
        libs={"protocol": lib / "protocol", "firmware": lib / "firmware"},
        files={"/lib/board.py": built.out_dir / "board.py"},
    ).check()
    assert result.stdout == f"{len(modules)} esp32_pn532 i2c\n"


def test_every_mpy_is_portable_bytecode_for_micropython_1_22_and_later(
        built: firmware.BuildReport) -> None:
    # Header: "M", .mpy major version 6 (MicroPython 1.19+), arch 0 = bytecode only (the
    # sub-version is checked only for native code), 31-bit small ints as on ESP32 and RP2040.
    for path in built.files:
        if path.endswith(".mpy"):
            header = (built.out_dir / path).read_bytes()[:4]
            assert (header[0:2], header[2] >> 2, header[3]) == (b"M\x06", 0, 31), path


@pytest.mark.parametrize("board", BOARDS)
def test_each_board_builds(board: str, tmp_path: Path) -> None:
    report = firmware.build(board, tmp_path / "out")
    assert report.board == board
    assert (tmp_path / "out" / "board.py").read_text().count(f'NAME = "{board}"') == 1


def test_build_and_deploy_default_to_build_firmware_under_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["firmware", "build", "--board", "pico_w_pn532"]) == 0
    assert (tmp_path / "build" / "firmware" / "lib" / "protocol" / "__init__.mpy").is_file()
    assert main(["firmware", "deploy", "--port", "/dev/ttyACM0", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "built pico_w_pn532 in build/firmware: " in printed
    assert "fs cp -r build/firmware/lib/protocol build/firmware/lib/firmware :/lib" in printed


def test_an_unknown_board_exits_2_and_names_the_known_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["firmware", "build", "--board", "esp8266", "--out", str(tmp_path / "out")])
    assert status == 2
    error = capsys.readouterr().err
    assert "unknown board 'esp8266'" in error
    for board in BOARDS:
        assert board in error
    assert not (tmp_path / "out").exists()


def test_the_config_is_copied_private_and_never_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "t-0001.json"
    config_file.write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    status = main(["firmware", "build", "--board", "pico_w_pn532", "--out", str(out),
                   "--config", str(config_file)])
    assert status == 0
    printed = capsys.readouterr()
    for secret in (KEY_HEX, CONFIG["wifi_password"]):
        assert secret not in printed.out + printed.err
        assert secret not in (out / "build.json").read_text()
    assert json.loads((out / "config.json").read_text()) == CONFIG
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o600
    assert "config.json" in json.loads((out / "build.json").read_text())["files"]


def test_a_config_missing_fields_exits_2_naming_fields_not_values(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "partial.json"
    config_file.write_text(json.dumps({"terminal": "t-0001", "key_hex": KEY_HEX}))
    status = main(["firmware", "build", "--board", "esp32_pn532", "--out",
                   str(tmp_path / "out"), "--config", str(config_file)])
    assert status == 2
    error = capsys.readouterr().err
    assert "lacks merchant, currency, wifi_ssid, broker_host" in error
    assert KEY_HEX not in error


def test_a_config_key_that_is_not_hex_exits_2(tmp_path: Path) -> None:
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps({**CONFIG, "key_hex": "not hex"}))
    with pytest.raises(firmware.FirmwareError,
                       match="key_hex must be 64 hexadecimal digits") as error:
        firmware.build("esp32_pn532", tmp_path / "out", config_file)
    assert error.value.exit_status == 2


def test_build_replaces_an_earlier_build_but_not_other_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    firmware.build("esp32_pn532", out)
    (out / "lib" / "firmware" / "stale.mpy").write_bytes(b"old")
    firmware.build("pico_w_pn532", out)
    assert not (out / "lib" / "firmware" / "stale.mpy").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(firmware.FirmwareError, match="holds no earlier build"):
        firmware.build("esp32_pn532", precious)
    assert (precious / "notes.txt").read_text() == "keep"


# A build process stopped half-way: `tilltap firmware build` run through tools.cli.main in a
# child process whose compile step pauses after a few modules (writing HALFWAY_MARK first), so
# the test can stop it there, deterministically, with a real signal.
MODULES_BEFORE_PAUSE = 5
PAUSE_S = 60
HALFWAY_WAIT_S = 30.0
PROCESS_WAIT_S = 60.0
PAUSING_BUILD = f"""
import sys, time
from pathlib import Path
from tools import firmware
from tools.cli import main
compile_module, compiled = firmware.compile_module, []
def pausing(source, output):
    compile_module(source, output)
    compiled.append(source)
    if len(compiled) == {MODULES_BEFORE_PAUSE}:
        Path(sys.argv[1]).write_text("halfway")
        time.sleep({PAUSE_S})
firmware.compile_module = pausing
sys.exit(main(sys.argv[2:]))
"""


def start_pausing_build(tmp_path: Path, out: Path, board: str) -> subprocess.Popen[str]:
    """The build, once it has compiled MODULES_BEFORE_PAUSE modules and is waiting."""
    halfway = tmp_path / "halfway"
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSING_BUILD, str(halfway), "firmware", "build", "--board",
         board, "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + HALFWAY_WAIT_S
    while not halfway.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the build never got half-way"
        time.sleep(0.05)
    return process


def leftovers(out: Path) -> list[str]:
    return sorted(path.name for path in out.parent.glob(f".{out.name}.*"))


def test_ctrl_c_mid_build_exits_130_and_keeps_the_earlier_build_whole(tmp_path: Path) -> None:
    out = tmp_path / "firmware"
    firmware.build("esp32_pn532", out)
    before = (out / "build.json").read_text()
    process = start_pausing_build(tmp_path, out, "pico_w_pn532")
    assert leftovers(out) != []  # the new build is under way beside the earlier one
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=PROCESS_WAIT_S)
    assert process.returncode == 130
    assert stderr == "tilltap firmware build: interrupted\n" and stdout == ""
    assert leftovers(out) == []
    assert (out / "build.json").read_text() == before
    assert firmware.read_build(out)["board"] == "esp32_pn532"  # every file it lists is there
    assert main(["firmware", "build", "--board", "pico_w_pn532", "--out", str(out)]) == 0
    assert firmware.read_build(out)["board"] == "pico_w_pn532"


def test_a_build_killed_mid_way_leaves_nothing_that_blocks_the_next(tmp_path: Path) -> None:
    out = tmp_path / "firmware"
    process = start_pausing_build(tmp_path, out, "esp32_pn532")
    process.kill()  # SIGKILL: no clean-up can run
    process.communicate(timeout=PROCESS_WAIT_S)
    staged = leftovers(out)
    assert len(staged) == 1 and staged[0].startswith(".firmware.building-")
    assert not out.exists()  # never a half build under the name deploy reads
    assert main(["firmware", "build", "--board", "esp32_pn532", "--out", str(out)]) == 0
    assert leftovers(out) == []
    assert firmware.read_build(out)["board"] == "esp32_pn532"


def test_a_folder_an_older_build_left_marked_in_place_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "firmware"
    (out / "lib").mkdir(parents=True)
    (out / firmware.BUILDING_MARK).write_text("a build in progress or interrupted\n")
    firmware.build("esp32_pn532", out)
    assert not (out / firmware.BUILDING_MARK).exists()
    assert firmware.read_build(out)["board"] == "esp32_pn532"


# -- deploy ---------------------------------------------------------------------------------
def test_deploy_command_lines_are_exactly_these() -> None:
    build_dir = Path("build/firmware")
    commands = firmware.deploy_commands("/dev/ttyUSB0", build_dir, ["umqtt.simple"],
                                        with_config=True, mpremote=["mpremote"])
    connect = ["mpremote", "connect", "/dev/ttyUSB0"]
    assert commands == [
        [*connect, "exec", firmware.REMOVE_OLD_PACKAGES],
        [*connect, "mip", "install", "umqtt.simple"],
        [*connect, "fs", "cp", "-r", "build/firmware/lib/protocol", "build/firmware/lib/firmware",
         ":/lib"],
        [*connect, "fs", "cp", "build/firmware/board.py", ":/board.py",
         "+", "fs", "cp", "build/firmware/main.py", ":/main.py",
         "+", "fs", "cp", "build/firmware/build.json", ":/build.json",
         "+", "fs", "cp", "build/firmware/config.json", ":/config.json"],
        [*connect, "reset"],
    ]
    without_config = firmware.deploy_commands("/dev/ttyACM0", build_dir, [], with_config=False,
                                              mpremote=["mpremote"])
    assert [command[3] for command in without_config] == ["exec", "fs", "fs", "reset"]
    assert "config.json" not in " ".join(without_config[2])


def test_every_deploy_command_parses_with_mpremote_itself() -> None:
    from mpremote import main as mpremote_main

    mpremote_main.prepare_command_expansions(types.SimpleNamespace(commands={}))
    build_dir = Path("build/firmware")
    parsed = []
    for command in firmware.deploy_commands("/dev/ttyUSB0", build_dir, ["umqtt.simple"],
                                            with_config=True, mpremote=["mpremote"]):
        remaining = command[1:]
        seen: list[str] = []
        while remaining:  # the loop of mpremote.main.main(), without a board
            if remaining[0] == "+":
                remaining.pop(0)
                continue
            mpremote_main.do_command_expansion(remaining)
            name = remaining.pop(0)
            _handler, parser_factory = mpremote_main._COMMANDS[name]
            end = remaining.index("+") if "+" in remaining else len(remaining)
            parser = parser_factory()
            parser.add_argument("next_command", nargs=argparse.REMAINDER)
            arguments = parser.parse_args(remaining[:end])
            seen.append(name)
            remaining = arguments.next_command + remaining[end:]
        parsed.append(seen)
    # `reset` is mpremote's shortcut for `exec --no-follow "... machine.reset()"`.
    assert parsed == [["connect", "exec"], ["connect", "mip"], ["connect", "fs"],
                      ["connect", "fs", "fs", "fs", "fs"], ["connect", "exec"]]


def test_the_removal_script_removes_only_the_old_packages_on_micropython(tmp_path: Path) -> None:
    setup = (
        "import os\n"
        "for folder in ('/lib/protocol', '/lib/firmware', '/lib/firmware/boards', '/lib/umqtt'):\n"
        "    os.mkdir(folder)\n"
        "for name in ('/lib/protocol/cbor.mpy', '/lib/firmware/boards/__init__.mpy',\n"
        "             '/lib/umqtt/simple.mpy', '/journal.bin', '/config.json'):\n"
        "    open(name, 'wb').write(b'x')\n"
    )
    check = (
        "print(sorted(entry[0] for entry in os.ilistdir('/lib')))\n"
        "print(sorted(entry[0] for entry in os.ilistdir('/') if entry[0] in\n"
        "             ('journal.bin', 'config.json')))\n"
    )
    script = setup + firmware.REMOVE_OLD_PACKAGES + check
    result = run_micropython(script).check()
    assert result.stdout == "['umqtt']\n['config.json', 'journal.bin']\n"


def test_deploy_runs_the_commands_in_order_and_stops_at_the_first_failure(
        built: firmware.BuildReport, tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    port.touch()
    ran: list[list[str]] = []

    def run(command: list[str]) -> int:
        ran.append(command)
        return 1 if "mip" in command else 0

    with pytest.raises(firmware.FirmwareError, match="step 2 failed with exit status 1") as error:
        firmware.deploy(str(port), built.out_dir, log=lambda line: None, run=run)
    assert error.value.exit_status == 1
    assert [command[5] for command in ran] == ["exec", "mip"]


def test_deploy_to_a_port_that_does_not_exist_exits_2(
        built: firmware.BuildReport, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["firmware", "deploy", "--port", "/dev/ttyUSB97", "--dir", str(built.out_dir)])
    assert status == 2
    assert "serial port /dev/ttyUSB97 does not exist" in capsys.readouterr().err


def test_deploy_of_a_folder_without_a_build_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["firmware", "deploy", "--port", "/dev/ttyUSB0", "--dir", str(tmp_path)])
    assert status == 2
    assert "run `tilltap firmware build` first" in capsys.readouterr().err


def test_a_dry_run_prints_the_commands_and_needs_no_board(
        built: firmware.BuildReport, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["firmware", "deploy", "--port", "/dev/ttyUSB97", "--dir", str(built.out_dir),
                   "--dry-run"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("connect /dev/ttyUSB97 exec <remove old packages>")
    assert lines[1].endswith("connect /dev/ttyUSB97 mip install umqtt.simple")
    assert lines[-1].endswith("connect /dev/ttyUSB97 reset")


# -- the manifest and mip's package.json agree ----------------------------------------------
def test_the_freeze_manifest_requires_what_mip_installs_and_freezes_both_packages() -> None:
    calls: dict[str, list[Any]] = {"include": [], "require": [], "package": []}

    def recorder(kind: str) -> Any:
        return lambda *args, **kwargs: calls[kind].append((args, kwargs))

    manifest_globals = {kind: recorder(kind) for kind in calls}
    manifest_globals["metadata"] = lambda **kwargs: None
    source = (REPO_ROOT / "firmware" / "manifest.py").read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT / "firmware")  # MicroPython runs a manifest from its folder
        exec(compile(source, "firmware/manifest.py", "exec"), manifest_globals)
    assert [args[0] for args, _ in calls["require"]] == firmware.micropython_lib_packages()
    assert calls["include"] == [(("$(PORT_DIR)/boards/manifest.py",), {})]
    packages = {args[0]: kwargs for args, kwargs in calls["package"]}
    assert set(packages) == {"protocol", "firmware"}
    frozen = packages["firmware"]["files"]
    assert "manifest.py" not in frozen
    assert {"uplink.py", "net_umqtt.py", "boards/__init__.py", "boards/esp32_pn532.py",
            "boards/pico_w_pn532.py"} <= set(frozen)


def test_mip_package_json_lists_only_micropython_lib_packages() -> None:
    package_json = json.loads((REPO_ROOT / "firmware" / "package.json").read_text())
    assert package_json["deps"] == [["umqtt.simple", "latest"]]
    assert "urls" not in package_json  # nothing vendored: our own code ships with deploy


# -- the boards build their peripherals ----------------------------------------------------
class FakePin:
    IN, OUT, PULL_UP = "in", "out", "pull_up"

    def __init__(self, number: int, mode: str | None = None, pull: str | None = None,
                 value: int | None = None) -> None:
        self.number, self.mode, self.pull, self.level = number, mode, pull, value

    def value(self, level: int | None = None) -> int | None:
        if level is not None:
            self.level = level
        return self.level


def fake_machine() -> types.ModuleType:
    machine = types.ModuleType("machine")
    made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def peripheral(kind: str) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            made.append((kind, args, kwargs))
            return types.SimpleNamespace(kind=kind, args=args, kwargs=kwargs)
        return make

    machine.Pin = FakePin  # type: ignore[attr-defined]
    machine.I2C = peripheral("I2C")  # type: ignore[attr-defined]
    machine.SPI = peripheral("SPI")  # type: ignore[attr-defined]
    machine.UART = peripheral("UART")  # type: ignore[attr-defined]
    machine.made = made  # type: ignore[attr-defined]
    return machine


@pytest.mark.parametrize(("board", "interface", "kind", "pins"), [
    ("esp32_pn532", "i2c", "I2C", {"scl": 22, "sda": 21}),
    ("esp32_pn532", "spi", "SPI", {"sck": 18, "mosi": 23, "miso": 19}),
    ("esp32_pn532", "uart", "UART", {"tx": 17, "rx": 16}),
    ("pico_w_pn532", "i2c", "I2C", {"scl": 5, "sda": 4}),
    ("pico_w_pn532", "spi", "SPI", {"sck": 18, "mosi": 19, "miso": 16}),
    ("pico_w_pn532", "uart", "UART", {"tx": 0, "rx": 1}),
])
def test_a_board_builds_the_pn532_bus_on_its_documented_pins(
        board: str, interface: str, kind: str, pins: dict[str, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware import pn532_bus

    machine = fake_machine()
    monkeypatch.setitem(sys.modules, "machine", machine)
    module = __import__(f"firmware.boards.{board}", fromlist=["make_hal"])
    hal = module.make_hal(interface)
    assert hal.interface == interface and hal.name == board
    bus_class = {"I2C": pn532_bus.I2CBus, "SPI": pn532_bus.SpiBus, "UART": pn532_bus.UartBus}
    assert isinstance(hal.pn532_bus, bus_class[kind])
    [(made_kind, _args, kwargs)] = machine.made  # type: ignore[attr-defined]
    assert made_kind == kind
    assert {name: kwargs[name].number for name in pins} == pins
    if kind == "SPI":
        assert (kwargs["polarity"], kwargs["phase"]) == (0, 0)
        assert "firstbit" not in kwargs  # MSB first; SpiBus reverses bits for the PN532
        assert hal.pn532_bus.cs_pin.number == {"esp32_pn532": 5, "pico_w_pn532": 17}[board]
    if kind == "I2C":
        assert hal.pn532_bus.address == 0x24
    assert hal.reset_pin.level == 1 and hal.irq_pin.pull == FakePin.PULL_UP


def test_an_unknown_interface_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware.boards import esp32_pn532

    monkeypatch.setitem(sys.modules, "machine", fake_machine())
    with pytest.raises(ValueError, match="PN532 interface must be one of"):
        esp32_pn532.make_hal("usb")


class FakeWlan:
    def __init__(self) -> None:
        self.connects: list[tuple[str, str]] = []
        self.associated_after_polls: int | None = None  # None: never associates
        self.polls = 0

    def active(self, flag: bool) -> None:
        pass

    def connect(self, ssid: str, password: str) -> None:
        self.connects.append((ssid, password))
        self.polls = 0

    def isconnected(self) -> bool:
        self.polls += 1
        return self.associated_after_polls is not None and self.polls > self.associated_after_polls


class StepClock:
    def __init__(self) -> None:
        self.now_ms = 0

    def ticks_ms(self) -> int:
        return self.now_ms

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def sleep_ms(self, ms: int) -> None:
        self.now_ms += ms


def wifi_with(wlan: FakeWlan, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, StepClock]:
    from firmware.boards import Wifi

    network = types.ModuleType("network")
    network.STA_IF = 0  # type: ignore[attr-defined]
    network.WLAN = lambda interface: wlan  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "network", network)
    clock = StepClock()
    return Wifi("shop", "wifi-secret-9", clock), clock


def test_wifi_join_without_a_wait_starts_joining_and_raises_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware.boards import WIFI_JOIN_TIMEOUT_MS

    wlan = FakeWlan()
    wifi, clock = wifi_with(wlan, monkeypatch)
    with pytest.raises(OSError, match="not joined"):
        wifi.join()
    assert clock.now_ms == 0 and wlan.connects == [("shop", "wifi-secret-9")]
    clock.now_ms += WIFI_JOIN_TIMEOUT_MS - 1
    with pytest.raises(OSError):
        wifi.join()
    assert len(wlan.connects) == 1  # a join in progress is left alone ...
    clock.now_ms += 1
    with pytest.raises(OSError):
        wifi.join()
    assert len(wlan.connects) == 2  # ... until it has had its time
    wlan.associated_after_polls = 0
    wifi.join()
    assert len(wlan.connects) == 2


def test_wifi_join_at_boot_waits_at_most_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    wlan = FakeWlan()
    wifi, clock = wifi_with(wlan, monkeypatch)
    with pytest.raises(OSError):
        wifi.join(wait_ms=1000)
    assert clock.now_ms == 1000
    wlan.associated_after_polls = 3
    wifi2, clock2 = wifi_with(wlan, monkeypatch)
    wifi2.join(wait_ms=1000)
    assert clock2.now_ms < 1000


def test_load_config_turns_the_key_into_bytes_and_names_missing_fields(tmp_path: Path) -> None:
    from firmware.boards import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    config = load_config(str(path))
    assert config["key"] == bytes.fromhex(KEY_HEX) and "key_hex" not in config
    path.write_text(json.dumps({"terminal": "t-0001"}))
    with pytest.raises(ValueError, match="lacks merchant, currency, key_hex, wifi_ssid"):
        load_config(str(path))


# -- the boot path, on real MicroPython with stand-ins for machine, network and umqtt --------
BOARD_STAND_INS = {
    "machine.py": """
made = []
class Pin:
    IN, OUT, PULL_UP = 1, 2, 3
    def __init__(self, number, mode=None, pull=None, value=None):
        self.number, self.level = number, value
    def value(self, level=None):
        if level is not None:
            self.level = level
        return self.level
class I2C:
    def __init__(self, bus_id, scl, sda, freq):
        made.append(("I2C", bus_id, scl.number, sda.number, freq))
    def writeto(self, address, data):
        pass
    def readfrom(self, address, n):
        return bytes(n)  # status byte 0: never ready
""",
    "network.py": """
STA_IF = 0
class WLAN:
    def __init__(self, interface):
        self.joined = False
    def active(self, flag):
        pass
    def connect(self, ssid, password):
        self.joined = True
    def isconnected(self):
        return self.joined
""",
    "umqtt/__init__.py": "",
    "umqtt/simple.py": """
class MQTTException(Exception):
    pass
class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0):
        self.sock = None
    def set_callback(self, callback):
        pass
    def set_last_will(self, topic, msg, retain=False, qos=0):
        pass
    def connect(self, clean_session=True, timeout=None):
        raise OSError(113)  # EHOSTUNREACH: no broker in this test
""",
}


def test_main_py_boots_the_terminal_offline_on_micropython(
        built: firmware.BuildReport, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    files = {"/lib/board.py": built.out_dir / "board.py", "/config.json": config}
    for name, source in BOARD_STAND_INS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
        files[f"/lib/{name}"] = tmp_path / name
    main_py = (built.out_dir / "main.py").read_text()
    assert main_py == "import board\nfrom firmware.boards import start\n\nstart(board)\n"
    script = main_py.replace("start(board)", """
class Keypad:  # two idle turns (the uplink tries the broker), then stop
    turns = 0
    def next_command(self, timeout_ms):
        Keypad.turns += 1
        return None if Keypad.turns < 3 else {"op": "stop"}

import machine
terminal = start(board, keypad=Keypad())
print(machine.made, terminal.uplink.stats["connect_failures"], terminal.journal.depth)
""")
    lib = built.out_dir / "lib"
    result = run_micropython(
        script, libs={"protocol": lib / "protocol", "firmware": lib / "firmware"}, files=files,
    ).check()
    assert result.stdout.splitlines()[-1] == "[('I2C', 0, 22, 21, 100000)] 1 0"
