"""The back office (ledger/office.py) without a browser: sign-in and sessions, roles, CSRF,
escaping of what the books hold, and that a refused action changes nothing.

Each test drives `Office.answer` with requests as the server hands them over, on the books
of both engines; the browser test (tests/e2e/test_back_office.py) drives the same pages
through the real server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from ledger import Books, auth, open_books, posting_sql
from ledger.auth import Login
from ledger.customers import Customers
from ledger.office import (
    CHART_POINTS,
    SESSION_COOKIE,
    SESSION_S,
    SIGN_IN_FAILURES_MAX,
    Office,
    OfficeRequest,
    Page,
    _money,
    _percent,
)
from ledger.personal_crypto import CustomerKey, load_key_file, new_key_file
from tests.ledger.builders import (
    EngineShop,
    at,
    batch,
    hold_request,
    issue,
    purchase,
    report_history,
    snapshot,
)
from tests.ledger.test_customer_reports import enrol
from tests.support import REPO_ROOT, engine_history
from tools.programs import load_programs, parse_programs

PASSWORD = "a long enough secret"
HOSTILE_CARD = "<script>alert('card')</script>"
HOSTILE_REASON = "<img src=x onerror=alert(1)> & \"quoted\""
FORM = "application/x-www-form-urlencoded"


class Clock:
    """The office's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logins() -> dict[str, Login]:
    return {"mia": auth.new_operator("mia", "manager", PASSWORD),
            "carl": auth.new_operator("carl", "clerk", PASSWORD)}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def office(books: Books, logins: dict[str, Login], clock: Clock) -> Iterator[Office]:
    books.post_batch(batch("gw1-1", issue("T1-1", "C1", 5000), purchase("T1-2", "C1", 1250)))
    yield Office(books, lambda: logins, secure=False, clock=clock)


def get(office: Office, target: str, cookie: str | None = None) -> Page:
    return office.answer(OfficeRequest("GET", target, cookie=cookie))


def post(office: Office, target: str, fields: dict[str, str], cookie: str | None = None,
         **headers: Any) -> Page:
    return office.answer(OfficeRequest("POST", target, cookie=cookie,
                                       body=urlencode(fields).encode(), content_type=FORM,
                                       **headers))


def header(page: Page, name: str) -> str | None:
    return next((value for key, value in page.headers if key == name), None)


def sign_in(office: Office, name: str) -> tuple[str, str]:
    """The session cookie and the CSRF token of a fresh sign-in."""
    page = post(office, "/office/sign-in", {"name": name, "password": PASSWORD})
    assert page.status == 303, page.body
    cookie = (header(page, "Set-Cookie") or "").split(";")[0]
    home = get(office, "/office/", cookie)
    match = re.search(r"name='csrf' value='([^']+)'", home.body.decode())
    assert match is not None
    return cookie, match.group(1)


def text(page: Page) -> str:
    return page.body.decode("utf-8")


def test_a_right_password_opens_a_session_cookie_that_scripts_and_other_sites_cannot_use(
        office: Office, logins: dict[str, Login]) -> None:
    """Sign-in answers 303 to the home page with an HttpOnly, SameSite=Strict cookie scoped
    to /office that lasts SESSION_S; over TLS it is Secure too."""
    page = post(office, "/office/sign-in", {"name": "mia", "password": PASSWORD})
    assert page.status == 303 and header(page, "Location") == "/office/"
    cookie = header(page, "Set-Cookie") or ""
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/office", f"Max-Age={SESSION_S}"):
        assert attribute in cookie
    assert "Secure" not in cookie
    secure = Office(office.books, lambda: logins, secure=True)
    tls_page = post(secure, "/office/sign-in", {"name": "mia", "password": PASSWORD})
    assert "; Secure" in (header(tls_page, "Set-Cookie") or "")


@pytest.mark.parametrize(("name", "password"), [("mia", "not the password"),
                                                ("nobody", PASSWORD), ("mia", "")])
def test_a_wrong_name_or_password_is_refused_alike_without_a_session(
        office: Office, name: str, password: str) -> None:
    """The same words for an unknown name and a wrong password, and no cookie."""
    page = post(office, "/office/sign-in", {"name": name, "password": password})
    assert page.status in (400, 401)
    assert header(page, "Set-Cookie") is None
    if page.status == 401:
        assert "wrong name or password" in text(page)


def test_a_token_login_cannot_sign_in_and_an_operator_cannot_use_the_api() -> None:
    """Passwords and tokens do not mix: an admin token login has no password, and no
    Authorization header proves an operator."""
    admin, token = auth.new_login("root", "admin")
    operator = auth.new_operator("mia", "manager", PASSWORD)
    logins = {"root": admin, "mia": operator}
    with pytest.raises(auth.Unauthorized):
        auth.authenticate(logins, f"Bearer mia:{PASSWORD}")
    with pytest.raises(auth.Unauthorized):
        auth.authenticate(logins, "Bearer mia:")
    assert auth.authenticate(logins, f"Bearer {token}") == admin
    assert auth.parse_logins({"version": 1, "logins": {
        name: login.to_json() for name, login in logins.items()}}) == logins


def test_repeated_failures_lock_a_login_out_for_a_while_even_with_the_right_password(
        office: Office, clock: Clock) -> None:
    for _ in range(SIGN_IN_FAILURES_MAX):
        assert post(office, "/office/sign-in", {"name": "mia", "password": "guess guess"}
                    ).status == 401
    assert post(office, "/office/sign-in", {"name": "mia", "password": PASSWORD}).status == 429
    clock.now += 3600
    assert post(office, "/office/sign-in", {"name": "mia", "password": PASSWORD}).status == 303


def test_pages_without_a_session_send_the_browser_to_sign_in(office: Office) -> None:
    for target in ("/office/", "/office/card?card=C1", "/office/alarms", "/office/fleet"):
        page = get(office, target, f"{SESSION_COOKIE}=forged")
        assert page.status == 303 and header(page, "Location") == "/office/sign-in"


def test_a_session_expires_after_session_s(office: Office, clock: Clock) -> None:
    cookie, _ = sign_in(office, "carl")
    clock.now += SESSION_S - 1
    assert get(office, "/office/", cookie).status == 200
    clock.now += 1
    assert get(office, "/office/", cookie).status == 303


def test_a_session_ends_when_its_login_is_given_another_password_or_removed(
        office: Office, logins: dict[str, Login]) -> None:
    cookie, _ = sign_in(office, "carl")
    logins["carl"] = auth.new_operator("carl", "clerk", "another long password")
    assert get(office, "/office/", cookie).status == 303
    cookie, _ = sign_in(office, "mia")
    del logins["mia"]
    assert get(office, "/office/", cookie).status == 303


def test_sign_out_ends_the_session_and_clears_the_cookie(office: Office) -> None:
    cookie, csrf = sign_in(office, "mia")
    page = post(office, "/office/sign-out", {"csrf": csrf}, cookie)
    assert page.status == 303 and "Max-Age=0" in (header(page, "Set-Cookie") or "")
    assert get(office, "/office/", cookie).status == 303


def test_the_card_page_shows_the_books_figures(office: Office, books: Books) -> None:
    """Value, points, held and available are the API's (Books.card_detail), with each
    transaction, its store and the open hold."""
    books.place_hold(hold_request("gw1-a1-1", "C1", 300, ttl_s=3600))
    cookie, _ = sign_in(office, "carl")
    page = text(get(office, "/office/card?card=C1", cookie))
    detail = books.card_detail("C1")
    assert detail is not None and detail["value_minor"] == 3750
    assert "<td id='card-value'>37.50 EUR</td>" in page
    assert f"<td id='card-points'>{detail['points']}</td>" in page
    assert "<td id='card-held'>3.00 EUR</td>" in page
    assert "<td id='card-available'>34.50 EUR</td>" in page
    assert "gw1-a1-1" in page and "T1-1" in page and "T1-2" in page and "gw1" in page
    assert "Transactions (2)" in page


def test_the_card_page_names_the_item_a_reward_redemption_handed_over(
        office: Office, books: Books) -> None:
    shop = EngineShop(books, load_programs(REPO_ROOT / "examples" / "programs.toml")["coffee"],
                      at("2025-03-01", hour=0))
    shop.post("R1", {"op": "issue", "id": "i1", "card": "R1"})
    shop.post("R1", {"op": "purchase", "id": "p1", "amount_minor": 20_000})
    mug = shop.post("R1", {"op": "reward", "id": "m1", "item": "mug"})
    page = text(get(office, "/office/card?card=R1", sign_in(office, "carl")[0]))
    assert "<td>purchase: reward mug</td><td>7.50 EUR</td>" in page and mug in page
    assert page.count("reward") == 1  # the plain purchase is a purchase


def test_the_card_page_shows_the_tier_discount_and_points_lots_the_ledger_replays(
        dsn: str, logins: dict[str, Login], clock: Clock, office: Office) -> None:
    """Given the programs, the card of tests/support/engine_history.py with its figures;
    without them (the `office` fixture), why there are none."""
    books = open_books(dsn, lambda: engine_history.time_of(engine_history.TODAY))
    try:
        books.post_batch(engine_history.posted_batch("C7"))
        with_programs = Office(books, lambda: logins, secure=False, clock=clock,
                               programs=parse_programs(engine_history.PROGRAM_TOML))
        page = text(get(with_programs, "/office/card?card=C7", sign_in(with_programs, "carl")[0]))
    finally:
        books.close()
    assert "<td id='card-tier'>silver</td>" in page
    # books opened without programs keep no state: the page replays
    assert "<td id='card-engine-source'>replayed from 4 transactions</td>" in page
    assert ("<td id='card-discount'>10 % off today; 10 % earned by spend, through 2025-12-17;"
            " 45.00 EUR of 100.00 EUR towards the next</td>") in page
    assert ("<tr><td>60</td><td>2025-11-09</td><td>2026-01-08</td></tr><tr><td>50</td>"
            "<td>2025-11-18</td><td>2026-01-17</td></tr><tr><td>45</td><td>2025-11-28</td>"
            "<td>2026-01-27</td></tr>") in page
    page = text(get(office, "/office/card?card=C1", sign_in(office, "carl")[0]))
    assert ("<td id='card-engine'>not known here: the ledger was started without programs"
            " (ledger serve --programs FILE)</td>") in page
    assert "card-tier" not in page and "points-lots" not in page


def test_hostile_card_ids_and_reasons_are_shown_as_text_never_as_markup(
        office: Office, books: Books) -> None:
    books.post_batch(batch("gw1-2", issue("T1-3", HOSTILE_CARD, 100)))
    cookie, csrf = sign_in(office, "mia")
    blocked = post(office, "/office/card/block",
                   {"card": HOSTILE_CARD, "reason": HOSTILE_REASON, "csrf": csrf}, cookie)
    assert blocked.status == 303
    assert header(blocked, "Location") == f"/office/card?card={quote(HOSTILE_CARD, safe='')}"
    books.transact(lambda db, now: posting_sql.insert_alarm(db, now, "odd", HOSTILE_REASON))
    for target in (f"/office/card?card={quote(HOSTILE_CARD, safe='')}", "/office/alarms"):
        page = text(get(office, target, cookie))
        assert "<script>" not in page and "<img" not in page
        assert "onerror=alert(1)&gt;" in page
    page = text(get(office, f"/office/card?card={quote(HOSTILE_CARD, safe='')}", cookie))
    assert "&lt;script&gt;alert(&#x27;card&#x27;)&lt;/script&gt;" in page
    assert "&quot;quoted&quot;" in page


def test_a_manager_blocks_and_unblocks_a_card_recorded_under_their_name(
        office: Office, books: Books) -> None:
    cookie, csrf = sign_in(office, "mia")
    assert "id='block'" in text(get(office, "/office/card?card=C1", cookie))
    page = post(office, "/office/card/block", {"card": "C1", "reason": "lost", "csrf": csrf},
                cookie)
    assert page.status == 303
    detail = books.card_detail("C1")
    assert detail is not None and detail["blocked"]
    assert detail["block"]["login"] == "mia" and detail["block"]["reason"] == "lost"
    shown = text(get(office, "/office/card?card=C1", cookie))
    assert "<span id='card-block-reason'>lost</span>" in shown and "id='unblock'" in shown
    post(office, "/office/card/unblock", {"card": "C1", "reason": "found", "csrf": csrf}, cookie)
    detail = books.card_detail("C1")
    assert detail is not None and not detail["blocked"]


def test_a_clerk_sees_no_block_button_and_a_forged_block_is_403_changing_nothing(
        office: Office, books: Books) -> None:
    cookie, csrf = sign_in(office, "carl")
    assert "id='block'" not in text(get(office, "/office/card?card=C1", cookie))
    before = books.counts()
    page = post(office, "/office/card/block", {"card": "C1", "reason": "x", "csrf": csrf},
                cookie)
    assert page.status == 403
    detail = books.card_detail("C1")
    assert detail is not None and not detail["blocked"] and books.counts() == before


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
def test_a_post_without_the_sessions_csrf_token_is_403_changing_nothing(
        office: Office, books: Books, csrf: str | None) -> None:
    cookie, _ = sign_in(office, "mia")
    fields = {"card": "C1", "reason": "lost"} | ({} if csrf is None else {"csrf": csrf})
    assert post(office, "/office/card/block", fields, cookie).status == 403
    detail = books.card_detail("C1")
    assert detail is not None and not detail["blocked"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://ledger:8443"])
def test_a_form_posted_from_another_site_is_refused(office: Office, books: Books,
                                                    origin: str) -> None:
    """Another host, an opaque origin, or https to a ledger serving http."""
    cookie, csrf = sign_in(office, "mia")
    page = post(office, "/office/card/block", {"card": "C1", "reason": "x", "csrf": csrf},
                cookie, origin=origin, host="ledger:8443")
    assert page.status == 403
    detail = books.card_detail("C1")
    assert detail is not None and not detail["blocked"]


def test_a_post_without_a_session_is_401_and_a_malformed_form_400(office: Office) -> None:
    assert post(office, "/office/card/block", {"card": "C1", "reason": "x"}).status == 401
    cookie, csrf = sign_in(office, "mia")
    twice = office.answer(OfficeRequest(
        "POST", "/office/card/block", cookie=cookie, content_type=FORM,
        body=f"csrf={csrf}&card=C1&card=C2&reason=x".encode()))
    assert twice.status == 400
    no_reason = post(office, "/office/card/block", {"card": "C1", "csrf": csrf}, cookie)
    assert no_reason.status == 400
    unknown = post(office, "/office/card/block", {"card": "C9", "reason": "x", "csrf": csrf},
                   cookie)
    assert unknown.status == 404


def test_a_manager_acknowledges_an_alarm_once_and_a_clerk_may_not(
        office: Office, books: Books) -> None:
    books.transact(lambda db, now: posting_sql.insert_alarm(db, now, "overdraft", "card C1"))
    alarm_id = books.alarms()[-1]["id"]
    clerk_cookie, clerk_csrf = sign_in(office, "carl")
    assert f"id='acknowledge-{alarm_id}'" not in text(get(office, "/office/alarms",
                                                          clerk_cookie))
    assert post(office, "/office/alarms/acknowledge", {"alarm": str(alarm_id),
                                                       "csrf": clerk_csrf},
                clerk_cookie).status == 403
    cookie, csrf = sign_in(office, "mia")
    assert f"id='acknowledge-{alarm_id}'" in text(get(office, "/office/alarms", cookie))
    for _ in range(2):
        page = post(office, "/office/alarms/acknowledge", {"alarm": str(alarm_id),
                                                           "csrf": csrf}, cookie)
        assert page.status == 303
    shown = text(get(office, "/office/alarms", cookie))
    assert f"id='acknowledge-{alarm_id}'" not in shown and "mia, " in shown
    assert post(office, "/office/alarms/acknowledge", {"alarm": "999999", "csrf": csrf},
                cookie).status == 404


def test_an_open_ledger_has_no_operators_and_nobody_signs_in(books: Books) -> None:
    office = Office(books, lambda: None, secure=False)
    page = post(office, "/office/sign-in", {"name": "mia", "password": PASSWORD})
    assert page.status == 401 and "without a logins file" in text(page)


def test_the_report_and_fleet_pages_show_the_books(office: Office, books: Books) -> None:
    cookie, _ = sign_in(office, "carl")
    liabilities = text(get(office, "/office/liabilities?as_of=2030-01-01", cookie))
    assert "37.50 EUR" in liabilities and "<table id='liability'>" in liabilities
    assert get(office, "/office/liabilities?as_of=yesterday", cookie).status == 400
    assert "<table id='fleet'>" in text(get(office, "/office/fleet", cookie))
    fleet = text(get(office, "/office/fleet", cookie))
    assert "<td>gw1</td><td>1</td><td>2</td><td>2</td>" in fleet
    assert "id='exposure'" in text(get(office, "/office/exposure", cookie))


def _history_rows(page: str) -> list[tuple[str, str, str, str]]:
    """The rows of the liabilities-over-time table: date, unit, liability, breakage."""
    table = page.split("<table id='liability-history'>", 1)[1].split("</table>", 1)[0]
    return [tuple(re.findall(r"<td>([^<]*)</td>", row))  # type: ignore[misc]
            for row in table.split("<tr>")[2:]]


def test_the_liabilities_chart_shows_what_the_reports_answer_at_each_point(
        books: Books, logins: dict[str, Login]) -> None:
    """Every point of the chart is the liability report at its day and the breakage report
    over the step before it, summed per unit; one line and its dots per unit."""
    books.post_batch(report_history())
    office = Office(books, lambda: logins, secure=False)
    cookie, _ = sign_in(office, "carl")
    page = text(get(office, "/office/liabilities?as_of=2025-12-01&step_days=10", cookie))
    rows = _history_rows(page)
    days = sorted({row[0] for row in rows})
    assert len(days) == CHART_POINTS and days[-1] == "2025-12-01" and days[0] == "2025-08-13"
    for day in days:
        owed: dict[str, int] = {}
        for row in books.report("liability", {"as_of": day}).rows:
            owed[row["unit"]] = owed.get(row["unit"], 0) + row["liability_minor"]
        expired: dict[str, int] = {}
        for row in books.report("breakage", {"as_of": day, "window_days": "10"}).rows:
            expired[row["unit"]] = expired.get(row["unit"], 0) + row["breakage_minor"]
        shown = {row[1]: row[2:] for row in rows if row[0] == day}
        for unit in set(owed) | set(expired):
            assert shown[unit] == (_money(owed.get(unit, 0), unit),
                                   _money(expired.get(unit, 0), unit)), (day, unit)
    # By hand: on 2025-10-02 only the six EUR issues of 100.00 are owed; the expiries of
    # 25 and 26 November fall in the step to 2025-12-01.
    eur = {row[0]: row[2:] for row in rows if row[1] == "EUR"}
    assert eur["2025-10-02"] == ("600.00 EUR", "0.00 EUR")
    assert eur["2025-12-01"][1] == "20.00 EUR"
    assert page.count("<svg class='chart'") == len({row[1] for row in rows})
    assert page.count("<circle ") == len(rows)
    assert get(office, "/office/liabilities?step_days=0", cookie).status == 400
    assert get(office, "/office/liabilities?step_days=ten", cookie).status == 400


def test_the_segments_and_lapsing_pages_list_what_the_reports_find(
        books: Books, logins: dict[str, Login]) -> None:
    books.post_batch(report_history())
    office = Office(books, lambda: logins, secure=False)
    cookie, _ = sign_in(office, "carl")
    query = "as_of=2025-12-01&window_days=90"
    segments = books.report("segments", {"as_of": "2025-12-01", "window_days": "90"})
    page = text(get(office, f"/office/segments?{query}", cookie))
    for currency, figures in segments.summary.items():
        assert (f"<td>{currency}</td><td>{figures['cards']}</td><td>{figures['top_cards']}"
                f"</td>") in page
    for row in segments.rows:
        assert f">{row['card']}</a></td><td>{row['program']}</td>" in page
    lapsing = books.report("lapsing", {"as_of": "2025-12-01", "window_days": "90",
                                       "days": "3", "min_purchases": "2"})
    page = text(get(office, f"/office/lapsing?{query}&days=3&min_purchases=2", cookie))
    assert f"<span id='lapsing-cards'>{len(lapsing.rows)}</span>" in page
    assert lapsing.rows, "the fixed history has regulars away for three days"
    for row in lapsing.rows:
        assert f">{row['card']}</a></td>" in page
    assert get(office, "/office/lapsing?days=100&window_days=90", cookie).status == 400


# -- customers --------------------------------------------------------------------------------


@pytest.fixture
def customer_key(tmp_path: Path) -> CustomerKey:
    new_key_file(tmp_path / "customer.key")
    return load_key_file(tmp_path / "customer.key")


@pytest.fixture
def with_customers(books: Books, logins: dict[str, Login],
                   customer_key: CustomerKey) -> tuple[Office, dict[str, str]]:
    """An office over the report history with its customers (test_customer_reports.enrol)."""
    books.post_batch(report_history())
    people = enrol(books, customer_key)
    return (Office(books, lambda: logins, secure=False,
                   customers=Customers(books, customer_key)), people)


def audit_actions(office: Office, customer_id: str) -> list[str]:
    return [entry["action"] for entry in office.customers.audit_trail(customer_id)]


def test_a_customer_is_found_by_phone_or_email_and_shown_with_cards_and_history(
        with_customers: tuple[Office, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The find form posts (a phone number is never in an address); the page shows the
    fields, the consent, the cards as links to their pages and the history across stores
    exactly as the API's history; every read is in the customer's audit trail."""
    office, people = with_customers
    caplog.set_level(logging.DEBUG)
    cookie, csrf = sign_in(office, "carl")
    assert "id='find-customer'" in text(get(office, "/office/customers", cookie))
    ann = people["Ann"]
    for fields in ({"phone": "+44 1632 960001"}, {"email": "ANN@Example.org"},
                   {"customer_id": ann}):
        page = post(office, "/office/customers/find", {"csrf": csrf, **fields}, cookie)
        assert (page.status, header(page, "Location")) == (303, f"/office/customer?id={ann}")
    assert audit_actions(office, ann)[-2:] == ["find", "find"]
    missing = post(office, "/office/customers/find", {"csrf": csrf, "phone": "+441632960099"},
                   cookie)
    assert missing.status == 404 and "960099" not in text(missing)
    both = post(office, "/office/customers/find", {"csrf": csrf, "phone": "+441632960001",
                                                   "email": "ann@example.org"}, cookie)
    assert both.status == 400

    page = text(get(office, f"/office/customer?id={ann}", cookie))
    assert audit_actions(office, ann)[-1] == "show"
    for element, value in (("customer-name", "Ann Example"), ("customer-phone", "+441632960001"),
                           ("customer-email", "ann@example.org"),
                           ("customer-consent", "granted on 2025-06-01 (counter)")):
        assert f"<td id='{element}'>{value}</td>" in page
    for card in ("A", "B"):
        assert f"<a href='/office/card?card={card}'>{card}</a>" in page
    history = office.customers.history(ann)
    rows = page.split("<table id='customer-history'>", 1)[1].split("</table>", 1)[0]
    assert rows.count("<tr>") == len(history["transactions"]) + 1 == 9 + 1  # A 5, B 4
    for txn in history["transactions"]:
        assert f"<td>{txn['txn_id']}</td>" in rows
    assert "<td>gw1</td>" in rows and "<td>purchase</td>" in rows
    assert "id='link-card'" in page and "id='export-customer'" in page
    assert "id='erase-customer'" not in page  # a clerk may not erase
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(secret in logged for secret in ("Example", "+4416329600", "@example.org"))


def test_a_manager_links_a_card_exports_and_erases_a_customer(
        with_customers: tuple[Office, dict[str, str]], books: Books) -> None:
    """Each through the API's operations: a card linked elsewhere is 409 and stays; the
    export is a JSON download; the erasure needs the id typed again, then removes the
    personal data and leaves the books as they were."""
    office, people = with_customers
    cookie, csrf = sign_in(office, "mia")
    dee = people["Dee"]
    page = post(office, "/office/customer/link", {"csrf": csrf, "customer_id": dee,
                                                  "card": "D"}, cookie)
    assert page.status == 303
    assert [card["card"] for card in office.customers.show(dee, "t")["cards"]] == ["D", "F"]
    taken = post(office, "/office/customer/link", {"csrf": csrf, "customer_id": dee,
                                                   "card": "A"}, cookie)
    assert taken.status == 409 and "card_linked" in text(taken)
    assert [c["card"] for c in office.customers.show(people["Ann"], "t")["cards"]] == ["A", "B"]

    exported = post(office, "/office/customer/export", {"csrf": csrf, "customer_id": dee},
                    cookie)
    assert exported.status == 200 and exported.content_type == "application/json"
    assert header(exported, "Content-Disposition") == (
        f"attachment; filename=\"customer-{dee}.json\"")
    document = json.loads(exported.body)
    assert (document["format"], document["customer"]["name"]) == (
        "tilltap-customer-export", "Dee Example")
    assert audit_actions(office, dee)[-1] == "export"

    before = snapshot(books)
    page = text(get(office, f"/office/customer?id={dee}", cookie))
    assert "id='erase-customer'" in page
    for confirm in ("yes", "\u00fcberall", dee[:-1]):
        wrong = post(office, "/office/customer/erase", {"csrf": csrf, "customer_id": dee,
                                                        "confirm": confirm}, cookie)
        assert wrong.status == 400 and "confirm_mismatch" in text(wrong)
    assert office.customers.show(dee, "t")["erased_at"] is None
    no_csrf = post(office, "/office/customer/erase", {"customer_id": dee, "confirm": dee},
                   cookie)
    assert no_csrf.status == 403 and office.customers.show(dee, "t")["erased_at"] is None
    page = post(office, "/office/customer/erase", {"csrf": csrf, "customer_id": dee,
                                                   "confirm": dee}, cookie)
    assert page.status == 303
    stub = office.customers.show(dee, "t")
    assert stub["erased_at"] is not None and stub["name"] is None
    assert snapshot(books) == before
    shown = text(get(office, f"/office/customer?id={dee}", cookie))
    assert "id='customer-erased'" in shown and "Dee Example" not in shown
    assert "id='erase-customer'" not in shown and "id='link-card'" not in shown


def test_a_clerk_cannot_erase_a_customer(with_customers: tuple[Office, dict[str, str]]) -> None:
    office, people = with_customers
    cookie, csrf = sign_in(office, "carl")
    ben = people["Ben"]
    page = post(office, "/office/customer/erase", {"csrf": csrf, "customer_id": ben,
                                                   "confirm": ben}, cookie)
    assert page.status == 403 and "not_permitted" in text(page)
    assert office.customers.show(ben, "t")["name"] == "Ben Example"
    assert "erase" not in audit_actions(office, ben)


def test_customer_names_are_shown_as_text(books: Books, logins: dict[str, Login],
                                          customer_key: CustomerKey) -> None:
    customers = Customers(books, customer_key)
    hostile = customers.create({"name": HOSTILE_REASON}, "t")["customer_id"]
    office = Office(books, lambda: logins, secure=False, customers=customers)
    cookie, _ = sign_in(office, "carl")
    page = text(get(office, f"/office/customer?id={hostile}", cookie))
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_without_a_customer_key_the_customer_pages_say_so_and_the_rest_works(
        office: Office) -> None:
    cookie, csrf = sign_in(office, "mia")
    for target in ("/office/customers", "/office/customer?id=cust-x"):
        page = get(office, target, cookie)
        assert page.status == 503 and "without a customer key" in text(page)
    found = post(office, "/office/customers/find", {"csrf": csrf, "phone": "+441632960001"},
                 cookie)
    assert found.status == 503 and "without a customer key" in text(found)
    lapsing = get(office, "/office/customer-lapsing", cookie)
    assert lapsing.status == 200 and "without a customer key" in text(lapsing)
    assert get(office, "/office/customer-value", cookie).status == 200
    assert get(office, "/office/customer-retention", cookie).status == 200
    assert get(office, "/office/card?card=C1", cookie).status == 200


def test_the_customer_report_pages_show_the_reports_figures(
        with_customers: tuple[Office, dict[str, str]], books: Books) -> None:
    """Value classes and their shares, lapsing customers with the contact of the one who
    consented (Cy) and not of the one who refused (Ben), retention by cohort: each page
    shows what the report answers."""
    office, people = with_customers
    cookie, _ = sign_in(office, "carl")
    value = books.report("customer_value", {"as_of": "2025-11-30"})
    page = text(get(office, "/office/customer-value?as_of=2025-11-30", cookie))
    for currency, figures in value.summary.items():
        for row in figures["classes"]:
            assert (f"<td>{currency}</td><td>{row['class']}</td><td>{row['customers']}</td>"
                    f"<td>{_money(row['revenue_minor'], currency)}</td>"
                    f"<td>{_percent(row['share_bp'])}</td>") in page
    assert "<td>EUR</td><td>top</td><td>1</td><td>105.00 EUR</td><td>58.99 %</td>" in page
    assert f">{people['Ann']}</a>" in page
    assert get(office, "/office/customer-value?top_percent=90&next_percent=20",
               cookie).status == 400

    page = text(get(office, "/office/customer-lapsing?as_of=2025-11-30&days=2&"
                            "min_purchases=1", cookie))
    assert "<span id='lapsing-customers'>3</span>" in page
    assert "<td>cy@example.org</td>" in page and "Ben Example" not in page
    assert "report" in audit_actions(office, people["Cy"])

    retention = books.report("customer_retention", {"as_of": "2025-11-30"})
    page = text(get(office, "/office/customer-retention?as_of=2025-11-30", cookie))
    for row in retention.rows:
        assert (f"<td>{row['cohort']}</td><td>{row['month']}</td><td>{row['months_after']}"
                f"</td><td>{row['customers']}</td><td>{row['active']}</td>"
                f"<td>{_percent(row['retention_bp'])}</td>") in page
