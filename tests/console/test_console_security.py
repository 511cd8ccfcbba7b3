"""Who the console refuses, on both stores: no credentials, a receiver that is
no operator, a wrong passphrase, a session past its expiry, a revoked
operator, a forged or missing CSRF token. Each is refused and changes nothing."""

from __future__ import annotations

from tests.console.helpers import (
    DOWNLOADS,
    OPERATOR,
    OPERATOR_PASS,
    PAGES,
    READS,
    SESSION_SECONDS,
    Desk,
    bearer,
    make_operator,
)

#: (method, path, JSON body) of every action in the API.
WRITES = (
    ("POST", "/api/users/bob/revoke", {"reason": "unspecified"}),
    ("POST", "/api/crl", None),
    ("POST", "/api/policy", {"mode": "restricted"}),
    ("POST", "/api/policy/rules", {"from_group": "a", "to_group": "b", "allow": True}),
    ("POST", "/api/master-key/rotate", None),
    ("POST", "/api/csr", {"csr_pem": "x"}),
)
#: (path, form) of HTML forms that change something.
FORMS = (
    ("/users/revoke", {"name": "bob"}),
    ("/crl/issue", {}),
    ("/policy/mode", {"mode": "restricted"}),
    ("/master-key/rotate", {}),
)


async def _all_refused(d: Desk, headers: dict[str, str], status: int = 401) -> None:
    deposit = await d.deposit() if not (await d.snapshot())["deposits"] else None
    cid = deposit.consignment_id if deposit else str((await d.snapshot())["deposits"][0][0])
    before = await d.snapshot()
    for path in READS:
        r = await d.client.get(path, headers=headers)
        assert r.status_code == status, (path, r.text)
    writes = (
        *WRITES,
        ("POST", f"/api/consignments/{cid}/suspension", {"reason": "r"}),
        ("DELETE", f"/api/consignments/{cid}/suspension", None),
    )
    for method, path, body in writes:
        r = await d.client.request(method, path, json=body, headers=headers)
        assert r.status_code == status, (path, r.text)
    for path, form in (*FORMS, (f"/consignments/{cid}/suspend", {"reason": "r"})):
        r = await d.client.post(path, data=form, headers=headers)
        assert r.status_code in (303, 401, 403), (path, r.text)
        assert r.headers.get("location", "/login") == "/login"
    assert await d.snapshot() == before


async def test_no_login_a_receiver_a_wrong_passphrase_and_an_expired_session(
    console_desk: Desk,
) -> None:
    d = console_desk
    # No credentials at all, and a made-up token.
    for path in (*PAGES, *DOWNLOADS):
        r = await d.client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/login"
    await _all_refused(d, {})
    await _all_refused(d, bearer("passphrase:made-up"))
    # A receiver is no operator, whatever it says; nor is a wrong passphrase enough.
    before = await d.snapshot()
    for name, passphrase in (("bob", OPERATOR_PASS), (OPERATOR, "guess"), ("nobody", "x")):
        r = await d.client.post("/api/session", json={"name": name, "passphrase": passphrase})
        assert r.status_code == 401, r.text
        await d.client.get("/login")
        form = {
            "name": name,
            "passphrase": passphrase,
            "csrf": d.client.cookies.get("consign_console_login", ""),
        }
        r = await d.client.post("/login", data=form)
        assert r.status_code == 401, r.text
        assert "consign_console" not in r.cookies
    assert await d.snapshot() == before
    # A session past its expiry.
    token = await d.login()
    assert (await d.client.get("/api/users", headers=bearer(token))).status_code == 200
    d.setup.clock.advance(SESSION_SECONDS)
    await _all_refused(d, bearer(token))


async def test_a_revoked_operator_and_forged_csrf_tokens(console_desk: Desk) -> None:
    d = console_desk
    await make_operator(d.setup, "otto", "otto's passphrase")
    olga = await d.login()
    otto = await d.login("otto", "otto's passphrase")
    # Cookie sessions: a missing, a forged and another session's CSRF token.
    csrf = await d.browser_login()
    before = await d.snapshot()
    for offered in ({}, {"csrf": "forged"}, {"csrf": csrf[::-1]}):
        for path, form in FORMS:
            r = await d.client.post(path, data={**form, **offered})
            assert r.status_code == 403, (path, r.text)
    for method, path, body in WRITES:
        r = await d.client.request(method, path, json=body, headers={"x-csrf-token": "forged"})
        assert r.status_code == 403, (path, r.text)
    # The login form itself: without the cookie its token came with.
    d.client.cookies.delete("consign_console_login")
    r = await d.client.post(
        "/login", data={"name": OPERATOR, "passphrase": OPERATOR_PASS, "csrf": "x"}
    )
    assert r.status_code == 403
    assert await d.snapshot() == before
    # Revoked by another operator: its token, its cookie and its passphrase stop working.
    r = await d.client.post(f"/api/users/{OPERATOR}/revoke", json={}, headers=bearer(otto))
    assert r.status_code == 200, r.text
    await _all_refused(d, bearer(olga))
    r = await d.client.post("/api/session", json={"name": OPERATOR, "passphrase": OPERATOR_PASS})
    assert r.status_code == 401
    assert (await d.client.get("/users")).headers["location"] == "/login"
