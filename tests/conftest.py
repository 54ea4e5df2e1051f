"""Fixtures shared by every test: real parts, started privately for this run.

- `mosquitto`: one private broker for the whole session; don't stop or kill it.
- `private_mosquitto`: a broker of the test's own, to kill(), stop() or restart() at will.
- `store_broker`: a broker of the test's own configured exactly as a store deploys it (TLS
  only, logins, ACL; tests.support.store_broker.StoreBroker): the attack tests run on it, so
  what they prove holds for the deployed configuration, not only for an open broker.
  `second_broker`: another, for a second store.
- `pg_admin_dsn`: the admin DSN of the PostgreSQL server of this run (tests.support.postgres:
  one server for the session; tests make their own databases with `temporary_database`).
- `pcscd`: the machine's one pcscd with vsmartcard's two virtual readers (reused when running,
  else started; the last tilltap process using a pcscd that tilltap started stops it).

All are tests.support.mosquitto.MosquittoBroker (`.host`, `.port`, `.url`). A missing mosquitto
binary fails the test with the fix (`scripts/bootstrap.sh`); it is never skipped.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.mosquitto import MosquittoBroker, MosquittoError
from tests.support.postgres import postgres_server, stop_worker_server
from tests.support.store_broker import StoreBroker
from tools.transports import ReaderUnavailable
from tools.transports.pcsc_reader import wait_for_readers
from tools.transports.pcscd import PcscDaemon, use_pcscd
from tools.transports.vpcd_card import VPCD_READER_SLOT0, VPCD_READER_SLOT1, VPCD_READERS_FIX

VPCD_READERS_WAIT_S = 5.0


def _started(broker: MosquittoBroker) -> MosquittoBroker:
    try:
        return broker.start()
    except MosquittoError as error:
        broker.close()
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    broker = _started(MosquittoBroker())
    yield broker
    broker.stop()
    broker.close()


@pytest.fixture
def private_mosquitto() -> Iterator[MosquittoBroker]:
    broker = _started(MosquittoBroker())
    yield broker
    broker.stop()
    broker.close()


@pytest.fixture
def store_broker() -> Iterator[StoreBroker]:
    broker = _started(StoreBroker())
    assert isinstance(broker, StoreBroker)
    yield broker
    broker.stop()
    broker.close()


@pytest.fixture
def second_broker() -> Iterator[StoreBroker]:
    broker = _started(StoreBroker())
    assert isinstance(broker, StoreBroker)
    yield broker
    broker.stop()
    broker.close()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PcscDaemon]:
    try:
        daemon = use_pcscd()
    except ReaderUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        wait_for_readers([VPCD_READER_SLOT0, VPCD_READER_SLOT1], VPCD_READERS_WAIT_S)
    except ReaderUnavailable as error:
        daemon.release()
        fix = "" if error.detail.startswith("pyscard") else f"; {VPCD_READERS_FIX}"
        pytest.fail(f"{error}{fix}", pytrace=False)
    yield daemon
    daemon.release()


# `make test` runs the tests side by side (pytest-xdist): most of their time is spent waiting
# on brokers, servers and MicroPython. A file's tests run on one worker, one after another, so a
# module's fixture (a stack, a module's worth of CLI runs) is made once; the machine's one pcscd
# has two vpcd slots, so the files that insert cards there share one worker. (xdist's own
# `--dist loadgroup` does not group on pytest 9, which no longer reads the node ids it rewrites:
# hence this scheduler.)
PCSC_SLOT_TEST_FILES = frozenset({
    "test_card_lifecycle.py", "test_card_station.py", "test_docs_commands.py",
    "test_pcsc_vpcd.py", "test_pcscd_sharing.py", "test_personalize.py",
})
PCSC_SCOPE = "pcscd"


def scope_of(nodeid: str) -> str:
    """The work unit a test is scheduled in: its file, or PCSC_SCOPE."""
    path = nodeid.split("::", 1)[0]
    return PCSC_SCOPE if path.rsplit("/", 1)[-1] in PCSC_SLOT_TEST_FILES else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return FileScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_worker_server()  # a worker's own PostgreSQL (tests/support/postgres.py)


# Files that take minutes, started first so that the others fill the workers around them
# rather than leave one worker running them at the end.
LONG_TEST_FILES = ("test_cli_mistakes.py", "test_bench_firmware.py", "test_gauntlet.py",
                   "test_fuzz.py", "test_bench.py", "test_micropython_harness.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: (LONG_TEST_FILES.index(item.path.name)
                                 if item.path.name in LONG_TEST_FILES else len(LONG_TEST_FILES)))
