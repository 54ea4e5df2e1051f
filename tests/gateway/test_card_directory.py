"""Cards asked of the ledger off the card lock: a blocked ledger delays only the card it is
asked about, and an unknown card is asked again only after NEGATIVE_TTL_S."""

from __future__ import annotations

import threading
from typing import Any

from gateway.authorize import decide
from gateway.card_directory import NEGATIVE_MAX, NEGATIVE_TTL_S, CardDirectory
from gateway.cards import CardBook
from protocol import txn
from tests.support.card_loads import approve_load
from tools.demo import DEMO_PROGRAMS

NOW_S = 1_764_000_000.0
WAIT_S = 10.0


def _request(card: str, kind: int = txn.KIND_INQUIRY) -> dict[str, Any]:
    return {"terminal": "T1", "merchant": "M1", "card": card, "kind": kind, "currency": "EUR",
            "amount_minor": 0, "request": 1, "time": int(NOW_S)}


def test_a_ledger_that_hangs_on_one_card_does_not_delay_the_others() -> None:
    book = CardBook(DEMO_PROGRAMS, ledger=True)
    issue = {"terminal": "T1", "seq": 1, "prev": bytes(32), "time": int(NOW_S),
             "merchant": "M1", "card": "known", "kind": txn.KIND_ISSUE, "currency": "EUR",
             "amount_minor": 500, "card_value_minor": 500, "bonus_minor": 0, "points": 0,
             "program": "gift", "auth_mode": txn.AUTH_ONLINE}
    book.apply(issue, book.check(approve_load(book, issue)))
    asked = threading.Event()
    release = threading.Event()

    def hanging_ledger(card: str) -> dict[str, Any] | None:
        asked.set()
        release.wait(WAIT_S)
        return {"program": "gift", "currency": "EUR", "value_minor": 300, "points": 0}

    directory = CardDirectory(hanging_ledger)
    answers: dict[str, dict[str, Any]] = {}
    stranger = threading.Thread(target=lambda: answers.update(
        stranger=decide(book, None, _request("stranger"), NOW_S, directory)))
    stranger.start()
    assert asked.wait(WAIT_S)
    # The ledger is still answering about the stranger: a known card is decided meanwhile.
    assert decide(book, None, _request("known"), NOW_S, directory)["value_minor"] == 500
    assert not release.is_set() and stranger.is_alive()
    release.set()
    stranger.join(WAIT_S)
    assert answers["stranger"]["value_minor"] == 300  # adopted with the ledger's balance


def test_an_unknown_card_is_remembered_for_a_while_and_the_memory_is_bounded() -> None:
    now = [0.0]
    asked: list[str] = []

    def ledger(card: str) -> dict[str, Any] | None:
        asked.append(card)
        return None

    directory = CardDirectory(ledger, clock=lambda: now[0])
    assert directory.find("c1") is None and directory.find("c1") is None
    assert asked == ["c1"] and directory.remembered_unknown == 1
    now[0] = NEGATIVE_TTL_S + 0.1
    assert directory.find("c1") is None and asked == ["c1", "c1"]
    for number in range(NEGATIVE_MAX + 5):
        directory.find(f"x{number}")
    assert len(directory._unknown) == NEGATIVE_MAX
    assert directory.find("x0") is None and asked[-1] == "x0"  # the oldest was forgotten
