"""The ledger API described as an OpenAPI 3.1 document (GET /v1/openapi.json; issue 19
item 3), for those who write clients of it and for API tools.

One table of routes (`ROUTES`): each method and path the server answers (ledger/server.py),
who may call it, what it takes and its statuses; the bodies' fields are described in
docs/ledger.md, which each operation names, and every error is `{"error", "detail"}`
(schema `Error`, reasons in docs/ledger.md "Reason codes"). The back office's HTML pages
(`/office/...`) are not part of it. tests/ledger/test_openapi.py checks the document against
the OpenAPI 3.1 schema, that the server routes every operation here and no other method of
these paths, and that every path the server's docstring names is here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

OPENAPI_PATH = "/v1/openapi.json"
OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
DOCS = "docs/ledger.md"
_PARAMETER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    """One operation: `path` with {parameters}; `who`: the logins that may call it."""

    method: str
    path: str
    summary: str
    who: str
    statuses: tuple[int, ...]
    body: bool = False
    query: tuple[str, ...] = ()
    json: bool = True  # False: its answer is text (GET /metrics)


GATEWAY = "gateway"
READ = "a read of the books: reader, admin"
OFFICE = "manager, admin"
CUSTOMERS = "admin"
ANYONE = "anyone, no login"

ROUTES: tuple[Route, ...] = (
    Route("post", "/v1/batches", "Post a settlement batch, each transaction exactly once",
          GATEWAY, (200, 400, 409, 411, 413, 415), body=True),
    Route("post", "/v1/holds", "Hold card value, points and uses of targeted offers", GATEWAY,
          (200, 201, 400, 404, 409), body=True),
    Route("get", "/v1/holds", "Holds per status", READ, (200,)),
    Route("get", "/v1/holds/{hold_id}", "One hold", f"{GATEWAY} (its own), {READ}", (200, 404)),
    Route("delete", "/v1/holds/{hold_id}", "Void a hold", f"{GATEWAY} (its own), admin",
          (200, 404, 409)),
    Route("get", "/v1/cards/{card}", "A card's balance, block, last stores and engine state",
          f"{GATEWAY}, {READ}", (200, 404), query=("for",)),
    Route("put", "/v1/cards/{card}", "Register and activate a personalized card", "cards, admin",
          (200, 400, 409), body=True),
    Route("post", "/v1/cards/{card}/block", "Block a card for every store", "cards, admin",
          (200, 400, 404), body=True),
    Route("delete", "/v1/cards/{card}/block", "Lift a card's block", "cards, admin",
          (200, 404)),
    Route("post", "/v1/cards/{card}/replace", "Replace a lost or damaged card", OFFICE,
          (200, 400, 404, 409), body=True),
    Route("get", "/v1/cards/{card}/history", "The card's transactions with running balances",
          READ, (200, 404)),
    Route("get", "/v1/blocks", "The feed of card blocks", f"{GATEWAY}, {READ}", (200, 400),
          query=("since",)),
    Route("get", "/v1/changes", "The card feed: posted transactions after a cursor",
          f"{GATEWAY}, {READ}", (200, 400), query=("after", "for")),
    Route("post", "/v1/served", "Note the cards a gateway serves (its filtered feed)", GATEWAY,
          (200, 400), body=True),
    Route("get", "/v1/balances", "Every card's balance", READ, (200,)),
    Route("get", "/v1/terminals", "Totals per terminal and kind", READ, (200,)),
    Route("get", "/v1/trial-balance", "The sum per unit, all zero in healthy books", READ,
          (200,)),
    Route("get", "/v1/alarms", "The ledger's alarms, oldest first", READ, (200,)),
    Route("get", "/v1/refused", "Transactions the ledger refused", READ, (200, 400),
          query=("batch_id",)),
    Route("get", "/v1/reports/{name}", "A named report", READ, (200, 400, 404),
          query=("as_of", "window_days", "days", "min_purchases", "top_percent",
                 "next_percent", "months")),
    Route("get", "/v1/health", "Whether the books answer, and where reports are read",
          ANYONE, (200, 503)),
    Route("get", "/health", "The same as /v1/health (what probes ask by default)", ANYONE,
          (200, 503)),
    Route("get", OPENAPI_PATH, "This document", ANYONE, (200,)),
    Route("post", "/v1/fleet", "A gateway's report of its terminals", GATEWAY,
          (200, 400, 403, 413), body=True),
    Route("get", "/v1/fleet", "Each gateway's last fleet report", READ, (200,)),
    Route("get", "/metrics", "Prometheus metrics (text)", READ, (200,), json=False),
    Route("post", "/v1/customers", "Create a customer", CUSTOMERS, (201, 400, 409, 503),
          body=True),
    Route("get", "/v1/customers/{customer_id}", "A customer's record", CUSTOMERS,
          (200, 404, 503)),
    Route("patch", "/v1/customers/{customer_id}", "Change a customer's fields", CUSTOMERS,
          (200, 400, 404, 409, 503), body=True),
    Route("delete", "/v1/customers/{customer_id}", "Erase a customer", CUSTOMERS,
          (200, 404, 503)),
    Route("put", "/v1/customers/{customer_id}/cards/{card}", "Link a card to a customer",
          CUSTOMERS, (200, 404, 409, 503)),
    Route("delete", "/v1/customers/{customer_id}/cards/{card}", "Unlink a card", CUSTOMERS,
          (200, 404, 409, 503)),
    Route("get", "/v1/customers/{customer_id}/history", "A customer's cards' transactions",
          CUSTOMERS, (200, 404, 413, 503)),
    Route("get", "/v1/customers/{customer_id}/export", "Everything held about a customer",
          CUSTOMERS, (200, 404, 503)),
    Route("post", "/v1/customers/find", "Find a customer by phone or e-mail", CUSTOMERS,
          (200, 400, 404, 503), body=True),
    Route("post", "/v1/customers/retention", "Erase (or list) the inactive customers",
          CUSTOMERS, (200, 400, 503), body=True),
    Route("post", "/v1/enrolments", "A counter enrols a card with a customer", GATEWAY,
          (200, 400, 403, 404, 409, 503), body=True),
    Route("post", "/v1/offers/grants", "Issue a targeted offer", OFFICE, (200, 400, 404),
          body=True),
    Route("get", "/v1/offers/report", "A targeted offer's response", READ, (200, 400, 404),
          query=("program", "offer")),
    Route("post", "/v1/rank", "Rank a program's cards for an ended period", OFFICE,
          (200, 400, 404), body=True),
    Route("post", "/v1/rewards/stock", "Set, add to or stop counting a reward item's stock",
          OFFICE, (200, 400, 404), body=True),
    Route("get", "/v1/rewards/stock", "The counted reward items", READ, (200,),
          query=("program",)),
    Route("post", "/v1/companies", "Create or change a company", OFFICE, (200, 201, 400, 409),
          body=True),
    Route("get", "/v1/companies/{company}", "A company's budget, spend and cards",
          f"{READ}, clerk, manager", (200, 404)),
    Route("post", "/v1/companies/{company}/cards", "Put a card in a company", OFFICE,
          (200, 400, 404, 409), body=True),
    Route("delete", "/v1/companies/{company}/cards/{card}", "Take a card out of a company",
          OFFICE, (200, 404)),
)

_STATUS_TEXT = {200: "done", 201: "created", 400: "malformed or against a rule",
                403: "this login may not", 404: "unknown", 409: "in conflict with the books",
                411: "no Content-Length", 413: "too large", 415: "not JSON",
                503: "the books (or the customer key) are not available"}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ROUTES."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tilltap ledger API",
            "version": API_VERSION,
            "description": (f"The central ledger's HTTP API. Bodies and answers are JSON; "
                             f"their fields, rules and reason codes are in {DOCS}. Every "
                             "call but the health check and this document needs a login: "
                             "`Authorization: Bearer <name>:<secret>` (tilltap ledger login "
                             "add). The back office's pages under /office/ are HTML and "
                             "not described here."),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"login": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "detail"],
                          "properties": {"error": {"type": "string",
                                                   "description": "a reason code"},
                                         "detail": {"type": "string"}}},
                "Answer": {"type": "object",
                           "description": f"the operation's answer: see {DOCS}"},
            },
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "description": f"Who may: {route.who}. Fields: {DOCS}.",
        "operationId": _operation_id(route),
        "responses": {str(status): _response(route, status) for status in route.statuses},
    }
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PARAMETER.findall(route.path)]
    parameters += [{"name": name, "in": "query", "required": False,
                    "schema": {"type": "string"}} for name in route.query]
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object"}}}}
    operation["security"] = [] if route.who == ANYONE else [{"login": []}]
    return operation


def _response(route: Route, status: int) -> dict[str, Any]:
    if status >= 400:
        return {"description": _STATUS_TEXT.get(status, "refused"), "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if not route.json:
        return {"description": _STATUS_TEXT[status],
                "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {"description": _STATUS_TEXT[status], "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}}


def _operation_id(route: Route) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", route.path.lower()).strip("_")
    return f"{route.method}_{words}"
