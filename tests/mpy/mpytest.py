"""The little test kit for tests/mpy: modules that run unchanged on CPython and MicroPython.

A module here is `test_*.py` with plain `def test_...():` functions that use `assert`, no pytest
import and no fixtures. On CPython pytest collects it as usual; tests/test_micropython_harness.py
runs the same functions on real MicroPython 1.27 with protocol/, firmware/, this folder (at
/lib) and the vector files (at /vectors) mounted.

    from mpytest import expect_raises, load_json

    def test_rejects_negative_amount():
        error = expect_raises(ValueError, money.parse, "-1")
        assert "negative" in str(error)

Vector files are looked up by name in one folder (tests/vectors/README.md names their sources):
  CPython:     the repo's tests/vectors
  MicroPython: /vectors (the harness copies tests/vectors there)
"""

import json
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"
MICROPYTHON_VECTORS_DIRECTORY = "/vectors"


def vector_directory():
    """The folder holding the vector files: tests/vectors, or /vectors on MicroPython."""
    if IS_MICROPYTHON:
        return MICROPYTHON_VECTORS_DIRECTORY
    import os

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vectors")


def load_text(name):
    """The text of vector file `name` (e.g. "rfc.json"); OSError naming the folder if absent."""
    path = vector_directory() + "/" + name
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        pass
    raise OSError(f"vector file {name!r} not found: no {path}")


def load_json(name):
    """Vector file `name` parsed as JSON."""
    return json.loads(load_text(name))


def expect_raises(exception_type, function, *args, **kwargs):
    """Call function(*args, **kwargs); return the exception_type it raises, else fail."""
    try:
        function(*args, **kwargs)
    except exception_type as error:
        return error
    function_name = getattr(function, "__name__", function)
    raise AssertionError(f"expected {exception_type.__name__} from {function_name}")


def format_exception(error):
    """The traceback of `error` as text, on either interpreter."""
    if IS_MICROPYTHON:
        import io

        buffer = io.StringIO()
        sys.print_exception(error, buffer)
        return buffer.getvalue()
    import traceback

    return "".join(traceback.format_exception(error))


def run(module_name, test_names):
    """Import module_name and call each test; print `PASS name` or `FAIL name: "traceback"`.

    One line per test; the traceback is a JSON string so it stays on that line. Used by the
    MicroPython harness; works on CPython too. Returns the number of failures.
    """
    module = __import__(module_name)
    failures = 0
    for name in test_names:
        try:
            getattr(module, name)()
        except Exception as error:
            failures += 1
            print(f"FAIL {name}: {json.dumps(format_exception(error))}")
        else:
            print(f"PASS {name}")
    return failures
