"""A lost or damaged card replaced at the ledger (ledger/replace_sql.py): the old card is
blocked, its value and points move to the new card in one balanced `transfer`, the
replacement is kept for audit, the customer link moves, and the card feed carries it.
Every refusal changes nothing. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Books
from ledger.auth import dump_logins, new_login
from ledger.customers import Customers
from ledger.errors import BatchInvalid, Forbidden, LedgerRejected, NotFound
from ledger.personal_crypto import CustomerKey
from ledger.server import LedgerServer, serve
from tests.ledger.builders import (
    assert_balanced,
    batch,
    hold_request,
    issue,
    posted_legs,
    posted_rows,
    purchase,
    read_feed,
    refund,
    snapshot,
)
from tools.card_ledger import CardClient
from tools.cli import main


@pytest.fixture
def used(books: Books) -> Books:
    """C1 loaded with 50.00, then spent 10.00 earning 10 points: 40.00 and 10 points."""
    books.post_batch(batch("gw1-1", issue("T1-1"), purchase("T1-2")))
    return books


def everything(books: Books, dsn: str) -> dict[str, Any]:
    """The books as a refused replacement must leave them (alarms included)."""
    return {**snapshot(books), "blocks": books.block_changes(0),
            "replacements": posted_rows(dsn, "SELECT * FROM card_replacements"),
            "links": posted_rows(dsn, "SELECT card, customer_id FROM customer_cards"),
            "alarms": books.alarms()}


def test_the_value_and_points_move_to_the_new_card_balanced_and_the_old_card_is_blocked(
        used: Books, dsn: str) -> None:
    before = used.trial_balance()
    done = used.replace_card("C1", "N1", "alice", "lost on the bus")
    assert (done["value_minor"], done["points"], done["txn_id"]) == (4000, 10, "XFER-N1")
    old, new = used.card_detail("C1"), used.card_detail("N1")
    assert old is not None and new is not None
    assert (old["value_minor"], old["points"]) == (0, 0)
    assert (new["value_minor"], new["points"], new["program"], new["currency"]) == (
        4000, 10, "gift", "EUR")
    assert old["blocked"] is True and old["block"]["reason"] == "replaced by N1"
    assert old["block"]["login"] == "alice" and new["blocked"] is False
    assert sorted(posted_legs(dsn, "XFER-N1")) == [
        ("card_points", "C1", "PTS", 10), ("card_points", "N1", "PTS", -10),
        ("card_value", "C1", "EUR", 4000), ("card_value", "N1", "EUR", -4000)]
    assert used.trial_balance() == before
    assert_balanced(used)
    assert posted_rows(dsn, "SELECT old_card, new_card, txn_id, reason, login FROM"
                            " card_replacements") == [
        ("C1", "N1", "XFER-N1", "lost on the bus", "alice")]
    assert used.place_hold(hold_request("H1", card="N1", amount_minor=4000)).created


def test_the_feed_carries_the_replacement_for_both_cards(used: Books) -> None:
    used.replace_card("C1", "N1", "alice", "damaged")
    everything, _ = read_feed(used, "0.0", expected=4)
    earlier, changes = everything[:2], everything[2:]
    assert [(c["card"], c["kind"], c["replaced_by"], c["gateway_id"]) for c in changes] == [
        ("C1", "transfer", "N1", "DESK"), ("N1", "transfer", "N1", "DESK")]
    assert (changes[0]["card_value_minor"], changes[0]["points"]) == (4000, 10)
    assert [(c["kind"], c["replaced_by"]) for c in earlier] == [
        ("issue", None), ("purchase", None)]


def test_a_card_registered_at_the_desk_with_nothing_on_it_may_be_the_new_card(
        used: Books) -> None:
    used.register_card("N1", "gift", "EUR", "M1", 0)
    used.replace_card("C1", "N1", "alice", "lost")
    assert used.card_balance("N1")["value_minor"] == 4000  # type: ignore[index]


def test_a_card_a_person_blocked_as_lost_is_replaced(used: Books) -> None:
    used.block_card("C1", True, "reported lost", "bob")
    used.replace_card("C1", "N1", "alice", "lost")
    detail = used.card_detail("C1")
    assert detail is not None and detail["block"]["reason"] == "reported lost"
    assert used.card_balance("N1")["value_minor"] == 4000  # type: ignore[index]


def test_the_customer_link_moves_to_the_new_card(used: Books, dsn: str) -> None:
    customers = Customers(used, CustomerKey(os.urandom(32)))
    customer = customers.create({"name": "Ada"}, "alice")["customer_id"]
    customers.link(customer, "C1", "alice")
    done = used.replace_card("C1", "N1", "alice", "lost")
    assert done["customer_id"] == customer
    assert posted_rows(dsn, "SELECT card, customer_id FROM customer_cards") == [
        ("N1", customer)]
    assert posted_rows(dsn, "SELECT action FROM customer_audit WHERE customer_id = ?"
                            " ORDER BY id DESC LIMIT 1", customer) == [("card_replaced",)]


def refused(books: Books, dsn: str, old: str, new: str, reason: str,
            kind: type[LedgerRejected] = LedgerRejected) -> None:
    """Replacing `old` by `new` is refused with `reason` and changes nothing."""
    before = everything(books, dsn)
    with pytest.raises(kind) as refusal:
        books.replace_card(old, new, "alice", "lost")
    assert refusal.value.reason == reason, refusal.value.detail
    assert everything(books, dsn) == before


def test_an_unknown_old_card_is_card_unknown(used: Books, dsn: str) -> None:
    refused(used, dsn, "C9", "N1", "card_unknown", NotFound)


def test_a_card_with_an_open_hold_is_card_held(used: Books, dsn: str) -> None:
    used.place_hold(hold_request("H1", amount_minor=100))
    refused(used, dsn, "C1", "N1", "card_held")


def test_a_new_card_with_history_or_value_is_card_has_history(used: Books, dsn: str) -> None:
    used.post_batch(batch("gw1-2", issue("T1-3", card="C2", amount_minor=0, program="gift")))
    used.post_batch(batch("gw1-3", issue("T1-4", card="C3", amount_minor=100)))
    refused(used, dsn, "C1", "C3", "card_has_history")
    used.post_batch(batch("gw1-4", purchase("T1-5", card="C2", card_value_minor=0, points=5,
                                            amount_minor=300)))
    refused(used, dsn, "C1", "C2", "card_has_history")


def test_a_new_card_of_another_program_or_currency_is_refused(used: Books, dsn: str) -> None:
    used.register_card("N1", "loyalty", "EUR", "M1", 0)
    used.register_card("N2", "gift", "USD", "M1", 0)
    refused(used, dsn, "C1", "N1", "card_program_mismatch", BatchInvalid)
    refused(used, dsn, "C1", "N2", "card_program_mismatch", BatchInvalid)


def test_a_card_replaced_before_or_itself_is_refused(used: Books, dsn: str) -> None:
    used.replace_card("C1", "N1", "alice", "lost")
    refused(used, dsn, "C1", "N2", "card_replaced")
    refused(used, dsn, "N1", "N1", "card_same", BatchInvalid)
    refused(used, dsn, "C2", "N1", "card_unknown", NotFound)


def test_a_card_blocked_for_an_overdraft_is_card_blocked(used: Books, dsn: str) -> None:
    used.post_batch(batch("gw1-2", purchase("T1-3", card_value_minor=6000, points=0,
                                            auth="offline")))
    detail = used.card_detail("C1")
    assert detail is not None and detail["blocked"] and detail["value_minor"] < 0
    refused(used, dsn, "C1", "N1", "card_blocked")


@pytest.fixture
def deployed(dsn: str, tmp_path: Path) -> Iterator[tuple[LedgerServer, dict[str, str]]]:
    made = {"root": new_login("root", "admin"), "tech": new_login("tech", "cards"),
            "gw1": new_login("gw1", "gateway", "gw1", ("T1",), ("M1",))}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins)
    yield server, {name: token for name, (_, token) in made.items()}
    server.stop()


def post(server: LedgerServer, token: str, card: str, body: Any) -> Any:
    """POST /v1/cards/<card>/replace with any body, through the client's transport."""
    client = CardClient(server.url, 30, token=token)
    return client._request("POST", f"/v1/cards/{card}/replace", json.dumps(body).encode(), 30)


def test_over_http_an_admin_replaces_and_other_roles_and_bad_bodies_are_refused(
        deployed: tuple[LedgerServer, dict[str, str]]) -> None:
    server, tokens = deployed
    server.books.post_batch(batch("gw1-1", issue("T1-1"), purchase("T1-2")))
    for name in ("tech", "gw1"):
        with pytest.raises(Forbidden):
            post(server, tokens[name], "C1", {"new_card": "N1", "reason": "lost"})
    for body in ({"new_card": "N1"}, {"new_card": "N1", "reason": " "},
                 {"new_card": "N 1", "reason": "lost"}, {"new_card": 5, "reason": "lost"}):
        with pytest.raises(BatchInvalid) as malformed:
            post(server, tokens["root"], "C1", body)
        assert malformed.value.reason == "request_malformed"
    done = post(server, tokens["root"], "C1", {"new_card": "N1", "reason": "lost"})
    assert (done["new_card"], done["login"], done["value_minor"]) == ("N1", "root", 4000)
    assert server.books.card_balance("N1")["value_minor"] == 4000  # type: ignore[index]


def test_the_cli_replaces_and_a_refusal_or_outage_is_one_line(
        deployed: tuple[LedgerServer, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`tilltap card replace OLD NEW --reason`: the replacement as JSON; card_held or a
    missing reason exit 2, nobody listening exit 1, one line each."""
    server, tokens = deployed
    server.books.post_batch(batch("gw1-1", issue("T1-1"), purchase("T1-2")))
    root = tmp_path / "root.token"
    root.write_text(tokens["root"])
    where = ("--ledger-url", server.url, "--ledger-token-file", str(root))
    server.books.place_hold(hold_request("H1", amount_minor=100, ttl_s=600))
    for argv, reason in ((("C1", "N1", "--reason", "lost"), "card_held"),
                         (("C1", "N1", "--reason", " "), "--reason"),
                         (("C1", "C1", "--reason", "lost"), "differ")):
        assert main(["card", "replace", *argv, *where]) == 2
        err = capsys.readouterr().err
        assert reason in err and len(err.splitlines()) == 1, err
    server.books.void_hold("H1")
    assert main(["card", "replace", "C1", "N1", "--reason", "lost", *where]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["old_card"], shown["new_card"], shown["value_minor"], shown["points"]) == (
        "C1", "N1", 4000, 10)
    assert main(["card", "replace", "C2", "N2", "--reason", "lost", "--ledger-url",
                 "http://127.0.0.1:9", "--ledger-token-file", str(root)]) == 1
    err = capsys.readouterr().err
    assert "unavailable" in err and len(err.splitlines()) == 1


def test_an_offline_sale_of_the_old_card_posted_later_is_kept_alarmed_and_exposure(
        used: Books) -> None:
    used.replace_card("C1", "N1", "alice", "lost")
    result = used.post_batch(batch("gw1-2", purchase("T1-3", card_value_minor=700, points=0,
                                                     auth="offline")))
    assert result.posted == 1
    assert used.card_balance("C1")["value_minor"] == -700  # type: ignore[index]
    assert used.card_balance("N1")["value_minor"] == 4000  # type: ignore[index]
    alarms = [a for a in used.alarms() if a["reason"] == "replaced_card_used"]
    assert len(alarms) == 1 and "T1-3" in alarms[0]["detail"]
    exposure = used.report("exposure").to_json()
    assert "C1" in json.dumps(exposure)
    assert_balanced(used)


def test_a_refund_on_the_new_card_may_name_a_sale_of_the_old_card(used: Books) -> None:
    """The gateways moved the old card's sales to the new card; its refunds name them."""
    used.replace_card("C1", "N1", "alice", "lost")
    used.replace_card("N1", "N2", "alice", "damaged too")
    result = used.post_batch(batch("gw1-2", refund("T1-3", card="N2", ref_txn_id="T1-2",
                                                   card_value_minor=400, points=4)))
    assert (result.posted, result.refused) == (1, ())
    assert used.card_balance("N2")["value_minor"] == 4400  # type: ignore[index]
    assert used.card_balance("N2")["points"] == 6  # type: ignore[index]
    on_old = used.post_batch(batch("gw1-3", refund("T1-4", card="C1", ref_txn_id="T1-2",
                                                   card_value_minor=100, points=0)))
    assert [r.reason for r in on_old.refused] == ["refund_mismatch"]
    assert_balanced(used)
