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

import pytest

from tests.support.mosquitto import MosquittoBroker, MosquittoError
from tests.support.postgres import postgres_server
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
