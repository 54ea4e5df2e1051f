"""What a company's shared budget costs: the median and p99 of placing a hold on a card of a
company against one on a card of no company, in books of CARDS cards with PURCHASES posted
purchases each, MEMBERS of them in the company; and the seconds taken to post those
purchases (cards in no company yet) and one more purchase of each card (MEMBERS of them in
the company, whose days the batches keep) (docs/ledger.md "Company budgets").

    .venv/bin/python scripts/measure_company_budget.py CARDS PURCHASES MEMBERS

Runs on a SQLite file and on a fresh PostgreSQL database (tests/support/postgres.py finds or
starts a server). One thread, one hold at a time: the cost of the check, not of contention.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import open_books  # noqa: E402
from tests.ledger.builders import batch, hold_request, issue, purchase  # noqa: E402
from tests.support.postgres import postgres_server, temporary_database  # noqa: E402

NOW_S = 1_763_900_100  # the builders' transaction time + 100: every purchase is "today"
HOLDS = 200
"""Holds timed per card."""
CARDS_PER_BATCH = 100
OPENING_MINOR = 10**9  # no hold is refused for the card's value
BUDGET_MINOR = 10**12  # nor for the budget: every hold is placed, and timed


def measure(dsn: str, cards: int, purchases: int, members: int) -> dict[str, tuple[float, float]]:
    """{"company": (median ms, p99 ms), "none": (...)} of placing HOLDS holds of 0.01, and
    {"posting": (s to post the purchases, s to post one more of each card)}."""
    books = open_books(dsn, lambda: NOW_S)
    names = [f"K{n:05d}" for n in range(cards)]
    try:
        books.post_batch(batch("gw1-issue", *(issue(f"I-{n}", card, OPENING_MINOR)
                                              for n, card in enumerate(names)),
                               issue("I-free", "FREE", OPENING_MINOR)))
        seq = 0

        def post(each: int, name: str) -> float:
            nonlocal seq
            started = time.perf_counter()
            for start in range(0, cards, CARDS_PER_BATCH):
                sales = []
                for card in names[start:start + CARDS_PER_BATCH]:
                    for _ in range(each):
                        seq += 1
                        sales.append(purchase(f"P-{seq}", card, 1, points=0))
                books.post_batch(batch(f"gw1-{name}-{start}", *sales))
            return time.perf_counter() - started

        history_s = post(purchases, "history")
        books.save_company({"company": "ACME", "name": "Acme", "currency": "EUR",
                            "budget_minor": BUDGET_MINOR, "period": "day"}, "measure")
        for card in names[:members]:
            books.add_company_card("ACME", card, "measure")
        timings: dict[str, tuple[float, float]] = {"posting": (history_s, post(1, "more"))}
        for label, card in (("company", names[0]), ("none", "FREE")):
            taken = []
            for n in range(HOLDS):
                started = time.perf_counter()
                books.place_hold(hold_request(f"H-{label}-{n}", card, 1))
                taken.append((time.perf_counter() - started) * 1000)
            taken.sort()
            timings[label] = (statistics.median(taken), taken[int(0.99 * HOLDS) - 1])
        return timings
    finally:
        books.close()


def main() -> None:
    cards, purchases, members = (int(word) for word in sys.argv[1:4])
    with tempfile.TemporaryDirectory() as folder:
        runs = {"sqlite": measure(f"sqlite://{Path(folder) / 'ledger.db'}", cards, purchases,
                                  members)}
    with postgres_server() as admin, temporary_database(admin) as dsn:
        runs["postgresql"] = measure(dsn, cards, purchases, members)
    for engine, timings in runs.items():
        print(f"{engine}: {cards} cards x {purchases} purchases, {members} in the company: "
              + ", ".join(f"{label} median {median:.2f} ms p99 {p99:.2f} ms"
                          for label, (median, p99) in timings.items() if label != "posting")
              + ", posting {:.2f} s then {:.2f} s".format(*timings["posting"]))


if __name__ == "__main__":
    main()
