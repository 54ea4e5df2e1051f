"""The gateway's enrolment stage and recognition (gateway/enrol.py) on their own queues, no
broker: a sealed enrol request checked like an authorization request (MAC, fields, card:
blocked, genuine and new tap, known), the ledger asked (a real ledger server, SQLite, with its
customer key), and the signed answer; the first name an approval carries afterwards."""

from __future__ import annotations

import logging
import queue
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.card_sun import read_sun_url
from gateway.acks import AckOut
from gateway.authorize import AuthorizeStage
from gateway.card_auth import CardAuthenticator, CardKeys
from gateway.card_directory import CardDirectory
from gateway.cards import CardBook
from gateway.enrol import (
    ENROL_WAIT_MAX_MS,
    PASSED_ON,
    EnrolStage,
    GreetingAuthorizeStage,
    Greetings,
    GreetingVerifier,
    enrol_route,
    message_type,
    take_greeting,
)
from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from gateway.verify import Verifier
from ledger.client import LedgerClient
from ledger.errors import LedgerRejected, NotFound
from ledger.personal_crypto import load_key_file, new_key_file
from ledger.server import LedgerServer, serve
from protocol import cbor, cose, messages, reason_texts, sealed, topics, txn
from tests.ledger.builders import batch, issue
from tools.cards import new_master_keys
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import pick_free_port
from tools.personalize import personalize
from tools.simulator.ntag424_card import Ntag424Card

KEY = bytes(range(32))
CARD, OTHER_CARD = "04a1a2a3a4a5a6", "04b1b2b3b4b5b6"
PHONE, PHONE_E164 = "+351 912 345 678", "+351912345678"
UP = topics.up("M1", "T1", topics.LEAF_AUTH)
DOWN = topics.down("M1", "T1", topics.LEAF_AUTH)


def _registry() -> TerminalRegistry:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    return registry


def _request(request: int = 7, key: bytes = KEY, **fields: Any) -> bytes:
    values: dict[str, Any] = {"terminal": "T1", "request": request, "time": int(time.time()),
                              "merchant": "M1", "card": CARD, "phone": PHONE,
                              "first_name": "Ana", "consent": True}
    values.update(fields)
    return sealed.seal(key, messages.TYPE_ENROL_REQUEST, values)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerServer]:
    new_key_file(tmp_path / "customer.key")
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}",
                   customer_key=load_key_file(tmp_path / "customer.key"))
    sold = batch("gw1-1", issue("T1-1", CARD, program="gift", merchant="M1"),
                 issue("T1-2", OTHER_CARD, program="gift", merchant="M1"))
    assert server.books.post_batch(sold).status == "posted"
    yield server
    server.stop()


class Rig:
    def __init__(self, ledger_url: str | None, authenticator: CardAuthenticator | None = None
                 ) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.notices: queue.Queue[AckOut | None] = queue.Queue()
        self.stats = Stats()
        self.cards = CardBook(DEMO_PROGRAMS, authenticator=authenticator, ledger=True)
        self.client = LedgerClient(ledger_url, 2.0) if ledger_url else None
        self.greetings = Greetings()
        self.directory = CardDirectory(self._card) if self.client else None
        self.stage = EnrolStage(Verifier(_registry()), _registry(), self.cards, self.stats,
                                lambda topic, payload: self.published.append((topic, payload)),
                                queue.Queue(), self.notices, self.client, self.greetings,
                                self.directory)

    def _card(self, card: str) -> dict[str, Any] | None:
        assert self.client is not None
        try:
            return self.client.card(card)
        except NotFound:
            return None

    def enrol(self, payload: bytes, arrived_s: float | None = None) -> dict[str, Any] | None:
        before = len(self.published)
        self.stage.handle((UP, payload, time.monotonic() if arrived_s is None else arrived_s))
        if len(self.published) == before:
            return None
        topic, answer = self.published[-1]
        assert topic == DOWN
        return sealed.open_message(answer, messages.TYPE_ENROL_RESPONSE, KEY)


def test_the_route_sends_enrolments_to_their_queue_and_all_else_to_authorization() -> None:
    taken: dict[str, list[bytes]] = {"auth": [], "enrol": []}
    route = enrol_route(lambda topic, payload: taken["auth"].append(payload) is None,
                        lambda topic, payload: taken["enrol"].append(payload) is None)
    auth = sealed.seal(KEY, messages.TYPE_AUTH_REQUEST, {
        "terminal": "T1", "request": 1, "time": 1, "merchant": "M1", "card": CARD,
        "kind": txn.KIND_INQUIRY, "currency": "EUR", "amount_minor": 0})
    enrolment, cut = _request(), _request()[:-3]
    for payload in (enrolment, auth, b"\x00garbage", cut):
        assert route(UP, payload)
    # What cannot be read goes to the authorize stage, which answers it with a notice.
    assert taken == {"enrol": [enrolment], "auth": [auth, b"\x00garbage", cut]}
    assert message_type(b"\x00garbage") is None
    assert message_type(auth) == messages.TYPE_AUTH_REQUEST


def test_an_enrolment_reaches_the_ledger_and_answers_the_first_name(
        ledger: LedgerServer) -> None:
    rig = Rig(ledger.url)
    answer = rig.enrol(_request(request=41))
    assert answer is not None
    assert (answer["request"], answer["approved"], answer["first_name"]) == (41, True, "Ana")
    assert "joined" not in answer and "reason" not in answer
    assert rig.greetings.get(CARD) == "Ana"
    customer = ledger.books.read(lambda session, now: session.fetch(
        "SELECT customer_id FROM customer_cards WHERE card = ?", (CARD,)))
    assert len(customer) == 1
    # The other card, the same phone: it joins.
    again = rig.enrol(_request(request=42, card=OTHER_CARD, first_name=None))
    assert again is not None and (again["approved"], again["joined"]) == (True, True)
    assert again["first_name"] == "Ana" and rig.greetings.get(OTHER_CARD) == "Ana"
    assert rig.stats.snapshot()["enrol_approved"] == 2


def test_refusals_are_signed_declines_with_the_reason(ledger: LedgerServer) -> None:
    rig = Rig(ledger.url)
    cases = [
        (_request(request=1, phone=None), "field_missing"),  # neither phone nor e-mail
        (_request(request=2, card="04ffffffffffff"), "card_unknown"),  # never sold
        (_request(request=3, phone="12"), "phone_invalid"),  # the ledger's reason
    ]
    for payload, reason in cases:
        answer = rig.enrol(payload)
        assert answer is not None and (answer["approved"], answer["reason"]) == (False, reason)
        assert "first_name" not in answer
    rig.cards.hotlist.add(CARD)
    answer = rig.enrol(_request(request=4))
    assert answer is not None and answer["reason"] == "card_blocked"
    customers = ledger.books.read(lambda session, now: session.fetch(
        "SELECT COUNT(*) FROM customers", ()))
    assert customers[0][0] == 0  # nothing was made for any of them
    assert rig.greetings.get(CARD) is None


def test_a_ledger_refusal_the_terminal_cannot_mend_is_ledger_refused() -> None:
    """The ledger's enrolment reasons that are protocol codes reach the terminal as they are
    (gateway/enrol.py PASSED_ON, each in protocol/reasons.py); any other is ledger_refused
    and counted: the gateway and the ledger disagree, not the customer's details."""
    assert all(reason in reason_texts.DESCRIPTIONS for reason in PASSED_ON)
    rig = Rig(None)
    rig.cards.adopt(CARD, {"card": CARD, "program": "gift", "currency": "EUR",
                           "value_minor": 0, "points": 0}, time.time())
    refusing = Refusing()
    rig.stage.ledger = refusing  # type: ignore[assignment]
    for request, (reason, told) in enumerate((("card_linked", "card_linked"),
                                              ("not_permitted", "ledger_refused"),
                                              ("field_type", "ledger_refused")), start=1):
        refusing.reason = reason
        answer = rig.enrol(_request(request=request))
        assert answer is not None and (answer["approved"], answer["reason"]) == (False, told)
    assert rig.stats.snapshot()["enrol_ledger_refused.not_permitted"] == 1


class Refusing:
    """A ledger that refuses every enrolment with `reason`."""

    reason = "card_linked"

    def enrol(self, enrolment: dict[str, Any]) -> dict[str, Any]:
        raise LedgerRejected(self.reason, "refused", 409)


def test_a_forged_request_gets_an_unsigned_notice_and_a_stale_one_no_answer(
        ledger: LedgerServer) -> None:
    rig = Rig(ledger.url)
    assert rig.enrol(_request(key=bytes(32))) is None
    notice = rig.notices.get_nowait()
    assert notice is not None and (notice.notice_reason, notice.notice_sealed) == (
        "mac_invalid", False)
    late = time.monotonic() - ENROL_WAIT_MAX_MS / 1000 - 1
    assert rig.enrol(_request(), arrived_s=late) is None
    assert rig.stats.snapshot()["enrol_stale"] == 1


def test_a_ledger_out_of_reach_or_absent_is_host_unavailable() -> None:
    # The card is known here (adopted), the ledger is not listening.
    rig = Rig(f"http://127.0.0.1:{pick_free_port()}")
    rig.cards.adopt(CARD, {"card": CARD, "program": "gift", "currency": "EUR",
                           "value_minor": 0, "points": 0}, time.time())
    answer = rig.enrol(_request())
    assert answer is not None and (answer["approved"], answer["reason"]) == (
        False, "host_unavailable")
    assert rig.stats.snapshot()["enrol_ledger_unavailable"] == 1
    without = Rig(None)
    without.cards.adopt(CARD, {"card": CARD, "program": "gift", "currency": "EUR",
                               "value_minor": 0, "points": 0}, time.time())
    answer = without.enrol(_request())
    assert answer is not None and answer["reason"] == "host_unavailable"


def test_a_tap_is_proved_by_its_sun_and_cannot_be_replayed(ledger: LedgerServer) -> None:
    masters = new_master_keys(b"gw-test")
    card = Ntag424Card(bytes.fromhex(CARD))
    personalize(card.apdu, masters, "https://t.example/c", secrets.token_bytes)
    keys = CardKeys(masters.master(1), masters.master(2), masters.system_id)
    rig = Rig(ledger.url, CardAuthenticator(keys))
    assert rig.enrol(_request(request=1))["reason"] == "card_auth_failed"  # type: ignore[index]
    url = read_sun_url(card.apdu)
    answer = rig.enrol(_request(request=2, sun=url))
    assert answer is not None and answer["approved"], answer
    replayed = rig.enrol(_request(request=3, sun=url))
    assert replayed is not None and replayed["reason"] == "card_replayed"


def test_an_approval_greets_an_enrolled_card_by_first_name_only(ledger: LedgerServer) -> None:
    rig = Rig(ledger.url)
    assert rig.enrol(_request())["approved"]  # type: ignore[index]
    published: list[tuple[str, bytes]] = []
    stage = GreetingAuthorizeStage(
        rig.greetings, GreetingVerifier(_registry()), _registry(), rig.cards, Stats(),
        lambda topic, payload: published.append((topic, payload)), queue.Queue(),
        queue.Queue(), None, rig.directory)
    assert isinstance(stage, AuthorizeStage)

    def inquiry(card: str, request: int, currency: str = "EUR") -> dict[str, Any]:
        payload = sealed.seal(KEY, messages.TYPE_AUTH_REQUEST, {
            "terminal": "T1", "request": request, "time": int(time.time()), "merchant": "M1",
            "card": card, "kind": txn.KIND_INQUIRY, "currency": currency, "amount_minor": 0})
        stage.handle((UP, payload, time.monotonic()))
        return sealed.open_message(published[-1][1], messages.TYPE_AUTH_RESPONSE, KEY)

    greeted = inquiry(CARD, 1)
    assert greeted["approved"] and greeted["first_name"] == "Ana"
    assert "first_name" not in inquiry(OTHER_CARD, 2)  # sold, never enrolled
    declined = inquiry(CARD, 3, currency="USD")
    assert not declined["approved"] and "first_name" not in declined
    # A request that does not verify is no card of anyone's: no name leaks into its notice.
    forged = cose.create(bytes(32), cbor.encode({0: 2, 1: 1, 2: "T1"}), b"T1")
    stage.handle((UP, forged, time.monotonic()))
    assert stage.greeter.card is None


def test_a_ledger_greeting_is_kept_in_memory_and_taken_off_the_card_answer() -> None:
    """The first name in the ledger's card answer (a store's first look-up) is remembered
    for the card, cut to what a message carries, and not passed on with the card; an answer
    without one forgets a name kept before."""
    greetings = Greetings()
    found = {"card": CARD, "value_minor": 500, "greeting": "A" * (messages.TEXT_CHARS_MAX + 5)}
    assert take_greeting(greetings, CARD, found) == {"card": CARD, "value_minor": 500}
    assert greetings.get(CARD) == "A" * messages.TEXT_CHARS_MAX
    assert take_greeting(greetings, CARD, {"card": CARD}) == {"card": CARD}
    assert greetings.get(CARD) is None
    assert take_greeting(greetings, CARD, None) is None


def test_no_log_line_of_the_gateway_holds_the_values(
        ledger: LedgerServer, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(ledger.url)
    with caplog.at_level(logging.DEBUG):
        rig.enrol(_request(email="ana.q@example.org"))
        rig.enrol(_request(card=OTHER_CARD, phone="12"))
    text = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert "card_enrolled" in text
    for value in (PHONE, PHONE_E164, "912345678", "ana.q@example.org", "Ana"):
        assert value not in text


def test_a_ledger_birthday_is_kept_in_memory_and_taken_off_the_card_answer() -> None:
    """The card answer's `birthday` ("MM-DD") goes to memory, never on to the card book;
    anything else there is not a birthday and is forgotten."""
    greetings = Greetings()
    found = {"card": CARD, "value_minor": 500, "birthday": "12-30"}
    assert take_greeting(greetings, CARD, found) == {"card": CARD, "value_minor": 500}
    assert greetings.birthday(CARD) == "12-30" and greetings.get(CARD) is None
    assert take_greeting(greetings, CARD, {"card": CARD, "birthday": "1990-12-30"}) == {
        "card": CARD}
    assert greetings.birthday(CARD) is None
