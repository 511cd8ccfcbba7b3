"""The console's JSON API and pages on both stores: every page and action for
an operator, each action recorded with its name, and what the actions do to
the escrow's decisions (a revoked user's next key request is refused; a
suspended consignment releases nothing until resumed)."""

from __future__ import annotations

import json

from broker.messages import MessageType
from broker.pki.csr import build_csr
from broker.pki.identity import generate_keys
from escrow_worker.state import txlog
from tests.console.helpers import OPERATOR, OPERATOR_PASS, PAGES, READS, Desk, bearer


async def _pages(console_desk: Desk) -> None:
    deposit = await console_desk.deposit()
    token = await console_desk.login()
    for path in READS:
        r = await console_desk.client.get(path, headers=bearer(token))
        assert r.status_code == 200, (path, r.text)
    users = (await console_desk.client.get("/api/users", headers=bearer(token))).json()
    olga = next(u for u in users if u["name"] == OPERATOR)
    assert olga["operator"]
    assert {c["role"] for c in olga["certificates"]} == {
        "signing",
        "encryption",
    }
    await console_desk.browser_login()
    for path in (*PAGES, f"/consignments/{deposit.consignment_id}"):
        r = await console_desk.client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "<h1>" in r.text
        assert OPERATOR in r.text
        assert OPERATOR_PASS not in r.text
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def _search(console_desk: Desk) -> None:
    one = await console_desk.deposit(("bob",))
    two = await console_desk.deposit(("carol",))
    await console_desk.direct.key("bob", one)
    token = await console_desk.login()

    async def found(**query: str) -> set[str]:
        r = await console_desk.client.get("/api/consignments", params=query, headers=bearer(token))
        assert r.status_code == 200, r.text
        return {c["consignment_id"] for c in r.json()["results"]}

    both = {one.consignment_id, two.consignment_id}
    assert await found() == both
    assert await found(id=one.consignment_id[:12]) == {one.consignment_id}
    assert await found(sender="alice") == both
    assert await found(sender="bob") == set()
    assert await found(receiver="carol") == {two.consignment_id}
    assert await found(state="released") == {one.consignment_id}
    assert await found(state="open") == {two.consignment_id}
    view = (
        await console_desk.client.get(
            f"/api/consignments/{one.consignment_id}", headers=bearer(token)
        )
    ).json()
    assert [(r["name"], r["state"], r["releases"]) for r in view["receivers"]] == [
        ("bob", "released", 1)
    ]
    page = await console_desk.client.get("/api/overview", headers=bearer(token))
    assert page.json()["releases_last_hour"] == 1
    assert page.json()["consignments"] == 2
    r = await console_desk.client.get(
        "/api/consignments", params={"state": "lost"}, headers=bearer(token)
    )
    assert r.status_code == 422


async def _revoke(console_desk: Desk) -> None:
    deposit = await console_desk.deposit(("bob",))
    token = await console_desk.login()
    r = await console_desk.client.post(
        "/api/users/bob/revoke", json={"reason": "key-compromise"}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    answer = await console_desk.direct.key("bob", deposit)
    assert answer.reply.type == MessageType.ERROR
    assert answer.code == "unauthenticated"
    crl = (await console_desk.client.get("/api/crl", headers=bearer(token))).json()
    users = (await console_desk.client.get("/api/users", headers=bearer(token))).json()
    bob = next(u for u in users if u["name"] == "bob")
    assert {c["serial"] for c in bob["certificates"]} <= set(crl["revoked"])
    actions = (await console_desk.client.get("/api/actions", headers=bearer(token))).json()
    assert (actions[0]["operator"], actions[0]["action"], actions[0]["target"]) == (
        OPERATOR,
        "revoke",
        "bob",
    )


async def _suspend(console_desk: Desk) -> None:
    deposit = await console_desk.deposit(("bob",))
    token = await console_desk.login()
    path = f"/api/consignments/{deposit.consignment_id}/suspension"
    r = await console_desk.client.post(path, json={"reason": "fraud review"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["changed"]
    refused = await console_desk.direct.key("bob", deposit)
    assert refused.code == "not_allowed"
    assert refused.reply.body.detail == "suspended"
    view = (
        await console_desk.client.get(
            f"/api/consignments/{deposit.consignment_id}", headers=bearer(token)
        )
    ).json()
    assert (view["state"], view["suspended_by"]) == ("suspended", OPERATOR)
    r = await console_desk.client.delete(path, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["changed"]
    released = await console_desk.direct.key("bob", deposit)
    assert released.reply.type == MessageType.KEY_RELEASE
    actions = (await console_desk.client.get("/api/actions", headers=bearer(token))).json()
    logged = [json.loads(e) for e in await console_desk.setup.run(txlog.entries)]
    console_entries = [e for e in logged if e["kind"] == "console"]
    assert [(e["data"]["action"], e["consignment"], e["parties"]) for e in console_entries] == [
        ("suspend", deposit.consignment_id, [OPERATOR]),
        ("resume", deposit.consignment_id, [OPERATOR]),
    ]
    assert [(a["action"], a["operator"]) for a in actions[:2]] == [
        ("resume", OPERATOR),
        ("suspend", OPERATOR),
    ]


async def _policy_crl_master_key(console_desk: Desk) -> None:
    await console_desk.deposit()
    token = await console_desk.login()
    h = bearer(token)
    assert (
        await console_desk.client.post("/api/policy", json={"mode": "restricted"}, headers=h)
    ).status_code == 200
    rule = {"from_group": "staff", "to_group": "*", "allow": True}
    assert (await console_desk.client.post("/api/policy/rules", json=rule, headers=h)).json()[
        "changed"
    ]
    policy = (await console_desk.client.get("/api/policy", headers=h)).json()
    assert policy == {
        "mode": "restricted",
        "rules": [{"from_group": "staff", "to_group": "*"}],
    }
    before = (await console_desk.client.get("/api/crl", headers=h)).json()["number"]
    assert (await console_desk.client.post("/api/crl", headers=h)).status_code == 200
    assert (await console_desk.client.get("/api/crl", headers=h)).json()["number"] == before + 1
    r = await console_desk.client.post("/api/master-key/rotate", headers=h)
    assert r.status_code == 200, r.text
    assert "2 parts re-encrypted" in r.json()["detail"]
    actions = [
        a["action"] for a in (await console_desk.client.get("/api/actions", headers=h)).json()
    ]
    assert actions[:4] == ["rotate-master-key", "issue-crl", "policy-allow", "policy-mode"]


async def _csr(console_desk: Desk) -> None:
    token = await console_desk.login()
    csr = build_csr(generate_keys("dora")).decode()
    r = await console_desk.client.post(
        "/api/csr", json={"csr_pem": csr, "groups": ["staff"]}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    assert r.json()["bundle_pem"].count("BEGIN CERTIFICATE") == 3
    users = (await console_desk.client.get("/api/users", headers=bearer(token))).json()
    assert next(u for u in users if u["name"] == "dora")["groups"] == ["staff"]
    before = await console_desk.snapshot()
    bad = csr.replace(csr.splitlines()[3], csr.splitlines()[3][::-1])
    r = await console_desk.client.post("/api/csr", json={"csr_pem": bad}, headers=bearer(token))
    assert r.status_code == 409, r.text
    assert r.json()["error"]
    assert await console_desk.snapshot() == before


async def _refused_revocations(console_desk: Desk) -> None:
    token = await console_desk.login()
    before = await console_desk.snapshot()
    for name in ("acme", "nobody", OPERATOR):
        r = await console_desk.client.post(
            f"/api/users/{name}/revoke", json={}, headers=bearer(token)
        )
        assert r.status_code == 409, r.text
        assert r.json()["hint"]
    assert await console_desk.snapshot() == before


async def _forms(console_desk: Desk) -> None:
    deposit = await console_desk.deposit(("bob",))
    csrf = await console_desk.browser_login()
    r = await console_desk.client.post(
        f"/consignments/{deposit.consignment_id}/suspend", data={"csrf": csrf, "reason": "held"}
    )
    assert r.status_code == 303, r.text
    page = await console_desk.client.get(r.headers["location"])
    assert "suspended: no release until resumed" in page.text
    assert "held" in page.text
    r = await console_desk.client.post("/users/revoke", data={"csrf": csrf, "name": "carol"})
    assert r.status_code == 303
    assert "revoked carol" in (await console_desk.client.get(r.headers["location"])).text
    # A form checks what the API checks: a group name that is none changes nothing.
    before = await console_desk.snapshot()
    bad = {"csrf": csrf, "from_group": "no such group!", "to_group": "*", "allow": "true"}
    r = await console_desk.client.post("/policy/rule", data=bad)
    assert r.status_code == 422
    assert "from_group" in r.text
    assert await console_desk.snapshot() == before
    # A message in a link from elsewhere is not shown.
    page = await console_desk.client.get("/users?msg=Call+0800+now&tag=00")
    assert "Call 0800" not in page.text
    r = await console_desk.client.post("/logout", data={"csrf": csrf})
    assert r.status_code == 303
    assert (await console_desk.client.get("/users")).headers["location"] == "/login"


async def test_pages_and_search(console_desk: Desk) -> None:
    await _search(console_desk)
    await _pages(console_desk)


async def test_actions_change_what_the_escrow_decides(console_desk: Desk) -> None:
    await _suspend(console_desk)
    await _revoke(console_desk)


async def test_other_actions_and_refusals(console_desk: Desk) -> None:
    await _csr(console_desk)
    await _refused_revocations(console_desk)
    await _forms(console_desk)
    await _policy_crl_master_key(console_desk)
