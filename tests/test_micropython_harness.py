"""Every tests/mpy module runs on real MicroPython 1.27 too, one pytest test per test function.

Each module runs once in a fresh interpreter with protocol/, firmware/ and tests/mpy mounted at
/lib and the vector files at /vectors; mpytest.run prints `PASS name` or `FAIL name: "tb"` per
test, and each parametrized case below reports its own line. The runner is checked below too.
"""

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mpytest
from tests.support import REPO_ROOT
from tests.support.micropython import VECTORS_FOLDER, MicroPythonResult, run_micropython

MPY_TESTS_DIRECTORY = REPO_ROOT / "tests" / "mpy"
MICROPYTHON_PACKAGES = ("protocol", "firmware")
MODULE_RUN_TIMEOUT_S = 100  # below pytest's per-test timeout, so the runner reports first


def collect_test_names(module_path: Path) -> list[str]:
    """Top-level `def test_*` names of a module, in source order, read without importing it."""
    tree = ast.parse(module_path.read_text(), filename=str(module_path))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
    ]


MODULE_TESTS = {
    path.stem: collect_test_names(path) for path in sorted(MPY_TESTS_DIRECTORY.glob("test_*.py"))
}
CASES = [(module, name) for module, names in MODULE_TESTS.items() for name in names]


SIMULATOR_FILES_ON_MICROPYTHON = (
    "tools/__init__.py",
    "tools/simulator/__init__.py",
    "tools/simulator/pn532_emulator.py",
    "tools/simulator/ntag424_card.py",
)


def micropython_mounts() -> tuple[dict[str, Path], dict[str, Path]]:
    """(libs, files) for run_micropython: packages, tests/mpy at /lib, vectors at /vectors."""
    libs = {
        package: REPO_ROOT / package
        for package in MICROPYTHON_PACKAGES
        if (REPO_ROOT / package).is_dir()
    }
    files = {
        f"/lib/{path.relative_to(MPY_TESTS_DIRECTORY).as_posix()}": path
        for path in sorted(MPY_TESTS_DIRECTORY.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    # The emulated PN532 is simulator code that is also MicroPython-safe: tests drive the
    # firmware's driver against it on both interpreters.
    for relative in SIMULATOR_FILES_ON_MICROPYTHON:
        files[f"/lib/{relative}"] = REPO_ROOT / relative
    for path in sorted(Path(mpytest.vector_directory()).glob("*")):
        if path.is_file():
            files[f"{VECTORS_FOLDER}/{path.name}"] = path
    return libs, files


@dataclass
class ModuleRun:
    result: MicroPythonResult
    passed: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)


_module_runs: dict[str, ModuleRun] = {}


def module_run(module_name: str) -> ModuleRun:
    """Run a tests/mpy module on MicroPython once per session; later cases read the result."""
    if module_name not in _module_runs:
        libs, files = micropython_mounts()
        script = f"import mpytest\nmpytest.run({module_name!r}, {MODULE_TESTS[module_name]!r})\n"
        run = ModuleRun(run_micropython(script, libs, files, timeout_s=MODULE_RUN_TIMEOUT_S))
        for line in run.result.stdout.splitlines():
            if line.startswith("PASS "):
                run.passed.add(line[len("PASS ") :])
            elif line.startswith("FAIL "):
                name, _, traceback_json = line[len("FAIL ") :].partition(": ")
                run.failures[name] = json.loads(traceback_json)
        _module_runs[module_name] = run
    return _module_runs[module_name]


@pytest.mark.parametrize(
    ("module_name", "test_name"), CASES, ids=[f"{module}.{name}" for module, name in CASES]
)
def test_on_micropython(module_name: str, test_name: str) -> None:
    run = module_run(module_name)
    if test_name in run.failures:
        pytest.fail(
            f"{module_name}.{test_name} failed on MicroPython:\n{run.failures[test_name]}",
            pytrace=False,
        )
    if test_name not in run.passed:
        result = run.result
        pytest.fail(
            f"{module_name}.{test_name} gave no result on MicroPython "
            f"(exit status {result.returncode}):\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}",
            pytrace=False,
        )


def test_the_harness_finds_the_selfcheck_module() -> None:
    assert "test_sha256_of_abc_is_the_fips_180_2_digest" in MODULE_TESTS["test_harness_selfcheck"]


def test_the_interpreter_is_micropython_1_27() -> None:
    script = "import sys\nprint(sys.implementation.name, sys.implementation.version[:2])\n"
    result = run_micropython(script)
    assert result.check().stdout == "micropython (1, 27)\n"


def test_an_uncaught_exception_exits_1_with_the_traceback_on_stderr() -> None:
    result = run_micropython("def explode():\n    raise ValueError('boom')\n\nexplode()\n")
    assert result.returncode == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert "line 2, in explode" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: boom")


def test_output_reaches_the_host_unchanged_even_without_a_final_newline() -> None:
    script = (
        "import sys\nprint('one')\nprint('to stderr', file=sys.stderr)\nsys.stdout.write('two')\n"
    )
    result = run_micropython(script).check()
    assert result.stdout == "one\ntwo"
    assert result.stderr == "to stderr\n"


def test_sys_exit_sets_the_exit_status() -> None:
    assert run_micropython("import sys\nsys.exit(3)").returncode == 3
    assert run_micropython("import sys\nsys.exit(0)").returncode == 0


def test_libs_and_files_are_copied_into_the_micropython_file_system(tmp_path: Path) -> None:
    package = tmp_path / "sample"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("NAME = 'sample'\n")
    (package / "inner" / "__init__.py").write_text("from sample import NAME\nDEPTH = 2\n")
    (tmp_path / "data.bin").write_bytes(bytes(range(256)))
    script = (
        "from sample.inner import NAME, DEPTH\n"
        "print(NAME, DEPTH)\n"
        "print(len(open('/data/blob.bin', 'rb').read()))\n"
    )
    result = run_micropython(
        script, libs={"sample": package}, files={"/data/blob.bin": tmp_path / "data.bin"}
    ).check()
    assert result.stdout == "sample 2\n256\n"


def test_the_collector_runs_between_top_level_runs_and_only_there() -> None:
    # What tools/mpy/heap_day.py relies on: in this port gc.collect() inside a run only asks
    # for a collection, which happens when the next top-level run (`then`) starts.
    script = (
        "import gc\n"
        "garbage = [bytes(1000) for _ in range(200)]\n"
        "del garbage\n"
        "gc.collect()\n"
        "print(gc.mem_alloc() > 150000)\n"
    )
    result = run_micropython(script, then="print(gc.mem_alloc() < 50000)", times=2).check()
    assert result.stdout == "True\nTrue\nTrue\n"
