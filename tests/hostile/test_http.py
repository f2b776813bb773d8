"""The HTTP front end against enumeration and oversized or odd input not covered by
test_http_raw: an unknown user and a known user with a wrong password get byte-identical
answers in the same time; a 1 MB header line, a body over max_body, JSON nested deeply
within it and bytes that are not UTF-8 get precise errors, store nothing, and the reactor
goes on answering."""

from __future__ import annotations

import base64
import re
import statistics
import time

import pytest_twisted
import treq

from tests.http.test_limits import raw, status_of

ALICE = {"authid": "alice", "authpwd": "wonder"}
OPEN = "address_rate = 0\nmax_body = 4096\n"  # no 429 in the timing runs
NO_BANS = "[security]\nban_failures = 0\n"  # 400 failed logins must not ban 127.0.0.1
ROUNDS = 200


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"", answer)


def mvapi(user: str, password: str) -> bytes:
    return (b"GET /mvapireq/?apientry=balance&authid=%s&authpwd=%s HTTP/1.0\r\n\r\n"
            % (user.encode(), password.encode()))


def basic(user: str, password: str) -> bytes:
    token = base64.b64encode(f"{user}:{password}".encode())
    return b"GET /api/v1/balance HTTP/1.0\r\nAuthorization: Basic %s\r\n\r\n" % token


async def timed(api, request: bytes) -> tuple[float, bytes]:
    started = time.perf_counter()
    answer = await raw(api, request)
    return time.perf_counter() - started, without_date(answer)


async def compare(api, make) -> tuple[list[float], list[float], set[bytes]]:
    unknown, wrong, answers = [], [], set()
    for i in range(ROUNDS):  # alternating, so drift in machine load hits both alike
        for kind, sample in ((make(f"mallory{i}", "wonder"), unknown),
                             (make("alice", f"wrong{i}"), wrong)):
            seconds, answer = await timed(api, kind)
            sample.append(seconds)
            answers.add(answer)
    return unknown, wrong, answers


def assert_same_time(unknown: list[float], wrong: list[float]):
    """Medians within 2 ms or 25 % of each other (a DB lookup skipped on one path, or a
    hash on one path only, shows as a gap far above that on loopback)."""
    a, b = statistics.median(unknown), statistics.median(wrong)
    assert abs(a - b) < max(0.002, 0.25 * min(a, b)), (a, b)


@pytest_twisted.ensureDeferred
async def test_unknown_user_and_wrong_password_are_indistinguishable(start_api, sql):
    """/mvapireq/ balance and /api/v1/balance with Basic: 200 alternating requests each
    for an unknown user and for alice with a wrong password. Every answer is the same
    bytes (status, headers but Date, body) and the median times match."""
    api = await start_api(http=OPEN, rest=NO_BANS)
    for make, status in ((mvapi, 401), (basic, 401)):
        unknown, wrong, answers = await compare(api, make)
        assert len(answers) == 1, answers
        (answer,) = answers
        assert status_of(answer) == status
        assert b"alice" not in answer and b"mallory" not in answer
        assert_same_time(unknown, wrong)
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    good = await treq.get(api.url, params={"apientry": "balance", **ALICE})
    assert good.code == 200


@pytest_twisted.ensureDeferred
async def test_huge_header_line_body_and_nested_json(start_api, sql):
    """A 1 MB header line: 431 (or a close), never buffered whole; a body over max_body:
    413; JSON nested 2,000 deep within max_body: 400 with a JSON error; the reactor lives."""
    api = await start_api(http=OPEN, rest=NO_BANS)
    started = time.perf_counter()
    answer = await raw(api, b"GET /api/v1/balance HTTP/1.1\r\nX-Big: " + b"a" * 1_000_000
                       + b"\r\n\r\n")
    assert answer == b"" or status_of(answer) == 431, answer[:200]
    assert time.perf_counter() - started < 5
    auth = b"Authorization: Basic " + base64.b64encode(b"alice:wonder") + b"\r\n"
    answer = await raw(api, b"POST /api/v1/callbacks HTTP/1.1\r\n" + auth
                       + b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                       + b'{"anum": "' + b"4" * 999_980 + b'"}')
    assert status_of(answer) == 413
    assert answer.endswith(b'{"error": "the body is larger than 4096 bytes"}')
    for body in (b"[" * 2000 + b"]" * 2000, b'{"a":' * 680 + b"1" + b"}" * 680):
        assert len(body) <= 4096
        response = await treq.post(api.base + "/api/v1/callbacks", body,
                                   auth=("alice", "wonder"),
                                   headers={"Content-Type": "application/json"})
        assert response.code == 400, body[:20]
        assert "error" in await response.json()
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_in_json_and_query_strings(start_api, sql):
    """Bytes that are not UTF-8 inside a JSON string, in /mvapireq/ parameters (user,
    number) and in the /api/v1 query: a 400 naming the problem, nothing stored."""
    api = await start_api(http=OPEN, rest=NO_BANS)
    response = await treq.post(api.base + "/api/v1/callbacks", b'{"anum": "49\xff\xfe17"}',
                               auth=("alice", "wonder"),
                               headers={"Content-Type": "application/json"})
    assert response.code == 400 and "error" in await response.json()
    for query in (b"apientry=callback&authid=alice&authpwd=wonder&anum=49%ff17",
                  b"apientry=balance&authid=al%c3%28ice&authpwd=wonder",
                  b"apientry=%fe%ff&authid=alice&authpwd=wonder"):
        answer = await raw(api, b"GET /mvapireq/?" + query + b" HTTP/1.0\r\n\r\n")
        assert status_of(answer) == 400, (query, answer)
        assert answer.endswith(b"ERROR: the request is not UTF-8\n")
    answer = await raw(api, b"GET /api/v1/rates?prefix=4%ff HTTP/1.0\r\n"
                       b"Authorization: Basic " + base64.b64encode(b"alice:wonder")
                       + b"\r\n\r\n")
    assert 400 <= status_of(answer) < 500, answer
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200
