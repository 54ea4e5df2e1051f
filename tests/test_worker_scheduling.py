"""How `make test` spreads the tests over its workers (tests/conftest.py): by file, with the
files that insert cards into the machine's vpcd slots in one work unit."""

from tests.conftest import PCSC_SCOPE, PCSC_SLOT_TEST_FILES, scope_of


def test_a_tests_work_unit_is_its_file_whatever_its_parameters_say() -> None:
    assert scope_of("tests/ledger/test_ledger_books.py::test_x[postgres]") == (
        "tests/ledger/test_ledger_books.py")
    # A parameter may hold "::" or "@" (a CLI case naming an e-mail address): still the file.
    assert scope_of("tests/tools/test_cli_mistakes.py::test_m[1:find --email a@b.org ::x]") == (
        "tests/tools/test_cli_mistakes.py")


def test_every_file_that_uses_the_vpcd_slots_shares_one_work_unit() -> None:
    folders = {"test_card_lifecycle.py": "e2e", "test_docs_commands.py": "tools",
               "test_personalize.py": "tools"}
    scopes = {scope_of(f"tests/{folders.get(name, 'transports')}/{name}::test_any")
              for name in PCSC_SLOT_TEST_FILES}
    assert scopes == {PCSC_SCOPE}
    assert scope_of("tests/transports/test_vpcd_wire.py::test_any") != PCSC_SCOPE  # a fake vpcd
