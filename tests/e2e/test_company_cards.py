"""Company cards end to end (issue 18 item 6): the `staff` program of examples/programs.toml
(30.00 EUR of card value per purchase, 50.00 EUR a day) pushed to a simulated till as signed
configuration and validated there, the real gateway deciding online over a real Mosquitto,
the terminal deciding the per-purchase limit offline, the ledger posting what was approved.
Amounts computed by hand; each step says how."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.service import Gateway
from protocol import txn
from tests.e2e.test_programs import LIMITS, back_online_and_settled, books_agree, sale_id, till
from tests.support.stack import running_stack
from tests.support.store_broker import broker_ca, gateway_login
from tools.cli import main
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.programs import load_programs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "programs.toml"
STAFF_ONE, STAFF_TWO = "04c00000000001", "04c00000000002"


def statement_of(url: str, card: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    capsys.readouterr()
    status = main(["card", "statement", card, "--from", today, "--until", today,
                   "--ledger-url", url])
    out = capsys.readouterr().out
    assert status == 0, out
    return dict(json.loads(out))


def test_a_company_card_hits_its_daily_limit_and_another_card_still_buys(
    private_mosquitto: MosquittoBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    programs = dict(DEMO_PROGRAMS, staff=load_programs(EXAMPLES)["staff"])
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack:
        stack.gateway.stop()  # the same store's gateway, with the staff program too

        def with_staff() -> Gateway:
            return Gateway("gw1", private_mosquitto.host, private_mosquitto.port,
                           str(tmp_path / "gateway-staff.db"), stack.registry, programs,
                           stack.ledger.url, limits=LIMITS,
                           broker_login=gateway_login(private_mosquitto),
                           broker_ca=broker_ca(private_mosquitto))

        stack.new_gateway = with_staff  # type: ignore[method-assign]
        stack.gateway = with_staff()
        stack.gateway.start()
        with till(stack, private_mosquitto, tmp_path) as (sim, counter):
            assert sim.terminal.settings.programs["staff"]["company"] == {
                "purchase_max_minor": 3000, "day_max_minor": 5000}
            counter.ok(STAFF_ONE, "issue", "staff", 0)
            counter.ok(STAFF_TWO, "issue", "staff", 0)
            counter.ok(STAFF_ONE, "topup", 10_000)
            counter.ok(STAFF_TWO, "topup", 4000)

            # 35.00 from the card is above 30.00 a purchase; 30.00 is not.
            assert counter.declined(STAFF_ONE, "purchase", 3500) == "card_purchase_limit"
            first = counter.ok(STAFF_ONE, "purchase", 3000)
            assert first["card_value_minor"] == 3000
            # 30.00 + 20.00 = 50.00: the day's limit reached; one cent more passes it.
            counter.ok(STAFF_ONE, "purchase", 2000)
            assert counter.declined(STAFF_ONE, "purchase", 1) == "card_day_limit"
            # Cash beside the card is the customer's own: not limited.
            cash = counter.ok(STAFF_ONE, "purchase", 1000, pay_from_card=False)
            assert cash["card_value_minor"] == 0
            # The other card of the company has its own day: 25.00 from its 40.00.
            assert counter.ok(STAFF_TWO, "purchase", 2500)["card_value_minor"] == 2500
            # 5.00 of the first sale back on the same day gives 5.00 of the day back
            # (COMPANY_DAY_REFUND_SAME_DAY): 45.00 + 5.00 = 50.00 again, then no more.
            assert counter.ok(STAFF_ONE, "refund", sale_id(first), 500)[
                "card_value_minor"] == 500
            counter.ok(STAFF_ONE, "purchase", 500)
            assert counter.declined(STAFF_ONE, "purchase", 100) == "card_day_limit"
            assert sim.drain(time.monotonic() + 10)

            # Offline the till decides the per-purchase limit itself (31.00 > 30.00) and
            # approves within it (the day's spend it cannot know: bounded by the signed
            # per-card offline limit, 50.00 here).
            stack.gateway.stop()
            assert counter.declined(STAFF_TWO, "purchase", 3100) == "card_purchase_limit"
            offline = counter.ok(STAFF_TWO, "purchase", 1000)
            assert offline["auth_mode"] == txn.AUTH_OFFLINE
            back_online_and_settled(stack, sim)
            cards = books_agree(stack)
            statements = {card: statement_of(stack.ledger.url, card, capsys)
                          for card in (STAFF_ONE, STAFF_TWO)}
            # A person's mistakes: one line, exit 2.
            for argv, said in ((["04c000000000ff", "--from", "2026-01-01"], "card_unknown"),
                               ([STAFF_ONE, "--from", "2026-13-01"], "YYYY-MM-DD"),
                               ([STAFF_ONE, "--from", "2026-02-01"], "before --from")):
                until = ["--until", "2026-01-31"] if argv[0] == STAFF_ONE else [
                    "--until", "2026-12-31"]
                assert main(["card", "statement", *argv, *until,
                             "--ledger-url", stack.ledger.url]) == 2
                err = capsys.readouterr().err
                assert said in err and len(err.strip().splitlines()) == 1, err
            # 100.00 - 30.00 - 20.00 + 5.00 - 5.00; 40.00 - 25.00 - 10.00.
            assert cards[STAFF_ONE] == {"value": 5000, "points": 0}
            assert cards[STAFF_TWO] == {"value": 500, "points": 0}

    # The statement per card, through the real command against the ledger's HTTP API: the
    # purchases and refunds of today (the stack's ledger is open: no login).
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert statements[STAFF_ONE]["totals"] == {
        "purchases": 4, "refunds": 1, "purchases_minor": 3000 + 2000 + 1000 + 500,
        "purchases_card_minor": 3000 + 2000 + 500, "refunds_minor": 500,
        "refunds_card_minor": 500, "spent_card_minor": 3000 + 2000 - 500 + 500}
    assert [(line["kind"], line["amount_minor"]) for line in statements[STAFF_ONE]["lines"]] == [
        ("purchase", 3000), ("purchase", 2000), ("purchase", 1000), ("refund", 500),
        ("purchase", 500)]
    assert statements[STAFF_TWO]["totals"]["purchases_card_minor"] == 2500 + 1000
    assert statements[STAFF_TWO]["from"] == today
