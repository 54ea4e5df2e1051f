"""The ledger API's OpenAPI document (ledger/openapi.py, GET /v1/openapi.json): valid
OpenAPI 3.1 (checked by openapi-spec-validator against the specification's own schema),
served without a login, and true to the server: every operation it lists is routed (its
answer is never "no such path" nor 405), no other method of its paths is, and every path
the server's docstring names is in it."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from ledger import server as server_module
from ledger.auth import dump_logins, new_login
from ledger.openapi import OPENAPI_PATH, ROUTES, document
from ledger.server import LedgerServer, serve

METHODS = ("get", "post", "put", "patch", "delete")
PLACEHOLDER = "X1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LedgerServer]:
    running = serve(f"sqlite://{tmp_path / 'ledger.db'}")
    yield running
    running.stop()


def ask(server: LedgerServer, method: str, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        body = b"{}" if method in ("post", "put", "patch") else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method.upper(), path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def concrete(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", PLACEHOLDER, path)


def test_the_document_is_valid_openapi_and_served_without_a_login(tmp_path: Path) -> None:
    validate(document())  # raises on any breach of the OpenAPI 3.1 schema
    login, token = new_login("alice", "reader")
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({"alice": login}))
    running = serve(f"sqlite://{tmp_path / 'ledger.db'}", logins_file=logins)
    try:
        status, body = ask(running, "get", OPENAPI_PATH)
        assert status == 200 and json.loads(body) == document()
        assert ask(running, "get", "/v1/balances")[0] == 401  # the rest still needs one
    finally:
        running.stop()


def test_every_operation_listed_is_routed_and_no_other_method(server: LedgerServer) -> None:
    listed: dict[str, set[str]] = {}
    for route in ROUTES:
        listed.setdefault(route.path, set()).add(route.method)
    for path, methods in listed.items():
        for method in METHODS:
            status, body = ask(server, method, concrete(path))
            reason = json.loads(body).get("error") if body.startswith(b"{") else None
            if method in methods:
                assert status != 405 and reason != "not_found", (method, path, status, body)
            else:
                assert status == 405, (method, path, status, body)


def test_every_path_the_servers_docstring_names_is_listed() -> None:
    assert server_module.__doc__ is not None
    named = {re.sub(r"<[a-z]+>", "{}", found) for found in re.findall(
        r"(?:GET|POST|PUT|PATCH|DELETE)\s+(/(?:v1/[a-z/<>._-]*[a-z>]|health|metrics))(?=[\s?\[)])",
        server_module.__doc__)}
    listed = {re.sub(r"\{[a-z_]+\}", "{}", route.path) for route in ROUTES}
    assert named and named <= listed, named - listed
