"""The end-user web page at ``/`` in real headless Chromium (Debian's) against a running mizu:
logging in, the JSON API's errors shown as text, the phone-to-phone mode needing a second
number, and a callback watched on the page while a real SIP worker and SIPp play it out.

Playwright's sync API blocks, and mizu runs in this test's reactor: every browser step runs
on one thread of its own (``Browser.run``), so the reactor keeps serving while Chromium waits.
"""

from __future__ import annotations

import shutil

import pytest_twisted
from playwright.sync_api import Page, expect, sync_playwright
from twisted.internet import reactor, threads
from twisted.python.threadpool import ThreadPool

from tests.e2e.peers import free_port, listening, sipp, wait_until
from tests.e2e.test_sip import boot, finished

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
A_NUMBER = "4917011"
SHOT = "/tmp/mizu-webpage.png"


class Browser:
    """Headless Chromium on a fresh profile, driven by Playwright's sync API on one thread.

    Playwright's sync objects belong to the thread that made them, hence a pool of exactly
    one thread; ``run(step, ...)`` calls ``step(page, ...)`` there and fires with its result
    (or its failure: a failed ``expect`` fails the test)."""

    def __init__(self):
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="chromium")
        self._pool.start()
        self._playwright = self._context = self.page = None
        self.posts: list[str] = []  # the body of every POST the page sent

    def run(self, step, *args):
        return threads.deferToThreadPool(reactor, self._pool, step, self.page, *args)

    def start(self, _page, profile):
        self._playwright = sync_playwright().start()
        self._context = self._playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
            locale="en-GB", timezone_id="UTC")
        self.page = self._context.pages[0] if self._context.pages else self._context.new_page()
        self.page.set_default_timeout(10_000)
        self.page.on("request", lambda r: self.posts.append(r.post_data or "")
                     if r.method == "POST" else None)

    def stop(self, _page):
        if self._context is not None:
            self._context.close()
        if self._playwright is not None:
            self._playwright.stop()

    def close(self):
        self._pool.stop()


@pytest_twisted.async_yield_fixture
async def browser(tmp_path):
    """A started headless Chromium with a phone-size viewport."""
    made = Browser()
    try:
        await made.run(made.start, tmp_path / "chromium-profile")
        yield made
    finally:
        await made.run(made.stop)
        made.close()


@pytest_twisted.async_yield_fixture
async def sip_mizu(tmp_path, database, sql):
    """mizu with a real SIP worker; alice (credit 5) has A-numbers routed to a SIPp peer on
    ``root.port_a``; a request waits 2 s before it is dialled, A rings at most 5 s, once."""
    root = await boot(tmp_path, database, sql, extra=(
        "[callback]\nring_timeout = 5\nmax_attempts = 1\npoll_interval = 1\n"))
    root.port_a = free_port()
    sql("UPDATE tb_user SET credit = 5 WHERE username = 'alice'")
    sql("INSERT INTO tb_config (name, value) VALUES ('callbackdelay', '2')")
    sql("INSERT INTO tb_rates (prefix, price) VALUES ('44', 0.125), ('4917', 0.06)")
    sql("INSERT INTO tb_routes (prefix, gateway) VALUES ('4917', %s)",
        (f"sip:{{number}}@127.0.0.1:{root.port_a}",))
    await root.reload()
    yield root
    await root.stopService()


def page_url(root) -> str:
    return f"http://127.0.0.1:{root.getServiceNamed('http').port}/"


def log_in(page: Page, url: str, user: str, password: str) -> None:
    """Open the page and send the login form."""
    if page.url != url:
        page.goto(url)
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-button")


def request_call(page: Page, mode: str, anum: str, bnum: str) -> None:
    page.check(f"#mode-{mode}")
    page.fill("#anum", anum)
    page.fill("#bnum", bnum)
    page.click("#call-button")


def wrong_then_right_login(page: Page, url: str) -> None:
    """A wrong password shows the server's error and nothing else; the right one the
    balance, without the browser's own login box ever being asked for."""
    with page.expect_response(lambda r: r.url.endswith("/api/v1/balance")) as answer:
        log_in(page, url, "alice", "guess")
    assert answer.value.status == 401
    assert "www-authenticate" not in answer.value.headers
    expect(page.locator("#login-error")).to_have_text("wrong username or password")
    expect(page.locator("#app")).to_be_hidden()
    log_in(page, url, "alice", "wonder")
    expect(page.locator("#balance")).to_have_text("5.00")
    expect(page.locator("#who")).to_have_text("alice")
    expect(page.locator("#login-panel")).to_be_hidden()
    expect(page.locator("#login-error")).to_be_hidden()
    assert page.input_value("#password") == ""


def p2p_needs_bnum_and_errors_are_text(page: Page, posts: list[str], folder) -> None:
    """Phone to phone without a second number sends nothing; a number that is HTML is
    refused by the server and its error shown as text, not markup."""
    request_call(page, "p2p", A_NUMBER, "")
    expect(page.locator("#bnum-hint")).to_have_text("(required)")
    assert page.eval_on_selector("#bnum", "e => e.validity.valueMissing") is True
    page.wait_for_timeout(300)
    assert posts == []
    expect(page.locator("#callback-panel")).to_be_hidden()
    request_call(page, "p2p", A_NUMBER, "<b>44</b>")
    error = page.locator("#error")
    expect(error).to_have_text("B-number '<b>44</b>' is not a phone number (digits, "
                               "optionally after + or 00, at most 20)")
    assert error.locator("b").count() == 0
    assert len(posts) == 1
    expect(page.locator("#callback-panel")).to_be_hidden()
    page.screenshot(path=str(folder / "webpage-error.png"), full_page=True)


def request_and_see_it_pending(page: Page) -> int:
    """Call me back without a destination: the page shows the new request, then its polled
    state (which has a time); fires with the id shown."""
    request_call(page, "callback", A_NUMBER, "")
    expect(page.locator("#cb-status")).to_have_text("pending")
    expect(page.locator("#error")).to_be_hidden()
    with page.expect_response(lambda r: "/api/v1/callbacks/" in r.url, timeout=5000) as got:
        pass
    assert got.value.status == 200
    expect(page.locator("#cb-updated")).not_to_have_text("–")
    expect(page.locator("#cb-status")).to_have_text("pending")
    expect(page.locator("#cb-anum")).to_have_text(A_NUMBER)
    expect(page.locator("#cb-bnum")).to_have_text("asked on the call")
    return int(page.text_content("#cb-id").lstrip("#"))


def log_out(page: Page) -> None:
    """Log out forgets everything: the form is back, nothing is kept in storage."""
    page.click("#logout")
    expect(page.locator("#login-panel")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#account")).to_be_hidden()
    assert page.input_value("#password") == ""
    assert page.evaluate("() => sessionStorage.length + localStorage.length") == 0


@pytest_twisted.ensureDeferred
async def test_login_errors_and_a_request(api, browser, sql, tmp_path):
    """Wrong then right login; p2p needs B; errors are text; a request is stored pending
    and shown so; logging out forgets the credentials."""
    url = page_url(api)
    await browser.run(wrong_then_right_login, url)
    await browser.run(p2p_needs_bnum_and_errors_are_text, browser.posts, tmp_path)
    assert sql("SELECT count(*) FROM tb_callbacks") == [(0,)]
    cbid = await browser.run(request_and_see_it_pending)
    assert sql("SELECT anum, bnum, source, status, userid = (SELECT id FROM tb_user"
               " WHERE username = 'alice') FROM tb_callbacks WHERE id = %s", (cbid,)) == [
        (A_NUMBER, "", "http", "pending", True)]
    await browser.run(log_out)


# Records every status #cb-status shows, in order (a poll repeating one is not a change).
WATCH_STATUS = """() => {
  const el = document.getElementById("cb-status");
  window.seen = [];
  const note = () => {
    if (el.textContent && window.seen[window.seen.length - 1] !== el.textContent)
      window.seen.push(el.textContent);
  };
  new MutationObserver(note).observe(el, {childList: true, characterData: true,
                                          subtree: true});
}"""


def log_in_and_request(page: Page, url: str) -> int:
    log_in(page, url, "alice", "wonder")
    expect(page.locator("#balance")).to_have_text("5.00")
    page.evaluate(WATCH_STATUS)
    request_call(page, "callback", A_NUMBER, "")
    expect(page.locator("#cb-status")).to_have_text("pending")
    return int(page.text_content("#cb-id").lstrip("#"))


def see_it_end(page: Page, folder) -> list[str]:
    """The status goes on to calling_a, then failed with the reason; the balance is asked
    for again; screenshots on a phone and a desktop. Fires with the statuses seen."""
    expect(page.locator("#cb-status")).to_have_text("calling_a", timeout=10_000)
    expect(page.locator("#cb-meaning")).to_have_text("calling your phone")
    expect(page.locator("#cb-status")).to_have_text("failed", timeout=15_000)
    expect(page.locator("#cb-reason")).to_have_text("A did not answer")
    expect(page.locator("#cb-watch")).to_have_text("")
    expect(page.locator("#balance")).to_have_text("4.50")
    phone, desktop = folder / "webpage-phone.png", folder / "webpage-desktop.png"
    page.screenshot(path=str(phone), full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(desktop), full_page=True)
    page.set_viewport_size(PHONE)
    print(f"\nscreenshots: {phone} {desktop}")
    shutil.copy(phone, SHOT)
    shutil.copy(desktop, SHOT.replace(".png", "-desktop.png"))
    return page.evaluate("() => window.seen")


@pytest_twisted.ensureDeferred
async def test_a_callback_is_watched_until_it_ends(sip_mizu, browser, sql, tmp_path):
    """A callback requested on the page is shown pending, then calling_a while SIPp rings as
    A, then failed 'A did not answer' after the ring timeout, as stored; the balance shown
    is fetched again at the end (changed meanwhile by SQL)."""
    a = sipp("uas_ring.xml", port=sip_mizu.port_a)
    await listening(sip_mizu.port_a)
    cbid = await browser.run(log_in_and_request, page_url(sip_mizu))
    sql("UPDATE tb_user SET credit = 4.5 WHERE username = 'alice'")
    seen = await browser.run(see_it_end, tmp_path)
    assert seen == ["pending", "calling_a", "failed"]
    await finished(a)  # rang, then mizu's CANCEL at the ring timeout
    await wait_until(lambda: sql("SELECT status FROM tb_callbacks WHERE id = %s", (cbid,))
                     == [("failed",)], what="the stored end")
    assert sql("SELECT status, reason, source FROM tb_callbacks WHERE id = %s", (cbid,)) == [
        ("failed", "A did not answer", "http")]
