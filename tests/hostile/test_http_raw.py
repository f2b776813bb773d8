"""Hostile bytes at the HTTP front end: each gets a precise answer (or a close), nothing is
stored, and the service goes on answering."""

import json

import pytest_twisted
import treq

from tests.http.test_limits import raw, status_of

ALICE = {"authid": "alice", "authpwd": "wonder"}

GARBAGE = [
    b"\x00\xff\xfe garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /mvapireq/ HTTP/9.9\r\n\r\n",
    b"GET /mvapireq/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"GET /mvapireq/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /mvapireq/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /mvapireq/ HTTP/1.1\r\nBad Header\r\n\r\n",
]


@pytest_twisted.ensureDeferred
async def test_malformed_requests_get_400_or_a_close(api, sql):
    for request in GARBAGE:
        answer = await raw(api, request)
        assert answer == b"" or status_of(answer) == 400, (request, answer)
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200


@pytest_twisted.ensureDeferred
async def test_odd_but_wellformed_requests_get_precise_errors(api, sql):
    """Wrong methods, bytes that are not UTF-8, huge ids, odd JSON: 4xx with a reason."""
    answer = await raw(api, b"PUT /mvapireq/ HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 405 and b"\r\nAllow: GET, POST\r\n" in answer
    assert answer.endswith(b"ERROR: method 'PUT' not allowed: use GET or POST\n")
    answer = await raw(api, b"HEAD /mvapireq/?apientry=apitest HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 401 and answer.endswith(b"\r\n\r\n")  # no body
    answer = await raw(api, b"GET /mvapireq/?apientry=apitest&authid=%ff%fe HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 400 and answer.endswith(b"ERROR: the request is not UTF-8\n")
    response = await treq.post(api.url, files={"apientry": ("x", b"apitest")})
    assert response.code == 400
    assert (await response.text()) == (
        "ERROR: a POST form must be application/x-www-form-urlencoded\n")
    auth = ("alice", "wonder")
    response = await treq.get(api.base + "/api/v1/callbacks/" + "9" * 40, auth=auth)
    assert response.code == 404
    response = await treq.get(api.base + "/api/v1/callbacks/%ff", auth=auth)
    assert response.code == 404
    for body in (b"[]", b'{"anum": 4917011}', b'{"anum": "49\\u0000"}', b"\xff",
                 b'{"anum": "' + b"9" * 200 + b'"}', b'{"anum": "1e5"}'):
        response = await treq.post(api.base + "/api/v1/callbacks", body, auth=auth)
        assert response.code == 400, body
        assert "error" in json.loads(await response.text())
    response = await treq.get(api.base + "/api/v1/balance",
                              headers={"Authorization": "Basic !!!not-base64"})
    assert response.code == 401
    response = await treq.get(api.base + "/api/v1/balance",
                              headers={"Authorization": "Basic /w=="})  # b"\xff"
    assert response.code == 401
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    assert (await treq.get(api.url, params={"apientry": "apitest", **ALICE})).code == 200
