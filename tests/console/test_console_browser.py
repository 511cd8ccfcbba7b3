"""The console in a real browser: Debian's headless Chromium driven through
/usr/bin/chromedriver by Selenium (never a downloaded browser). An operator
logs in, finds a consignment, suspends and resumes it, revokes its receiver
and sees that receiver's next key request refused, reads the transaction log
(verified) filtered by that consignment, and downloads the month's invoice as
CSV. Another browser, holding olga's console certificate in its NSS database,
logs in with the certificate alone. A screenshot of each page, and the CSV,
are saved under $CONSIGN_TEST_ARTEFACTS/console (default: test-artefacts/console).

Without Chromium (or pk12util, for the certificate) the tests skip, except
under CI=true, where they fail."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from broker import Deposit
from broker.messages import MessageType
from broker.txlog import Entry
from escrow_worker.invoice import Period, count
from escrow_worker.state import txlog
from tests.console.helpers import OPERATOR, OPERATOR_PASS
from tests.console.live import Live
from tests.escrow_worker.control_helpers import Answer, Direct
from tests.escrow_worker.helpers import seal_for

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PK12UTIL, CERTUTIL = Path("/usr/bin/pk12util"), Path("/usr/bin/certutil")
ARTEFACTS = Path(os.environ.get("CONSIGN_TEST_ARTEFACTS", "test-artefacts")) / "console"


def _need(*tools: Path, install: str) -> None:
    missing = [str(p) for p in tools if not p.exists()]
    if missing:
        reason = f"{', '.join(missing)} missing: apt-get install {install}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true needs it", pytrace=False)
        pytest.skip(f"{reason} (with CI=true this is a failure)")


@contextmanager
def _chromium(home: Path, prefs: dict[str, Any] | None = None) -> Iterator[Any]:
    """Headless Chromium with `home` as its HOME (where it finds its NSS
    database of client certificates, ~/.pki/nssdb)."""
    _need(CHROMIUM, CHROMEDRIVER, install="chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    if prefs:
        options.add_experimental_option("prefs", prefs)
    # The console's certificate chains to the escrow's Ed25519 CA, which Chromium
    # cannot verify; what is under test here is the console, not that chain.
    options.accept_insecure_certs = True
    service = Service(executable_path=str(CHROMEDRIVER), env={**os.environ, "HOME": str(home)})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A browser without a client certificate: it logs in with the passphrase."""
    with _chromium(tmp_path_factory.mktemp("home")) as driver:
        yield driver


@pytest.fixture(scope="module")
def certificate_browser(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A browser holding olga's console certificate: the PKCS#12 file `consign
    escrow operator --p12` wrote, imported into the NSS database in its HOME
    (pk12util), and chosen for the console without a dialog (headless Chromium
    cannot show one) by the profile's auto-select-certificate setting for the
    console's origin, which is what the AutoSelectCertificateForUrls policy sets."""
    _need(PK12UTIL, CERTUTIL, install="libnss3-tools")
    home = tmp_path_factory.mktemp("home")
    nss = home / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    subprocess.run([CERTUTIL, "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    imported = subprocess.run(
        [PK12UTIL, "-i", live.p12, "-d", f"sql:{nss}", "-W", OPERATOR_PASS, "-K", ""],
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    ca = x509.load_pem_x509_certificate(Path(live.ca_file).read_bytes())
    (cn,) = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    only_ours = {"ISSUER": {"CN": cn.value}}
    setting = {f"{live.url},*": {"setting": {"filters": [only_ours]}}}
    prefs = {"profile.content_settings.exceptions.auto_select_certificate": setting}
    with _chromium(home, prefs) as driver:
        yield driver


def _escrow(live: Live, act: str, deposit: Deposit | None = None) -> tuple[Deposit, Answer | None]:
    """Deposit a consignment from alice to bob, or ask for its key as bob."""

    async def go() -> tuple[Deposit, Answer | None]:
        live.setup.clock.now = datetime.now(UTC)
        async with await live.setup.open_service() as service:
            direct = Direct(live.setup, service)
            if act == "deposit":
                _, made = seal_for(live.setup["alice"], [live.setup["bob"]])
                await direct.deposit(made)
                return made, None
            assert deposit is not None
            return deposit, await direct.key("bob", deposit)

    return asyncio.run(go())


def _download_invoice(live: Live, d: object, find: Any, shot: Any, tmp_path: Path) -> None:
    """Open this month's invoice, click its CSV link, and compare the file with
    the tick engine's counts on the escrow's log."""
    from selenium.webdriver.support.wait import WebDriverWait

    period = datetime.now(UTC).strftime("%Y-%m")
    d.get(f"{live.url}/invoices?period={period}")  # type: ignore[attr-defined]
    assert find("h1").text == f"Invoices {period}"
    assert "Prices in EUR." in find("main").text  # the live console's --prices
    shot("invoices")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    d.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    find("#csv").click()
    target = downloads / f"invoice-{period}.csv"
    WebDriverWait(d, 20).until(lambda _: target.exists())
    shutil.copy(target, ARTEFACTS / target.name)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))

    async def entries() -> list[Entry]:
        return [Entry.decode(e) for e in await live.setup.run(txlog.entries)]

    expected = count(asyncio.run(entries()), Period.parse(period))
    assert {(r["account"], r["item"], int(r["count"])) for r in rows} == {
        (account, item, n) for account, items in expected.items() for item, n in items.items()
    }
    assert expected["alice"]["deposit"] >= 1
    unit = {r["item"]: r["unit_price"] for r in rows}
    assert (unit["deposit"], unit["release"], unit["storage_day"]) == ("0.50", "0.20", "0")
    assert expected["bob"]["release"] >= 1


def test_an_operator_finds_suspends_and_revokes_in_the_browser(
    live: Live, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    driver: object = browser
    d = driver  # selenium's WebDriver; typed loosely so this module imports without it

    def shot(name: str) -> None:
        assert d.save_screenshot(str(ARTEFACTS / f"{name}.png"))  # type: ignore[attr-defined]

    def page(path: str) -> None:
        d.get(live.url + path)  # type: ignore[attr-defined]

    def find(css: str) -> object:
        return d.find_element(By.CSS_SELECTOR, css)  # type: ignore[attr-defined]

    def submit(css: str) -> None:
        """Click a button and wait for the page it leads to."""
        old = find("html")
        find(css).click()  # type: ignore[attr-defined]
        WebDriverWait(d, 20).until(staleness_of(old))

    deposit, _ = _escrow(live, "deposit")
    # Every page sends a stranger to the login page.
    page("/users")
    assert d.current_url.endswith("/login")  # type: ignore[attr-defined]
    shot("login")
    find("#name").send_keys(OPERATOR)  # type: ignore[attr-defined]
    find("#passphrase").send_keys(OPERATOR_PASS)  # type: ignore[attr-defined]
    submit("#submit")
    assert find("h1").text == "Overview"  # type: ignore[attr-defined]
    assert OPERATOR in find("nav").text  # type: ignore[attr-defined]
    shot("overview")
    for path, name in (("/crl", "crl"), ("/policy", "policy"), ("/actions", "actions")):
        page(path)
        shot(name)
    # Find the consignment by the start of its id, open it, suspend it, resume it.
    page("/consignments")
    find("#q-id").send_keys(deposit.consignment_id[:10])  # type: ignore[attr-defined]
    submit("#find")
    shot("consignments")
    submit(f'a[href="/consignments/{deposit.consignment_id}"]')
    assert find("#state").text == "open"  # type: ignore[attr-defined]
    submit("#suspend")
    assert find("#state").text == "suspended"  # type: ignore[attr-defined]
    shot("consignment-suspended")
    _, refused = _escrow(live, "key", deposit)
    assert refused is not None
    assert refused.code == "not_allowed"
    submit("#resume")
    assert find("#state").text == "open"  # type: ignore[attr-defined]
    _, released = _escrow(live, "key", deposit)
    assert released is not None
    assert released.reply.type == MessageType.KEY_RELEASE
    page("/")
    assert find("#releases").text == "1 / 1"  # type: ignore[attr-defined]
    assert find("#denials").text == "1 / 1"  # type: ignore[attr-defined]
    shot("overview-after")
    # Revoke bob; its next key request is refused.
    page("/users")
    submit("#revoke-bob")
    assert "revoked bob" in find("#msg").text  # type: ignore[attr-defined]
    assert "revoked" in find("#user-bob").text  # type: ignore[attr-defined]
    shot("users-bob-revoked")
    _, answer = _escrow(live, "key", deposit)
    assert answer is not None
    assert answer.reply.type == MessageType.ERROR
    assert answer.code == "unauthenticated"
    page("/actions")
    rows = find("#actions").text  # type: ignore[attr-defined]
    assert f"{OPERATOR} revoke bob" in rows
    assert f"{OPERATOR} suspend {deposit.consignment_id}" in rows
    shot("actions-after")
    # The transaction log: verified, and filtered by the consignment.
    page("/log")
    assert find("#verification").text.startswith("Verified: entries 1 to ")  # type: ignore[attr-defined]
    shot("log")
    find("#q-consignment").send_keys(deposit.consignment_id)  # type: ignore[attr-defined]
    submit("#filter")
    rows = find("#entries").text  # type: ignore[attr-defined]
    assert "alice deposit: ok" in rows
    assert "bob key-request: not_allowed" in rows  # while it was suspended
    assert "action=revoke" not in rows  # not about this consignment
    shot("log-consignment")
    # This month's invoice, on the page and downloaded as CSV.
    _download_invoice(live, d, find, shot, tmp_path)
    # Logging out ends the session.
    submit("#logout")
    page("/")
    assert d.current_url.endswith("/login")  # type: ignore[attr-defined]


def test_an_operator_logs_in_with_her_certificate_in_the_browser(
    live: Live, certificate_browser: object
) -> None:
    from selenium.webdriver.common.by import By

    d: Any = certificate_browser
    d.get(live.url + "/")
    assert d.current_url.endswith("/login")
    d.find_element(By.CSS_SELECTOR, "#certificate").click()  # no name, no passphrase
    assert d.find_element(By.CSS_SELECTOR, "h1").text == "Overview"
    assert OPERATOR in d.find_element(By.CSS_SELECTOR, "nav").text
    d.save_screenshot(str(ARTEFACTS / "overview-certificate-login.png"))
    d.find_element(By.CSS_SELECTOR, "#logout").click()
    d.get(live.url + "/users")
    assert d.current_url.endswith("/login")
