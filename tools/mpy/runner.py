"""Run a script on real MicroPython 1.27 (the WebAssembly port, under Node) from CPython.

Shared by the tests, the bench and the firmware build.

    vectors = REPO_ROOT / "tests" / "vectors"
    result = run_micropython(
        "import protocol; print('ok')",
        libs={"protocol": REPO_ROOT / "protocol"},          # copied to /lib/protocol/
        files={"/vectors/rfc.json": vectors / "rfc.json"},  # copied to that exact path
    )
    result.check()  # raises MicroPythonFailed with stdout and stderr unless it exited 0

The runner is tools/mpy/run.mjs (node_modules installed by scripts/bootstrap.sh). Each call is a
fresh interpreter with its own in-memory file system: nothing carries over between calls.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER_PATH = REPO_ROOT / "tools" / "mpy" / "run.mjs"
MICROPYTHON_PACKAGE_PATH = (
    REPO_ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
)
VECTORS_FOLDER = "/vectors"  # where tests/mpy/mpytest.load_json looks on MicroPython


class MicroPythonUnavailable(RuntimeError):
    """node or the MicroPython npm package is missing: run scripts/bootstrap.sh."""


class MicroPythonFailed(AssertionError):
    """A script run on MicroPython exited non-zero (or did not finish in time)."""


@dataclass(frozen=True)
class MicroPythonResult:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> MicroPythonResult:
        """Return self if the script exited 0, else raise MicroPythonFailed showing its output."""
        if self.returncode != 0:
            raise MicroPythonFailed(
                f"MicroPython exited with status {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
            )
        return self


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise MicroPythonUnavailable(
            "node is not installed: run `scripts/bootstrap.sh` (Debian package nodejs)"
        )
    if not (MICROPYTHON_PACKAGE_PATH / "package.json").is_file():
        raise MicroPythonUnavailable(
            f"{MICROPYTHON_PACKAGE_PATH.relative_to(REPO_ROOT)} is missing: run "
            "`scripts/bootstrap.sh` (it runs `npm ci` in the repo root)"
        )
    return node


def run_micropython(
    script: str,
    libs: dict[str, Path] | None = None,
    files: dict[str, Path] | None = None,
    timeout_s: float = 60,
    heap_bytes: int | None = None,
    then: str | None = None,
    times: int = 0,
) -> MicroPythonResult:
    """Run `script` on a fresh MicroPython; return its exit status and output.

    libs: NAME -> host folder (a package tree, copied to /lib/NAME/) or host file (/lib/NAME).
    files: absolute MicroPython path -> host file.
    heap_bytes: initial heap; this port's heap grows on demand.
    then, times: after the script, run `then` `times` times, each as its own top-level run
        (the only points where this port's collector can run; see run.mjs).
    Exit status: 0 ok; 1 uncaught exception (traceback on stderr); N for sys.exit(N).
    """
    command = [node_binary(), str(RUNNER_PATH), "--script", "-"]
    for name, host_path in (libs or {}).items():
        command += ["--lib", f"{name}={_existing(host_path)}"]
    for target, host_path in (files or {}).items():
        if not target.startswith("/"):
            raise ValueError(f"MicroPython file target must be absolute: {target!r}")
        command += ["--file", f"{target}={_existing(host_path)}"]
    if heap_bytes is not None:
        command += ["--heap", str(heap_bytes)]
    if then is not None:
        command += ["--then", then, "--times", str(times)]
    try:
        completed = subprocess.run(
            command,
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as timeout:
        raise MicroPythonFailed(
            f"MicroPython did not finish within {timeout_s} s\n"
            f"--- stdout ---\n{_text(timeout.stdout)}--- stderr ---\n{_text(timeout.stderr)}"
        ) from timeout
    return MicroPythonResult(completed.returncode, completed.stdout, completed.stderr)


def _existing(host_path: Path) -> Path:
    resolved = Path(host_path).resolve()
    if not resolved.exists():
        raise FileNotFoundError(f"cannot mount {host_path} on MicroPython: it does not exist")
    return resolved


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output
