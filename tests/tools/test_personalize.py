"""Personalizing a factory card: diversified keys, SDM on, a SUN the deployment's keys verify;
an interrupted run resumes, and nothing half-done verifies. A batch (`tilltap card
personalize --count N`) at a real reader counts each card once (a card left on the reader or
presented again is not taken twice), asks the ledger before any key changes, and stops on
Ctrl-C only once the card in hand is finished (exit 130), at PC/SC and at nfcpy alike."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.client import LedgerClient
from ledger.server import serve
from protocol.errors import ValidationError
from protocol.ntag424 import CardStatusError
from protocol.ntag424_sun import verify_sun_url
from tests.support import REPO_ROOT
from tools.card_station import personalize_batch
from tools.cards import MasterKeys, new_master_keys, write_master_keys
from tools.personalize import FACTORY_KEY, personalize
from tools.simulator.ntag424_card import Ntag424Card
from tools.transports.nfc_card import NfcUdpCard, free_udp_port
from tools.transports.vpcd_card import VpcdCard

UID = bytes.fromhex("04c1c2c3c4c5c6")
PREFIX = "https://tilltap.example/c"


def test_a_factory_card_gets_diversified_keys_and_a_verifiable_sun() -> None:
    masters = new_master_keys(b"tilltap-test")
    card = Ntag424Card(UID)
    result = personalize(card.apdu, masters, PREFIX, secrets.token_bytes)
    assert result == {"uid": UID.hex(), "read_counter": 1, "url": result["url"], "fresh": True}
    assert result["url"].startswith(PREFIX + "?picc_data=")
    # A terminal's tap afterwards verifies with the diversified keys, not the factory ones.
    from firmware.card_sun import read_sun_url

    url = read_sun_url(card.apdu)
    file_key = masters.card_key(UID, 2)
    assert verify_sun_url(url, masters.meta_read_key(), file_key)["read_counter"] == 2
    with pytest.raises(ValidationError):  # under the factory K1 the PICCData is noise
        verify_sun_url(url, FACTORY_KEY, FACTORY_KEY)
    assert not verify_sun_url(url, masters.meta_read_key(), FACTORY_KEY)["valid"]


def test_running_again_on_a_personalized_card_resumes_and_only_verifies() -> None:
    masters = new_master_keys(b"tilltap-test")
    card = Ntag424Card(UID)
    personalize(card.apdu, masters, PREFIX, secrets.token_bytes)
    again = personalize(card.apdu, masters, PREFIX, secrets.token_bytes, uid_hint=UID)
    assert again["fresh"] is False and again["read_counter"] == 2


def test_a_card_pulled_mid_way_is_finished_by_the_next_run() -> None:
    masters = new_master_keys(b"tilltap-test")
    card = Ntag424Card(UID)
    calls = {"n": 0}

    def pulled_after_a_few(apdu: bytes) -> bytes:
        calls["n"] += 1
        if calls["n"] > 9:  # somewhere among the ChangeKey commands
            raise OSError("card removed")
        return card.apdu(apdu)

    with pytest.raises(OSError):
        personalize(pulled_after_a_few, masters, PREFIX, secrets.token_bytes)
    card.activate()  # back in the field
    result = personalize(card.apdu, masters, PREFIX, secrets.token_bytes, uid_hint=UID)
    assert result["fresh"] is True and result["uid"] == UID.hex()


def test_a_card_of_another_deployment_is_refused() -> None:
    card = Ntag424Card(UID)
    personalize(card.apdu, new_master_keys(b"deployment-a"), PREFIX, secrets.token_bytes)
    with pytest.raises(CardStatusError):
        personalize(card.apdu, new_master_keys(b"deployment-b"), PREFIX, secrets.token_bytes,
                    uid_hint=UID)


# -- a batch at a real reader: one card counted once, the ledger asked first, Ctrl-C ----------
# These run through the real stacks: pyscard -> pcscd -> vpcd (fixture `pcscd`) and nfcpy's
# udp driver, with the emulated card served from this process, and a real ledger server.

CARD_A = bytes.fromhex("04a1a2a3a4a5a6")
CARD_B = bytes.fromhex("04b1b2b3b4b5b6")
BATCH_WAIT_S = 3.0  # how long the batch waits for a card to come or go in these tests
EVENT_WAIT_S = 30.0  # a generous deadline for what the test waits to see
PROCESS_WAIT_S = 60.0
INS_CHANGE_KEY = 0xC4
SYSTEM_ID = b"tilltap-batch"


class Lines:
    """What a batch says, line by line, for a test to wait on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def say(self, line: str) -> None:
        with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    def wait_for(self, fragment: str, after: int = 0) -> int:
        """Index of the first line from `after` on holding `fragment` (fails after a while)."""
        deadline = time.monotonic() + EVENT_WAIT_S
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if fragment in self.lines[index]:
                        return index
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no line with {fragment!r} in {self.lines}"
                self._changed.wait(remaining)


class SlowChangeKeyCard:
    """An emulated card that says when its first ChangeKey arrives and then answers every
    ChangeKey slowly, so a test can press Ctrl-C while the keys are being changed."""

    def __init__(self, card: Ntag424Card, delay_s: float) -> None:
        self.card = card
        self.delay_s = delay_s
        self.changing = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.card, name)

    def apdu(self, command: bytes) -> bytes:
        if len(command) > 1 and command[0] == 0x90 and command[1] == INS_CHANGE_KEY:
            self.changing.set()
            time.sleep(self.delay_s)
        answer: bytes = self.card.apdu(command)
        return answer


def fully_personalized(card: Ntag424Card, masters: MasterKeys) -> bool:
    return card.keys == masters.card_keys(card.uid) and all(
        version == 1 for version in card.key_versions)


def run_batch(reader: str, count: int, masters: MasterKeys, lines: Lines,
              registered: list[str]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def body() -> None:
        result.update(personalize_batch(reader, count, masters, PREFIX, registered.append,
                                        card_wait_s=BATCH_WAIT_S, say=lines.say))

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def ledger_url(tmp_path: Path) -> Iterator[str]:
    server = serve(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, MasterKeys]:
    masters = new_master_keys(SYSTEM_ID)
    path = tmp_path / "masters.json"
    write_master_keys(path, masters)
    return path, masters


def personalize_argv(reader: str, keys: Path, ledger: str, count: int, *more: str) -> list[str]:
    return [sys.executable, "-m", "tools.cli", "card", "personalize", "--count", str(count),
            "--reader", reader, "--master-key", str(keys), "--url-prefix", PREFIX,
            "--program", "gift", "--value-minor", "5000", "--merchant", "M1",
            "--ledger-url", ledger, *more]


class Process:
    """`tilltap card personalize` in a child process; its stderr lines as they come."""

    def __init__(self, argv: list[str]) -> None:
        self.lines = Lines()
        self.process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.say(line.rstrip("\n"))

    def finish(self) -> tuple[int, dict[str, Any], list[str]]:
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()  # stderr is this object's reader thread's
        self.process.wait(PROCESS_WAIT_S)
        self._reader.join(EVENT_WAIT_S)
        return self.process.returncode, json.loads(stdout) if stdout else {}, self.lines.lines

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_a_card_left_on_a_pcsc_reader_is_personalized_and_counted_once(pcscd: object) -> None:
    masters = new_master_keys(SYSTEM_ID)
    registered: list[str] = []
    lines = Lines()
    with VpcdCard(Ntag424Card(CARD_A)):
        summary = personalize_batch("pcsc", 3, masters, PREFIX, registered.append,
                                    card_wait_s=BATCH_WAIT_S, say=lines.say)
    assert registered == [CARD_A.hex()]
    assert [card["uid"] for card in summary["personalized"]] == [CARD_A.hex()]
    assert [failure["reason"] for failure in summary["failed"]] == ["card_not_removed"]
    assert lines.lines[:2] == ["present card 1 of 3 at pcsc",
                               f"card 1 of 3: {CARD_A.hex()} personalized and registered"]
    assert lines.lines[2] == "take the card away"


def test_a_card_presented_again_at_pcsc_is_skipped_and_the_next_one_taken(pcscd: object) -> None:
    masters = new_master_keys(SYSTEM_ID)
    registered: list[str] = []
    lines = Lines()
    card_a = Ntag424Card(CARD_A)
    slot = VpcdCard(card_a)
    slot.insert()
    try:
        thread, summary = run_batch("pcsc", 2, masters, lines, registered)
        lines.wait_for("take the card away")
        slot.remove()
        present = lines.wait_for("present card 2 of 2")
        slot.insert(card_a)  # the same card again
        skipped = lines.wait_for(f"card {CARD_A.hex()} was personalized earlier in this run",
                                 present)
        slot.remove()
        lines.wait_for("present card 2 of 2", skipped)
        slot.insert(Ntag424Card(CARD_B))
        thread.join(EVENT_WAIT_S)
    finally:
        slot.close()
    assert not thread.is_alive()
    assert registered == [CARD_A.hex(), CARD_B.hex()]
    assert summary["failed"] == [] and summary["interrupted"] is False
    assert [card["fresh"] for card in summary["personalized"]] == [True, True]


def test_a_card_pulled_during_its_key_change_is_not_counted_and_finished_when_back(
        pcscd: object) -> None:
    masters = new_master_keys(SYSTEM_ID)
    registered: list[str] = []
    lines = Lines()
    card = SlowChangeKeyCard(Ntag424Card(CARD_A), delay_s=0.3)
    slot = VpcdCard(card)
    slot.insert()
    try:
        thread, summary = run_batch("pcsc", 1, masters, lines, registered)
        assert card.changing.wait(EVENT_WAIT_S), lines.lines
        slot.remove()  # pulled while its keys change
        left = lines.wait_for(f"card {CARD_A.hex()} left before it was done")
        lines.wait_for("present card 1 of 1", left)
        slot.insert(card)
        thread.join(EVENT_WAIT_S)
    finally:
        slot.close()
    assert not thread.is_alive()
    assert registered == [CARD_A.hex()]
    assert summary["failed"] == [] and len(summary["personalized"]) == 1
    assert fully_personalized(card.card, masters)


def test_a_card_presented_again_at_nfcpy_is_skipped_and_the_next_one_taken() -> None:
    masters = new_master_keys(SYSTEM_ID)
    registered: list[str] = []
    lines = Lines()
    card_a = Ntag424Card(CARD_A)
    port = free_udp_port()
    served = NfcUdpCard(card_a, port, fwi=8).start()
    try:
        thread, summary = run_batch(f"udp:127.0.0.1:{port}", 2, masters, lines, registered)
        lines.wait_for("take the card away")
        served.stop()
        present = lines.wait_for("present card 2 of 2")
        served = NfcUdpCard(card_a, port, fwi=8).start()  # the same card again
        skipped = lines.wait_for(f"card {CARD_A.hex()} was personalized earlier in this run",
                                 present)
        served.stop()
        lines.wait_for("present card 2 of 2", skipped)
        served = NfcUdpCard(Ntag424Card(CARD_B), port, fwi=8).start()
        thread.join(EVENT_WAIT_S)
    finally:
        served.stop()
    assert not thread.is_alive()
    assert registered == [CARD_A.hex(), CARD_B.hex()]
    assert summary["failed"] == [] and summary["interrupted"] is False


def test_a_card_the_ledger_has_under_another_program_is_refused_untouched(
        ledger_url: str, key_file: tuple[Path, MasterKeys]) -> None:
    keys, _masters = key_file
    LedgerClient(ledger_url).register_card(CARD_A.hex(), "loyalty", "EUR", "M1", 0)
    card = Ntag424Card(CARD_A)
    port = free_udp_port()
    with NfcUdpCard(card, port, fwi=8):
        process = Process(personalize_argv(f"udp:127.0.0.1:{port}", keys, ledger_url, 1))
        try:
            status, summary, _lines = process.finish()
        finally:
            process.kill()
    assert status == 1
    assert [failure["reason"] for failure in summary["failed"]] == ["card_exists"]
    assert card.keys == [FACTORY_KEY] * len(card.keys)  # never changed


def test_a_dead_ledger_stops_the_run_before_any_card_is_touched(
        key_file: tuple[Path, MasterKeys]) -> None:
    keys, _masters = key_file
    card = Ntag424Card(CARD_A)
    port = free_udp_port()
    with NfcUdpCard(card, port, fwi=8) as served:
        process = Process(personalize_argv(f"udp:127.0.0.1:{port}", keys,
                                           "http://127.0.0.1:1", 1))
        try:
            status, _summary, lines = process.finish()
        finally:
            process.kill()
        assert served.counts["activations"] == 0
    assert status == 1
    assert len(lines) == 1 and "no card was touched" in lines[0]
    assert "Traceback" not in lines[0]


@pytest.mark.parametrize(("programs", "fragment"), [
    ('[programs.loyalty]\nversion = 1\ncurrency = "EUR"\n[programs.loyalty.points]\n'
     'earn_bp = 100\n', "--program 'gift' is not in"),
    ('[programs.gift]\nversion = 1\ncurrency = "USD"\n[programs.gift.gift]\n'
     'expiry_days = 365\n', "in USD"),
])
def test_a_program_not_in_the_stores_file_stops_the_run_before_any_card(
        programs: str, fragment: str, tmp_path: Path, ledger_url: str,
        key_file: tuple[Path, MasterKeys]) -> None:
    keys, _masters = key_file
    (tmp_path / "programs.toml").write_text(programs)
    result = subprocess.run(
        personalize_argv("udp:127.0.0.1:1", keys, ledger_url, 1,
                         "--programs", str(tmp_path / "programs.toml")),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=PROCESS_WAIT_S)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and len(result.stderr.splitlines()) == 1


def test_ctrl_c_during_a_key_change_finishes_that_card_and_exits_130(
        pcscd: object, ledger_url: str, key_file: tuple[Path, MasterKeys]) -> None:
    keys, masters = key_file
    card = SlowChangeKeyCard(Ntag424Card(CARD_A), delay_s=0.3)
    with VpcdCard(card):
        process = Process(personalize_argv("pcsc", keys, ledger_url, 2))
        try:
            assert card.changing.wait(EVENT_WAIT_S), process.lines.lines
            process.process.send_signal(signal.SIGINT)
            status, summary, lines = process.finish()
        finally:
            process.kill()
    assert status == 130
    assert fully_personalized(card.card, masters)
    assert LedgerClient(ledger_url).card(CARD_A.hex())["value_minor"] == 5000
    assert summary["interrupted"] is True and summary["failed"] == []
    assert [entry["uid"] for entry in summary["personalized"]] == [CARD_A.hex()]
    assert "stopping once this card is finished" in "\n".join(lines)
    assert lines[-1].startswith("tilltap card personalize: interrupted after 1 of 2 cards")
    assert not any("Traceback" in line for line in lines)


def test_ctrl_c_while_waiting_at_an_nfcpy_reader_stops_instead_of_skipping_a_card(
        ledger_url: str, key_file: tuple[Path, MasterKeys]) -> None:
    keys, _masters = key_file
    port = free_udp_port()  # no card is served there: the reader waits
    process = Process(personalize_argv(f"udp:127.0.0.1:{port}", keys, ledger_url, 3))
    try:
        process.lines.wait_for("present card 1 of 3")
        process.process.send_signal(signal.SIGINT)
        status, summary, lines = process.finish()
    finally:
        process.kill()
    assert status == 130
    assert summary == {"personalized": [], "failed": [], "interrupted": True}
    assert lines == [f"present card 1 of 3 at udp:127.0.0.1:{port}",
                     "tilltap card personalize: interrupted after 0 of 3 cards personalized; "
                     "no card was left half-done"]
