"""The back office in a real browser: Debian's chromium, headless, driven by Playwright, against
the real ledger server over TLS on PostgreSQL, with logins and postings made through the
ledger's client as a gateway makes them.

A manager and a clerk sign in; the pages load; the card page's figures are the API's
(`LedgerClient.card`); the manager blocks a card in the browser and the API shows it blocked;
the clerk has no block button and a POST forged in the clerk's session is refused; signing
out ends the session. With the ledger's customer key, the manager finds a customer by phone,
follows its card to the card page, links a card, downloads its export and erases it, each
seen through the customer API; the customer report pages show the API's figures; the clerk
has no erase button and a forged erasure is refused. Unit tests of the same pages:
tests/ledger/test_office.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from ledger import auth
from ledger.client import LedgerClient
from ledger.office import CHART_POINTS, _percent
from ledger.personal_crypto import load_key_file, new_key_file
from ledger.server import LedgerServer, serve, tls_context
from protocol.money import format_minor
from tests.ledger.builders import batch, issue, purchase, topup
from tests.support.postgres import temporary_database
from tools.customers import CustomersClient
from tools.programs import parse_programs
from tools.tls import make_server_tls

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
AS_OF = "2025-11-30"
"""The builders' transactions are of 2025-11-23: reports are taken a week later."""
EVE = {"name": "Eve Example", "phone": "+441632960100", "email": "eve@example.org",
       "marketing_consent": {"granted": True, "date": "2025-06-01", "source": "counter"}}
PASSWORD = "counter top secret"
PROGRAMS = parse_programs("""
[programs.gift]
version = 1
currency = "EUR"
name = "Gift card with points and tiers"
[programs.gift.gift]
[programs.gift.points]
earn_bp = 100
points_per_unit = 100
[programs.gift.tiers]
window_days = 731
downgrade = "period_end"
downgrade_days = 731
[[programs.gift.tiers.levels]]
name = "member"
spend_minor = 0
[[programs.gift.tiers.levels]]
name = "silver"
spend_minor = 1000
""")
"""The ledger's programs: card C1's sale earns its 12 points and silver (the card page shows
the tier the ledger replays, ledger/card_engine.py)."""
TIMEOUT_MS = 10_000


@dataclass
class Ledger:
    server: LedgerServer
    gateway: LedgerClient
    reader: LedgerClient
    admin: CustomersClient
    eve: str


@pytest.fixture
def ledger(tmp_path: Path, pg_admin_dsn: str) -> Iterator[Ledger]:
    """The ledger server with its customer key, a manager, a clerk, a gateway, a reader and
    an admin login, and a day of postings by gateway gw1: two cards, one with an open hold;
    customer Eve holds card C1."""
    gateway, gateway_token = auth.new_login("gw1", "gateway", "gw1", ("T1",), ("M1",))
    reader, reader_token = auth.new_login("audit", "reader")
    admin, admin_token = auth.new_login("root", "admin")
    logins = {"mia": auth.new_operator("mia", "manager", PASSWORD),
              "carl": auth.new_operator("carl", "clerk", PASSWORD),
              "gw1": gateway, "audit": reader, "root": admin}
    new_key_file(tmp_path / "customer.key")
    logins_file = tmp_path / "logins.json"
    logins_file.write_text(auth.dump_logins(logins))
    tls = make_server_tls(tmp_path / "tls", "127.0.0.1", "test CA", "ledger")
    with temporary_database(pg_admin_dsn) as dsn:
        server = serve(dsn, logins_file=logins_file,
                       tls=tls_context(tls["ledger.pem"], tls["ledger.key"]),
                       customer_key=load_key_file(tmp_path / "customer.key"),
                       programs=PROGRAMS)
        try:
            as_gateway = LedgerClient(server.url, token=gateway_token, ca_file=tls["ca.pem"])
            as_gateway.post_batch(batch("gw1-1", issue("T1-1", "C1", 5000),
                                        purchase("T1-2", "C1", 1250, points=12),
                                        issue("T1-3", "C2", 2000), topup("T1-4", "C2", 500)))
            as_gateway.place_hold("gw1-a1-1", "C1", "EUR", 300, 3600, "T1", "M1")
            as_admin = CustomersClient(server.url, token=admin_token, ca_file=tls["ca.pem"])
            eve = as_admin.create_customer(EVE)["customer_id"]
            as_admin.link_card(eve, "C1")
            yield Ledger(server, as_gateway,
                         LedgerClient(server.url, token=reader_token, ca_file=tls["ca.pem"]),
                         as_admin, eve)
        finally:
            server.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def signed_in(browser: Browser, ledger: Ledger, name: str) -> tuple[BrowserContext, Page]:
    """A fresh browser profile that opened the back office and signed in as `name`."""
    context = browser.new_context(ignore_https_errors=True)  # the ledger's own test CA
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{ledger.server.url}/office/")
    assert page.url.endswith("/office/sign-in")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url("**/office/")
    assert page.text_content("#operator") == name
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    return context, page


def show_card(page: Page, card: str) -> None:
    page.fill("input[name=card]", card)
    page.click("#find-card")
    page.wait_for_selector("#card-value")


def test_a_manager_sees_the_apis_figures_and_blocks_a_card_in_the_browser(
        browser: Browser, ledger: Ledger) -> None:
    context, page = signed_in(browser, ledger, "mia")
    for link, heading in (("Alarms", "Alarms"), ("Exposure", "Exposure"),
                          ("Liabilities", "Liabilities and breakage"),
                          ("Segments", "Segments"), ("Lapsing", "Lapsing regulars"),
                          ("Fleet", "Fleet")):
        page.click(f"nav >> text={link}")
        assert page.text_content("main h1") == heading
    assert "gw1" in (page.text_content("#fleet") or "")
    page.click("nav >> text=Liabilities")
    assert page.locator("svg#chart-EUR circle").count() == CHART_POINTS
    assert page.locator("svg#chart-EUR").is_visible()
    owed = ledger.reader.report("liability")
    eur_minor = sum(row["liability_minor"] for row in owed["rows"] if row["unit"] == "EUR")
    latest = page.locator("#liability-history tbody tr").filter(has_text="EUR").last
    assert latest.locator("td").nth(2).text_content() == format_minor(eur_minor, "EUR")
    page.click("nav >> text=Segments")
    segments = ledger.reader.report("segments")
    assert page.locator("#segments tbody tr").count() == len(segments["rows"])
    page.click("nav >> text=Card")
    show_card(page, "C1")
    api = ledger.reader.card("C1")
    assert page.text_content("#card-value") == format_minor(api["value_minor"], "EUR")
    assert page.text_content("#card-points") == str(api["points"])
    assert page.text_content("#card-held") == format_minor(api["held_minor"], "EUR")
    assert page.text_content("#card-available") == format_minor(api["available_minor"], "EUR")
    assert page.text_content("#card-status") == "not blocked"
    assert api["engine"] is not None and page.text_content("#card-tier") == api["engine"]["tier"]
    assert "gw1-a1-1" in (page.text_content("#holds") or "")
    assert page.locator("#transactions tbody tr").count() == 2

    page.fill("form[action='/office/card/block'] input[name=reason]", "reported stolen")
    page.click("#block")
    page.wait_for_selector("#unblock")
    assert page.text_content("#card-block-reason") == "reported stolen"
    api = ledger.reader.card("C1")
    assert api["blocked"] and api["block"]["login"] == "mia"
    assert api["block"]["reason"] == "reported stolen"

    page.click("#sign-out")
    page.wait_for_url("**/office/sign-in")
    page.goto(f"{ledger.server.url}/office/card?card=C1")
    assert page.url.endswith("/office/sign-in")
    context.close()


def test_a_clerk_reads_but_has_no_block_button_and_a_forged_block_is_refused(
        browser: Browser, ledger: Ledger) -> None:
    context, page = signed_in(browser, ledger, "carl")
    show_card(page, "C2")
    assert page.text_content("#card-value") == format_minor(
        ledger.reader.card("C2")["value_minor"], "EUR")
    assert page.locator("#block").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    # The request a block button would send, in the clerk's own session and with its token.
    answer = context.request.post(f"{ledger.server.url}/office/card/block",
                                  form={"card": "C2", "reason": "forged", "csrf": csrf},
                                  max_redirects=0)
    assert answer.status == 403 and "may not block_card" in answer.text()
    assert not ledger.reader.card("C2")["blocked"]
    context.close()


def test_a_manager_finds_links_exports_and_erases_a_customer_in_the_browser(
        browser: Browser, ledger: Ledger, tmp_path: Path) -> None:
    context, page = signed_in(browser, ledger, "mia")
    page.click("nav >> text='Customers'")
    page.fill("input[name=phone]", "+44 1632 960100")
    page.click("#find-customer")
    page.wait_for_selector("#customer-name")
    record = ledger.admin.customer(ledger.eve)
    assert page.text_content("#customer-id") == ledger.eve
    assert page.text_content("#customer-name") == record["name"]
    assert page.text_content("#customer-email") == record["email"]
    assert page.text_content("#customer-consent") == "granted on 2025-06-01 (counter)"
    history = ledger.admin.customer_history(ledger.eve)
    assert page.locator("#customer-history tbody tr").count() == len(
        history["transactions"]) == 2
    page.click("#customer-cards >> text=C1")
    page.wait_for_selector("#card-value")
    assert page.text_content("#card-value") == format_minor(
        ledger.reader.card("C1")["value_minor"], "EUR")
    page.go_back()

    page.fill("form[action='/office/customer/link'] input[name=card]", "C2")
    page.click("#link-card")
    page.wait_for_selector("#customer-cards >> text=C2")
    assert [card["card"] for card in ledger.admin.customer(ledger.eve)["cards"]] == [
        "C1", "C2"]

    with page.expect_download() as download:
        page.click("#export-customer")
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["customer"]["name"] == EVE["name"]
    assert exported["history"] == ledger.admin.customer_history(ledger.eve)

    page.fill("form[action='/office/customer/erase'] input[name=confirm]", ledger.eve)
    page.click("#erase-customer")
    page.wait_for_selector("#customer-erased")
    assert ledger.admin.customer(ledger.eve)["erased_at"] is not None
    assert EVE["name"] not in (page.content())
    context.close()


def test_the_customer_report_pages_show_the_apis_figures(browser: Browser,
                                                         ledger: Ledger) -> None:
    context, page = signed_in(browser, ledger, "carl")
    for link, heading in (("Customer value", "Customer value"),
                          ("Lapsing customers", "Lapsing customers"),
                          ("Retention", "Retention")):
        page.click(f"nav >> text='{link}'")
        assert page.text_content("main h1") == heading
    page.goto(f"{ledger.server.url}/office/customer-value?as_of={AS_OF}")
    value = ledger.reader.report("customer_value", {"as_of": AS_OF})
    classes = page.locator("#customer-classes tbody tr")
    expected = [[currency, row["class"], str(row["customers"]),
                 format_minor(row["revenue_minor"], currency), _percent(row["share_bp"])]
                for currency, figures in sorted(value["summary"].items())
                for row in figures["classes"]]
    assert [classes.nth(i).locator("td").all_text_contents()
            for i in range(classes.count())] == expected
    assert page.locator("#customer-value tbody tr").count() == len(value["rows"]) == 1

    parameters = {"as_of": AS_OF, "days": "5", "min_purchases": "1"}
    page.goto(f"{ledger.server.url}/office/customer-lapsing?as_of={AS_OF}&days=5&"
              "min_purchases=1")
    lapsing = ledger.admin.report("customer_lapsing", parameters)
    assert lapsing["summary"]["contacts"] == "shown"
    [row] = lapsing["rows"]
    assert page.text_content("#lapsing-customers") == "1"
    cells = page.locator("#customer-lapsing tbody tr td").all_text_contents()
    assert cells[0] == ledger.eve and row["email"] == EVE["email"] in cells

    page.goto(f"{ledger.server.url}/office/customer-retention?as_of={AS_OF}")
    retention = ledger.reader.report("customer_retention", {"as_of": AS_OF})
    assert page.locator("#customer-retention tbody tr").count() == len(retention["rows"])
    context.close()


def test_a_clerk_has_no_erase_button_and_a_forged_erasure_is_refused(
        browser: Browser, ledger: Ledger) -> None:
    context, page = signed_in(browser, ledger, "carl")
    page.goto(f"{ledger.server.url}/office/customer?id={ledger.eve}")
    assert page.text_content("#customer-name") == EVE["name"]
    assert page.locator("#erase-customer").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    answer = context.request.post(f"{ledger.server.url}/office/customer/erase",
                                  form={"customer_id": ledger.eve, "confirm": ledger.eve,
                                        "csrf": csrf}, max_redirects=0)
    assert answer.status == 403 and "may not erase_customer" in answer.text()
    assert ledger.admin.customer(ledger.eve)["erased_at"] is None
    context.close()
