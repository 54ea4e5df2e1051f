"""A card blocked at the ledger is blocked for every store: holds on it are refused
``card_blocked``, the block is audited (reason, time, login), and gateways read the changes
from a feed with a cursor. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Books
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.errors import BatchInvalid, Forbidden, HoldRefused, NotFound
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, hold_request, issue


@pytest.fixture
def issued(books: Books) -> Books:
    """Books where card C1 holds 50.00 and C2 holds 50.00."""
    books.post_batch(batch("gw1-1", issue("T1-1"), issue("T1-2", card="C2")))
    return books


def test_a_blocked_card_is_refused_a_hold_and_an_unblocked_one_is_held_again(
        issued: Books) -> None:
    """Holds on a blocked card are card_blocked; other cards and the unblocked card are held."""
    issued.block_card("C1", True, "lost", "alice")
    with pytest.raises(HoldRefused) as refused:
        issued.place_hold(hold_request("H1"))
    assert refused.value.reason == "card_blocked"
    assert issued.place_hold(hold_request("H2", card="C2")).created
    issued.block_card("C1", False, "found", "alice")
    assert issued.place_hold(hold_request("H3")).created


def test_a_block_is_kept_with_its_reason_time_and_login_and_shown_on_the_card(
        issued: Books) -> None:
    """The card shows blocked, why, when and by whom; blocking twice changes nothing."""
    first = issued.block_card("C1", True, "stolen", "alice")
    again = issued.block_card("C1", True, "stolen again", "bob")
    assert (first["changed"], again["changed"]) == (True, False)
    detail = issued.card_detail("C1")
    assert detail is not None and detail["blocked"] is True
    assert detail["block"]["reason"] == "stolen" and detail["block"]["login"] == "alice"
    assert detail["value_minor"] == 5000
    assert detail["last_stores"][0]["gateway"] == "gw1"
    assert issued.card_detail("C2")["blocked"] is False  # type: ignore[index]


def test_blocking_an_unknown_card_is_card_unknown(issued: Books) -> None:
    """Only a card the ledger knows can be blocked."""
    with pytest.raises(NotFound) as unknown:
        issued.block_card("C9", True, "lost", "alice")
    assert unknown.value.reason == "card_unknown"


def test_the_feed_gives_each_change_once_from_its_cursor(issued: Books) -> None:
    """Changes come oldest first after the cursor; asked again from `next`, nothing new."""
    issued.block_card("C1", True, "lost", "alice")
    issued.block_card("C2", True, "lost", "alice")
    issued.block_card("C1", False, "found", "alice")
    feed = issued.block_changes(0)
    assert [(c["card"], c["blocked"]) for c in feed["blocks"]] == [
        ("C1", True), ("C2", True), ("C1", False)]
    assert issued.block_changes(feed["next"]) == {"blocks": [], "next": feed["next"]}
    assert len(issued.block_changes(feed["blocks"][0]["id"])["blocks"]) == 2


@pytest.fixture
def deployed(dsn: str, tmp_path: Path) -> Iterator[tuple[LedgerServer, dict[str, str]]]:
    """A ledger with a gateway, a reader and a cards login (loopback, no TLS)."""
    made = {
        "gw1": new_login("gw1", "gateway", "gw1", ("T1",), ("M1",)),
        "alice": new_login("alice", "reader"),
        "tech": new_login("tech", "cards"),
    }
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins)
    yield server, {name: token for name, (_, token) in made.items()}
    server.stop()


def test_over_http_a_cards_login_blocks_and_the_gateway_is_refused_and_reads_the_feed(
        deployed: tuple[LedgerServer, dict[str, str]]) -> None:
    """POST/DELETE /v1/cards/<card>/block for the cards role; gateway holds card_blocked."""
    server, tokens = deployed
    server.books.post_batch(batch("gw1-1", issue("T1-1")))
    tech, gateway = (LedgerClient(server.url, 30, token=tokens[name]) for name in ("tech", "gw1"))
    blocked = tech.block_card("C1", "reported stolen")
    assert blocked["blocked"] is True and blocked["block"]["login"] == "tech"
    with pytest.raises(HoldRefused) as refused:
        gateway.place_hold("gw1-H1", "C1", "EUR", 100, 60, "T1", "M1")
    assert refused.value.reason == "card_blocked"
    assert gateway.card("C1")["blocked"] is True
    feed = gateway.block_changes(0)
    assert [change["card"] for change in feed["blocks"]] == ["C1"]
    assert tech.unblock_card("C1")["blocked"] is False
    assert gateway.block_changes(feed["next"])["blocks"][0]["blocked"] is False
    assert gateway.place_hold("gw1-H2", "C1", "EUR", 100, 60, "T1", "M1")["status"] == "open"


def test_over_http_only_cards_and_admin_logins_block_and_a_block_needs_a_reason(
        deployed: tuple[LedgerServer, dict[str, str]]) -> None:
    """A gateway or reader may not block; an empty reason is request_malformed."""
    server, tokens = deployed
    server.books.post_batch(batch("gw1-1", issue("T1-1")))
    for name in ("gw1", "alice"):
        with pytest.raises(Forbidden):
            LedgerClient(server.url, 30, token=tokens[name]).block_card("C1", "lost")
    with pytest.raises(BatchInvalid) as malformed:
        LedgerClient(server.url, 30, token=tokens["tech"]).block_card("C1", " ")
    assert malformed.value.reason == "request_malformed"
    with pytest.raises(BatchInvalid):
        LedgerClient(server.url, 30, token=tokens["alice"]).block_changes(-1)
