"""Settlement never lets one bad record hold back the others, and never closes a batch the
ledger did not answer: the ledger refuses transactions one by one and the gateway
quarantines exactly those (listed for a person), closing the batch as posted; a batch with
no answer stays open and goes again under the same id; a batch refused whole (over the
ledger's size limit) is halved until it posts. Run against the real books (`ledger.Books`,
answering what POST /v1/batches answers)."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest

from gateway import store_reports
from gateway.acks import AckOut
from gateway.batches import open_batches
from gateway.cards import CardBook
from gateway.ingest import IngestStage
from gateway.registry import TerminalRegistry
from gateway.settle import settle
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.verify import Verifier
from ledger import Books, open_books
from ledger.errors import BatchTooLarge, LedgerUnavailable
from protocol import topics, txn
from tests.ledger.builders import batch, topup
from tests.support.card_loads import load_auth_id
from tools.demo import DEMO_PROGRAMS

KEY = bytes(range(32))
NOW_S = 1_764_000_000
RECORDS = 21  # an issue, then 20 purchases, of terminal T1
CLASHING = ("T1-7", "T1-16")  # txn_ids the ledger already holds with other content


class BooksLedger:
    """The ledger as the gateway's client sees it, over the real books: an answer is
    `PostResult.to_json()`, a refusal of the whole batch a `LedgerRejected`, as over HTTP.
    `lose_answers`: that many posts are made and their answer lost (LedgerUnavailable);
    `unreachable`: that many posts never arrive; `batch_txn_max`: a size limit."""

    def __init__(self, books: Books, lose_answers: int = 0, unreachable: int = 0,
                 batch_txn_max: int | None = None) -> None:
        self.books = books
        self.lose_answers = lose_answers
        self.unreachable = unreachable
        self.batch_txn_max = batch_txn_max
        self.sent: list[str] = []

    def post_batch(self, document: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(document["batch_id"])
        if self.unreachable:
            self.unreachable -= 1
            raise LedgerUnavailable("connection refused")
        if self.batch_txn_max is not None and len(document["transactions"]) > self.batch_txn_max:
            raise BatchTooLarge("batch_too_large", f"at most {self.batch_txn_max}")
        answer = self.books.post_batch(document).to_json()
        if self.lose_answers:
            self.lose_answers -= 1
            raise LedgerUnavailable("timed out")
        return answer


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """A gateway store holding RECORDS accepted records of terminal T1, card 04a1."""
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    opened = GatewayStore(str(tmp_path / "gw.db"))
    book = CardBook(DEMO_PROGRAMS)
    stage = IngestStage(opened, book, Stats(), queue.Queue(), queue.Queue[AckOut | None]())
    verifier = Verifier(registry)
    records, prev = [], txn.GENESIS_DIGEST
    for seq in range(1, RECORDS + 1):
        amount = 5000 if seq == 1 else 100 + seq
        fields = {"terminal": "T1", "seq": seq, "prev": prev, "time": NOW_S, "merchant": "M1",
                  "card": "04a1", "currency": "EUR", "amount_minor": amount,
                  "card_value_minor": amount, "bonus_minor": 0, "points": 0,
                  "auth_mode": txn.AUTH_ONLINE}
        if seq == 1:
            fields.update(kind=txn.KIND_ISSUE, program="gift",
                          auth_id=load_auth_id(book, "04a1", txn.KIND_ISSUE, amount, NOW_S,
                                               "gift"))
        else:
            fields.update(kind=txn.KIND_PURCHASE)
        record = txn.seal(KEY, fields)
        records.append(verifier.transaction(topics.up("M1", "T1", topics.LEAF_TXN), record,
                                            NOW_S))
        prev = txn.digest(record)
    stage.process(records)
    yield opened
    opened.close()


@pytest.fixture
def books(tmp_path: Path) -> Any:
    """Ledger books that already hold CLASHING, each with other content (another card)."""
    opened = open_books(f"sqlite:///{tmp_path / 'ledger.db'}")
    opened.post_batch(batch("elsewhere-1", *(topup(txn_id, card="X9") for txn_id in CLASHING)))
    yield opened
    opened.close()


def assert_posted_once_but_clashing(books: Books) -> None:
    """Card 04a1 in the books holds its issue less every purchase but the clashing ones, each
    taken once."""
    taken = sum(100 + seq for seq in range(2, RECORDS + 1) if f"T1-{seq}" not in CLASHING)
    assert books.card_balance("04a1")["value_minor"] == 5000 - taken  # type: ignore[index]
    assert books.counts()["transactions"] == RECORDS  # the gateway's but two, and the two


def quarantined(store: GatewayStore) -> list[tuple[str, str]]:
    """(txn_id, reason as kept) of what `tilltap gateway refusals` lists as the ledger's."""
    return [(row["txn_id"], row["reason"]) for row in store_reports.quarantined(store)]


def test_the_ledgers_refusals_are_quarantined_and_the_rest_posts_in_one_post(
    store: GatewayStore, books: Books
) -> None:
    """The ledger posts every valid transaction of the batch and names the ones it refused;
    exactly those are quarantined with its reason, and the batch is closed as settled."""
    ledger = BooksLedger(books)
    result = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert ledger.sent == ["gw1-000001"]
    assert (result.settled, result.pending, result.split) == (["gw1-000001"], [], 0)
    assert result.refused == [(txn_id, "txn_conflict") for txn_id in CLASHING]
    assert result.posted == RECORDS - len(CLASHING)
    assert_posted_once_but_clashing(books)
    assert [txn_id for txn_id, _ in quarantined(store)] == list(CLASHING)
    assert all(reason.startswith("txn_conflict: ") and "in ledger batch gw1-000001" in reason
               for _, reason in quarantined(store))
    assert store_reports.batch_summary(store) == {"settled": 1, "refused": 2}
    assert [row["txn_id"] for row in books.refused_transactions("gw1-000001")] == list(CLASHING)
    again = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert (again.posted, again.refused, ledger.sent) == (0, [], ["gw1-000001"])


def test_a_batch_whose_answer_was_lost_stays_open_and_its_duplicate_quarantines_the_same(
    store: GatewayStore, books: Books
) -> None:
    """No answer (the ledger posted, the answer was lost): the batch is not closed; the next
    run sends the same batch id, the ledger answers duplicate with the same refusals, and
    the same records are quarantined, each once; nothing posts twice."""
    ledger = BooksLedger(books, lose_answers=1)
    first = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert (first.settled, first.pending, first.refused) == ([], ["gw1-000001"], [])
    assert open_batches(store) == ["gw1-000001"] and quarantined(store) == []
    second = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert ledger.sent == ["gw1-000001", "gw1-000001"]
    assert (second.settled, second.duplicates, second.posted) == (["gw1-000001"], 1, 0)
    assert [txn_id for txn_id, _ in quarantined(store)] == list(CLASHING)
    assert_posted_once_but_clashing(books)
    assert len(books.refused_transactions()) == len(CLASHING)


def test_an_unreachable_ledger_leaves_the_batch_open_until_it_answers(
    store: GatewayStore, books: Books
) -> None:
    """A transient failure never closes a batch: it stays open, and a later run posts the same
    batch id."""
    ledger = BooksLedger(books, unreachable=2)
    for _ in range(2):
        assert settle(store, "gw1", ledger).pending == ["gw1-000001"]  # type: ignore[arg-type]
    assert open_batches(store) == ["gw1-000001"]
    assert settle(store, "gw1", ledger).settled == ["gw1-000001"]  # type: ignore[arg-type]
    assert ledger.sent == ["gw1-000001"] * 3 and open_batches(store) == []


def test_an_answer_naming_a_record_not_sent_is_no_answer(
    store: GatewayStore, books: Books
) -> None:
    """An answer that names a refused transaction the batch never held is a broken hop: the
    batch stays open and nothing is quarantined."""

    class Garbled(BooksLedger):
        def post_batch(self, document: dict[str, Any]) -> dict[str, Any]:
            answer = super().post_batch(document)
            answer["refused"].append({"txn_id": "T9-9", "reason": "x", "detail": ""})
            return answer

    result = settle(store, "gw1", Garbled(books))  # type: ignore[arg-type]
    assert result.pending == ["gw1-000001"] and result.settled == []
    assert open_batches(store) == ["gw1-000001"] and quarantined(store) == []


def test_a_batch_over_the_ledgers_size_limit_is_halved_until_it_posts(
    store: GatewayStore, books: Books
) -> None:
    """A refusal of the whole batch (its envelope: batch_too_large) halves it under new ids
    until the halves fit; their refused transactions are quarantined as before."""
    ledger = BooksLedger(books, batch_txn_max=8)
    result = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert result.split == 3  # 21 -> 10 + 11 -> 5 + 5 + 5 + 6
    assert result.posted == RECORDS - len(CLASHING) and result.pending == []
    assert [txn_id for txn_id, _ in quarantined(store)] == list(CLASHING)
    assert store_reports.batch_summary(store) == {"split": 3, "settled": 4, "refused": 2}
    assert_posted_once_but_clashing(books)
