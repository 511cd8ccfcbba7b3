"""The console's JSON API against its own OpenAPI document, fuzzed by
schemathesis over HTTPS on `consign escrow console`: no server error, every
status code and body as documented. A short run here; raise
CONSIGN_FUZZ_EXAMPLES for a longer one."""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.console.helpers import OPERATOR, OPERATOR_PASS
from tests.console.live import Live

EXAMPLES = int(os.environ.get("CONSIGN_FUZZ_EXAMPLES", "4"))


@pytest.fixture(scope="module")
def token(live: Live) -> str:
    with live.client() as c:
        r = c.post("/api/session", json={"name": OPERATOR, "passphrase": OPERATOR_PASS})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


@pytest.fixture(scope="module")
def api_schema(live: Live, token: str) -> Any:
    with live.client() as c:
        r = c.get("/api/openapi.json", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        document = r.json()
    assert set(document["paths"]) >= {"/api/overview", "/api/consignments", "/api/crl"}
    return schemathesis.openapi.from_dict(document)


def _check(case: Any, live: Live, token: str, session: requests.Session) -> None:
    if case.path == "/api/users/{name}/revoke" and case.path_parameters.get("name") == OPERATOR:
        return  # the operator under test stays
    headers = {} if case.path.startswith("/api/session") else {"authorization": f"Bearer {token}"}
    response = case.call(base_url=live.url, headers=headers, session=session, verify=live.ca_file)
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response)


def test_the_api_matches_its_document(api_schema: Any, live: Live, token: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
    session.verify = live.ca_file  # the console's certificate, checked against the escrow CA
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            _check(case, live, token, session)

        run()
    session.close()
