"""Fixtures shared by every test: real parts, started privately for this run.

- `mosquitto`: one private broker for the whole session; don't stop or kill it.
- `private_mosquitto`: a broker of the test's own, to kill(), stop() or restart() at will.

Both are tests.support.mosquitto.MosquittoBroker (`.host`, `.port`, `.url`). A missing mosquitto
binary fails the test with the fix (`scripts/bootstrap.sh`); it is never skipped.
"""

from collections.abc import Iterator

import pytest

from tests.support.mosquitto import MosquittoBroker, MosquittoError


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
