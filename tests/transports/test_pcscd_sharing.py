"""How tools.transports.pcscd shares the machine's one daemon: reuse what answers, start what
does not, stop only what this process started and only when nobody else still uses it.

The rules are checked on a stand-in daemon (a Python process listening on a private Unix
socket), so this never disturbs the real pcscd other test runs may be using."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.transports import ReaderUnavailable
from tools.transports.pcscd import PcscDaemon, socket_answers

STAND_IN = """
import socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(8)
while True:
    connection, _ = server.accept()
    connection.close()
"""


@pytest.fixture
def socket_file(tmp_path: Path) -> str:
    return str(tmp_path / "pcscd.comm")


def stand_in(socket_file: str) -> PcscDaemon:
    command = [sys.executable, "-c", STAND_IN, socket_file]
    return PcscDaemon(socket_file, command, run_dir=Path(socket_file).parent)


def test_a_daemon_that_does_not_answer_is_started_and_stopped_by_its_only_user(socket_file):
    daemon = stand_in(socket_file).acquire()
    assert daemon.started and socket_answers(socket_file)
    daemon.release()
    assert daemon.stopped and daemon.process is not None and daemon.process.poll() is not None


def test_a_daemon_that_answers_is_reused_and_never_stopped_by_the_reuser(socket_file):
    first = stand_in(socket_file).acquire()
    try:
        with stand_in(socket_file) as second:
            assert not second.started
        assert socket_answers(socket_file)
    finally:
        first.release()
    assert first.stopped


def test_the_last_user_stops_a_daemon_the_first_one_started_and_left(socket_file):
    starter = stand_in(socket_file).acquire()
    reuser = stand_in(socket_file).acquire()
    starter.release()  # someone still uses it: it keeps running
    assert not starter.stopped and socket_answers(socket_file)
    reuser.release()  # the last tilltap user stops what a tilltap process started
    assert reuser.stopped and not socket_answers(socket_file)
    assert starter.process is not None and starter.process.wait(5) is not None


def test_a_daemon_nobody_here_started_is_never_stopped(socket_file):
    command = [sys.executable, "-c", STAND_IN, socket_file]
    foreign = subprocess.Popen(command)  # as if systemd or a developer had started it
    try:
        deadline = time.monotonic() + 5
        while not socket_answers(socket_file):
            assert time.monotonic() < deadline, "the stand-in did not come up"
            time.sleep(0.02)
        with stand_in(socket_file) as user:
            assert not user.started
        assert not user.stopped and socket_answers(socket_file)
    finally:
        foreign.kill()
        foreign.wait(5)


def test_a_daemon_that_exits_at_once_is_reader_unavailable_with_its_log(socket_file):
    command = [sys.executable, "-c", "print('no way'); exit(3)"]
    failing = PcscDaemon(socket_file, command, run_dir=Path(socket_file).parent)
    with pytest.raises(ReaderUnavailable) as error:
        failing.acquire()
    assert "status 3" in error.value.detail and "no way" in error.value.detail
