"""The console's books on both stores: the transaction log page with its
verification (a tampered entry is named, as `consign escrow log verify` names
it), and the invoices page and its CSV, whose counts are the tick engine's
(`escrow_worker.invoice.count`) on the same log; a bad period is a 400."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator

import pytest

from broker.canonical import canonical_json
from broker.txlog import Entry
from escrow_worker.invoice import Decimal, Period, Prices, count
from escrow_worker.state import txlog
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from tests.console.helpers import Desk, bearer, desk

PRICES = Prices("EUR", {"deposit": Decimal("0.50"), "release": Decimal("0.20")})


@pytest.fixture
async def priced_desk(escrow_location: Location) -> AsyncIterator[Desk]:
    async with desk(escrow_location, prices=PRICES) as d:
        yield d


async def _tamper(d: Desk, seq: int) -> None:
    """Edit entry `seq` in the store, leaving its stored hash as it was."""

    async def job(tx: Tx) -> None:
        row = await tx.fetchone("SELECT entry FROM log_entries WHERE seq = ?", (seq,))
        assert row is not None
        value = json.loads(bytes(row[0]))
        value["at"] += 1
        await tx.execute(
            "UPDATE log_entries SET entry = ? WHERE seq = ?", (canonical_json(value), seq)
        )

    await d.setup.run(job)


async def test_the_log_page_lists_filters_pages_and_verifies(console_desk: Desk) -> None:
    d = console_desk
    one = await d.deposit(("bob",))
    two = await d.deposit(("carol",))
    await d.direct.key("bob", one)
    signed = await d.direct.service.sign_log_head()
    assert signed is not None
    await d.direct.key("carol", two)  # one entry (at least) after the signed head
    h = bearer(await d.login())

    async def page(**query: str | int) -> dict[str, object]:
        r = await d.client.get("/api/log", params=query, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body, dict)
        return body

    size = len(await d.setup.run(txlog.entries))
    first = await page()
    check = first["verification"]
    assert check == {
        "intact": True,
        "entries": size,
        "verified_to": size,
        "first_bad": None,
        "problem": None,
        "hint": None,
        "signed_size": signed.head.size,
        "signed_at": "2030-06-01T12:00:00+00:00",
    }
    assert [e["seq"] for e in first["entries"]] == list(range(1, size + 1))  # type: ignore[index]
    about_one = await page(consignment=one.consignment_id)
    assert about_one["entries"]
    assert {e["consignment"] for e in about_one["entries"]} == {one.consignment_id}  # type: ignore[attr-defined]
    bobs = await page(party="bob", kind="request")
    assert [e["summary"] for e in bobs["entries"]] == ["alice deposit: ok", "bob key-request: ok"]  # type: ignore[attr-defined]
    # Paging: two at a time covers every entry once, in order.
    seen, after = [], 0
    while True:
        p = await page(limit=2, after=after)
        seen += [e["seq"] for e in p["entries"]]  # type: ignore[attr-defined]
        if p["next_after"] is None:
            break
        after = int(p["next_after"])  # type: ignore[call-overload]
    assert seen == list(range(1, size + 1))
    assert (await page(since="2030-06-02"))["entries"] == []
    r = await d.client.get("/api/log", params={"since": "yesterday"}, headers=h)
    assert r.status_code == 422
    assert "query.since: Input should be a valid datetime" in r.json()["detail"]
    await d.browser_login()
    html = (await d.client.get("/log", params={"consignment": one.consignment_id})).text
    assert f"entries 1 to {size} are intact" in html
    assert f"at entry {signed.head.size}, was signed at 2030-06-01T12:00:00+00:00" in html
    assert "bob key-request: ok" in html
    # The next-page link keeps the filters.
    html = (await d.client.get("/log", params={"since": "2030-06-01", "limit": 2})).text
    assert re.search(r'href="/log\?since=2030-06-01T00%3A00%3A00&amp;after=\d+&amp;limit=2"', html)


async def test_a_tampered_entry_is_named_on_the_page_and_in_the_api(console_desk: Desk) -> None:
    d = console_desk
    deposit = await d.deposit(("bob",))
    await d.direct.key("bob", deposit)
    h = bearer(await d.login())
    await d.browser_login()
    await _tamper(d, 3)
    before = await d.snapshot()
    check = (await d.client.get("/api/log", headers=h)).json()["verification"]
    assert (check["intact"], check["first_bad"], check["verified_to"]) == (False, 3, 2)
    assert check["problem"].startswith("entry 3: ")
    assert check["hint"]
    r = await d.client.get("/log")
    assert r.status_code == 200
    assert "NOT intact: entry 3: " in r.text
    assert "entry 3 is the first bad one" in r.text
    assert await d.snapshot() == before  # looking changed nothing
    # An entry that no longer decodes is listed at its place, not skipped.
    await d.setup.run(
        lambda tx: tx.execute("UPDATE log_entries SET entry = ? WHERE seq = 5", (b"{garbage",))
    )
    page = (await d.client.get("/api/log", params={"after": 3, "limit": 3}, headers=h)).json()
    assert [e["seq"] for e in page["entries"]] == [4, 5, 6]
    assert page["entries"][1]["kind"] == "?"
    assert "does not decode" in page["entries"][1]["summary"]
    assert page["verification"]["first_bad"] == 3


async def _invoice_log(d: Desk) -> list[Entry]:
    """Two deposits in June 2030 (one released to bob, carol refused one), one
    in July; the log's entries."""
    one = await d.deposit(("bob",))
    await d.deposit(("bob",))
    await d.direct.key("bob", one)
    refused = await d.direct.key("carol", one)
    assert refused.code is not None
    d.setup.clock.advance(31 * 86400)
    await d.deposit(("carol",))
    return [Entry.decode(e) for e in await d.setup.run(txlog.entries)]


async def test_invoices_count_as_the_tick_engine_and_download_as_csv(priced_desk: Desk) -> None:
    d = priced_desk
    entries = await _invoice_log(d)
    h = bearer(await d.login())
    june = count(entries, Period.parse("2030-06"))
    assert june == {"alice": {"deposit": 2, "storage_day": 60}, "bob": {"release": 1}}
    for period in ("2030-06", "2030-07"):
        expected = {
            (account, item, n)
            for account, items in count(entries, Period.parse(period)).items()
            for item, n in items.items()
        }
        r = await d.client.get("/api/invoices", params={"period": period}, headers=h)
        assert r.status_code == 200, r.text
        api = r.json()
        assert {(x["account"], x["item"], x["count"]) for x in api["lines"]} == expected
        assert api["currency"] == "EUR"
        r = await d.client.get("/invoices.csv", params={"period": period}, headers=h)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        assert f'filename="invoice-{period}.csv"' in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert {(x["account"], x["item"], int(x["count"])) for x in rows} == expected
        assert [x["amount"] for x in rows] == [x["amount"] for x in api["lines"]]
    june_api = (await d.client.get("/api/invoices?period=2030-06", headers=h)).json()
    assert june_api["total"] == "1.20"  # 2 deposits at 0.50, 1 release at 0.20
    # Without a period: this month (July 2030, by the escrow's clock).
    assert (await d.client.get("/api/invoices", headers=h)).json()["period"] == "2030-07"
    await d.browser_login()
    html = (await d.client.get("/invoices", params={"period": "2030-06"})).text
    assert '<th id="total">1.20</th>' in html
    assert 'href="/invoices.csv?period=2030-06"' in html


async def test_a_bad_period_is_a_400_with_a_hint(console_desk: Desk) -> None:
    d = console_desk
    h = bearer(await d.login())
    await d.browser_login()
    before = await d.snapshot()
    for period in ("2030-13", "June", "2030-6-1", "9999-12"):
        r = await d.client.get("/api/invoices", params={"period": period}, headers=h)
        assert r.status_code == 400, r.text
        assert r.json() == {
            "error": f"{period!r} is not a period",
            "hint": "give a month as YYYY-MM, e.g. 2026-11",
        }
        r = await d.client.get("/invoices.csv", params={"period": period}, headers=h)
        assert r.status_code == 400
        assert "is not a period" in r.text
    r = await d.client.get("/invoices", params={"period": "2030-13"})
    assert r.status_code == 400
    assert "&#39;2030-13&#39; is not a period" in r.text
    assert await d.snapshot() == before
