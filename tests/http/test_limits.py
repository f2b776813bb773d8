"""The HTTP abuse limits: unit tests of the buckets with a fake clock, then end to end
over real HTTP (treq) and raw TCP against a running mizu and PostgreSQL."""

import base64
import json

import pytest_twisted
import treq
from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from mizu.bans import Bans
from mizu.buckets import TokenBuckets
from mizu.config import HttpConfig
from mizu.http.errors import TooMany
from mizu.http.limits import HttpLimits
from tests.e2e.peers import RawClient

ALICE = {"authid": "alice", "authpwd": "wonder"}


def basic(user="alice", password="wonder"):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


# -- units --------------------------------------------------------------------------------
def test_bucket_allows_a_burst_then_the_rate():
    clock = task.Clock()
    buckets = TokenBuckets(clock, rate=2, burst=3)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == 0.5  # the next token in half a second
    assert buckets.take("b") == 0  # other keys have their own bucket
    clock.advance(0.5)
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0


def test_bucket_off_and_bounded():
    clock = task.Clock()
    assert TokenBuckets(clock, rate=0, burst=1).take("a") == 0
    buckets = TokenBuckets(clock, rate=1, burst=1, max_tracked=2)
    for key in "abc":
        buckets.take(key)
    assert len(buckets._buckets) == 2  # "a" was forgotten first


class FakeRequest:
    def __init__(self, host, forwarded=None):
        self._host, self._forwarded = host, forwarded

    def getClientAddress(self):
        return type("Address", (), {"host": self._host})()

    def getHeader(self, name):
        return self._forwarded if name == b"x-forwarded-for" else None


def test_forwarded_for_is_believed_only_from_a_trusted_proxy():
    limits = HttpLimits(HttpConfig(trusted_proxies=("10.0.0.1",)), Bans(task.Clock()),
                        task.Clock())
    spoofed = b"1.2.3.4, 5.6.7.8"
    assert limits.client(FakeRequest("192.0.2.9", spoofed)) == "192.0.2.9"
    assert limits.client(FakeRequest("10.0.0.1", spoofed)) == "5.6.7.8"
    assert limits.client(FakeRequest("10.0.0.1")) == "10.0.0.1"


def test_too_many_rounds_retry_after_up():
    assert TooMany("x", 0.2).retry_after == 1
    assert TooMany("x", 2.5).retry_after == 3


# -- end to end ---------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_address_rate_answers_429_with_retry_after(start_api):
    """Over the per-address rate every API answers 429 with Retry-After, in its format."""
    api = await start_api(http="address_rate = 0.2\naddress_burst = 3\n")
    for _ in range(3):
        assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200
    response = await treq.get(api.url, params={"apientry": "apitest", **ALICE})
    assert response.code == 429
    assert int(response.headers.getRawHeaders("retry-after")[0]) in (4, 5)
    assert (await response.text()) == "ERROR: too many requests from your address\n"
    response = await treq.get(api.base + "/api/v1/balance", headers=basic())
    assert response.code == 429
    assert json.loads(await response.text()) == {
        "error": "too many requests from your address"}
    assert (await treq.get(api.base + "/metrics")).code == 429  # /metrics too
    assert 'mizu_http_refused_total{status="429"} 3.0' in api.metrics.render().decode()


@pytest_twisted.ensureDeferred
async def test_user_rate_refuses_callbacks_and_stores_nothing(start_api, sql):
    """Over the per-user rate a callback is refused (429) on both APIs and not stored;
    another user is not held back, and reading is not counted."""
    api = await start_api(http="user_rate = 0.1\nuser_burst = 2\n")
    sql("INSERT INTO tb_user (username, password, credit) VALUES ('bob', 'builder', 5)")
    params = {"apientry": "callback", "anum": "4917011", **ALICE}
    assert (await treq.get(api.url, params=params)).code == 200
    body = json.dumps({"anum": "4917012"}).encode()
    response = await treq.post(api.base + "/api/v1/callbacks", body, headers=basic())
    assert response.code == 202
    response = await treq.get(api.url, params=params)
    assert response.code == 429 and int(response.headers.getRawHeaders("retry-after")[0]) == 10
    assert (await response.text()) == "ERROR: too many callback requests for this user\n"
    response = await treq.post(api.base + "/api/v1/callbacks", body, headers=basic())
    assert response.code == 429
    assert (await treq.get(api.url, params={"apientry": "balance", **ALICE})).code == 200
    response = await treq.post(api.base + "/api/v1/callbacks", body,
                               headers=basic("bob", "builder"))
    assert response.code == 202
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 3


@pytest_twisted.ensureDeferred
async def test_failed_logins_ban_the_address_not_the_user(start_api):
    """ban_failures wrong passwords get the address a 429 for ban_time, even with the
    right password; a spoofed X-Forwarded-For from an untrusted peer changes nothing."""
    api = await start_api(rest="[security]\nban_failures = 3\nban_time = 120\n")
    for password in ("a", "b", "c"):
        response = await treq.get(api.url, params={"apientry": "apitest", "authid": "alice",
                                                   "authpwd": password})
        assert response.code == 401
    response = await treq.get(api.url, params={"apientry": "apitest", **ALICE},
                              headers={"X-Forwarded-For": "198.51.100.7"})
    assert response.code == 429
    assert 100 < int(response.headers.getRawHeaders("retry-after")[0]) <= 120
    assert (await response.text()) == "ERROR: too many failed logins from your address\n"
    response = await treq.get(api.base + "/api/v1/balance", headers=basic())
    assert response.code == 429
    assert [ban.address for ban in api.bans.active()] == ["127.0.0.1"]
    assert api.bans.active()[0].kind == "http"


@pytest_twisted.ensureDeferred
async def test_trusted_proxy_limits_each_forwarded_client(start_api):
    """Behind a trusted proxy the limits count the address the proxy forwards."""
    api = await start_api(http="trusted_proxies = 127.0.0.1\n",
                          rest="[security]\nban_failures = 2\n")
    for password in ("a", "b"):
        await treq.get(api.url, params={"apientry": "apitest", "authid": "alice",
                                        "authpwd": password},
                       headers={"X-Forwarded-For": "203.0.113.5"})
    banned = await treq.get(api.url, params={"apientry": "apitest", **ALICE},
                            headers={"X-Forwarded-For": "203.0.113.5"})
    other = await treq.get(api.url, params={"apientry": "apitest", **ALICE},
                           headers={"X-Forwarded-For": "203.0.113.6"})
    assert (banned.code, other.code) == (429, 200)


@pytest_twisted.ensureDeferred
async def test_authkey_is_required_when_set(start_api):
    """With [http] authkey every /mvapireq/ request needs it; a wrong one is a 401."""
    api = await start_api(http="authkey = s3cret-key\n")
    response = await treq.get(api.url, params={"apientry": "apitest", **ALICE})
    assert response.code == 401 and (await response.text()) == "ERROR: wrong authkey\n"
    response = await treq.get(api.url, params={"apientry": "apitest", "authkey": "s3cret",
                                               **ALICE})
    assert response.code == 401
    response = await treq.get(api.url, params={"apientry": "apitest",
                                               "authkey": "s3cret-key", **ALICE})
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_reload_applies_new_limits(start_api):
    """A reload changes the limits in force without a restart."""
    api = await start_api(http="address_rate = 0.01\naddress_burst = 1\n")
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 429
    text = api.config_path.read_text().replace("address_rate = 0.01", "address_rate = 0")
    api.config_path.write_text(text)
    await api.reload()
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200


# -- raw connections ----------------------------------------------------------------------
async def raw(api, *chunks, pause=0.0):
    """Send ``chunks`` (``pause`` seconds apart) and return all the server sent before it
    closed the connection."""
    peer = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", api.port), peer)
    guard = reactor.callLater(10, peer.transport.abortConnection)  # a server that hangs on
    peer.closed.addBoth(lambda result: guard.active() and guard.cancel() or result)
    for chunk in chunks:
        if peer.closed.called:
            break
        peer.transport.write(chunk)
        if pause:
            await task.deferLater(reactor, pause, lambda: None)
    return await peer.closed


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest_twisted.ensureDeferred
async def test_oversized_headers_and_bodies(start_api, sql):
    """Too many or too large headers: 431; a body over max_body by its length or in
    chunks: 413 (JSON under /api/); nothing is stored and the service goes on."""
    api = await start_api(http="max_headers = 10\nmax_header_bytes = 2048\nmax_body = 1024\n")
    many = b"".join(b"X-%d: y\r\n" % i for i in range(11))
    answer = await raw(api, b"GET /mvapireq/ HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status_of(answer) == 431 and answer.endswith(b"ERROR: too many headers\n")
    answer = await raw(api, b"GET /api/v1/balance HTTP/1.1\r\nX-Big: " + b"a" * 3000 +
                       b"\r\n\r\n")
    assert status_of(answer) == 431
    assert answer.endswith(b'{"error": "the request line and headers are too large"}')
    answer = await raw(api, b"POST /api/v1/callbacks HTTP/1.1\r\nContent-Length: 5000\r\n"
                       b"\r\n" + b"{" * 5000)
    assert status_of(answer) == 413
    assert answer.endswith(b'{"error": "the body is larger than 1024 bytes"}')
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    answer = await raw(api, b"POST /mvapireq/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                       b"Content-Type: application/x-www-form-urlencoded\r\n\r\n", chunk,
                       chunk, b"0\r\n\r\n")
    assert status_of(answer) == 413
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    response = await treq.get(api.url, params={"apientry": "apitest", **ALICE})
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_slow_and_idle_clients_are_cut(start_api):
    """A request trickled in slower than request_timeout gets 408; a connection that
    sends nothing is closed; a client may keep max_connections open, no more."""
    api = await start_api(http="request_timeout = 1\nmax_connections = 2\n")
    started = reactor.seconds()
    answer = await raw(api, b"GET /mvapireq/?apientry=apitest HTTP/1.1\r\n",
                       b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", pause=0.4)
    assert status_of(answer) == 408 and reactor.seconds() - started < 2
    assert answer.endswith(b"ERROR: the request did not arrive in time\n")
    assert await raw(api) == b""  # idle: closed without a word
    held = [RawClient(), RawClient()]
    for peer in held:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", api.port), peer)
    assert await raw(api, b"GET / HTTP/1.1\r\n\r\n") == b""  # the third is refused
    for peer in held:
        peer.transport.loseConnection()
        await peer.closed
    response = await treq.get(api.url, params={"apientry": "apitest", **ALICE})
    assert response.code == 200
