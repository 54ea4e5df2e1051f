"""The back office (ledger/office.py) without a browser: sign-in and sessions, roles, CSRF,
escaping of what the books hold, and that a refused action changes nothing.

Each test drives `Office.answer` with requests as the server hands them over, on the books
of both engines; the browser test (tests/e2e/test_back_office.py) drives the same pages
through the real server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from ledger import Books, auth, posting_sql
from ledger.auth import Login
from ledger.office import (
    CHART_POINTS,
    SESSION_COOKIE,
    SESSION_S,
    SIGN_IN_FAILURES_MAX,
    Office,
    OfficeRequest,
    Page,
    _money,
)
from tests.ledger.builders import batch, hold_request, issue, purchase, report_history

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
