"""The Mizu-compatible API over real HTTP (treq) against a running mizu and PostgreSQL."""

import json

import pytest_twisted
import treq


async def call(api, method="GET", **params):
    """(status, body text) of one request; params go in the query (GET) or form (POST)."""
    if method == "GET":
        response = await treq.get(api.url, params=params)
    else:
        response = await treq.post(api.url, data=params)
    return response.code, (await response.text()).strip()


ALICE = {"authid": "alice", "authpwd": "wonder"}


@pytest_twisted.ensureDeferred
async def test_entries_answer_ok_with_their_data(api, sql):
    """apitest, balance, rating, callback and p2p (GET and POST) answer OK and store."""
    assert await call(api, apientry="apitest", **ALICE) == (200, "OK")
    assert await call(api, apientry="balance", **ALICE) == (200, "OK: 5.00")
    assert await call(api, apientry="rating", anum="+4420111", **ALICE) == (200, "OK: 0.125")
    status, body = await call(api, apientry="callback", anum="4917011", **ALICE)
    assert status == 200 and body.startswith("OK: ")
    cbid = int(body[4:])
    status, body = await call(api, "POST", apientry="p2p", anum="4917011", bnum="4420111",
                              **ALICE)
    assert status == 200
    rows = sql("SELECT id, anum, bnum, source, status FROM tb_callbacks ORDER BY id")
    assert rows == [(cbid, "4917011", "", "http", "pending"),
                    (int(body[4:]), "4917011", "4420111", "http", "pending")]


@pytest_twisted.ensureDeferred
async def test_json_format(api):
    """format=json gives a status and the data, or the reason."""
    response = await treq.get(api.url, params={"apientry": "balance", "format": "json",
                                               **ALICE})
    assert response.code == 200
    assert json.loads(await response.text()) == {"status": "OK", "data": "5.00"}
    response = await treq.get(api.url, params={"apientry": "balance", "format": "json",
                                               "authid": "alice", "authpwd": "x"})
    assert response.code == 401
    assert json.loads(await response.text()) == {"status": "ERROR",
                                                  "reason": "wrong username or password"}


@pytest_twisted.ensureDeferred
async def test_rejected_requests_store_nothing(api, sql):
    """Wrong or empty passwords, unknown users, bad numbers, unknown entries: an error each."""
    cases = [
        ({"apientry": "callback", "anum": "4917011", "authid": "alice", "authpwd": "guess"},
         401, "ERROR: wrong username or password"),
        ({"apientry": "callback", "anum": "4917011", "authid": "nopass", "authpwd": ""},
         401, "ERROR: wrong username or password"),
        ({"apientry": "callback", "anum": "4917011", "authid": "ghost", "authpwd": "x"},
         401, "ERROR: wrong username or password"),
        ({"apientry": "callback", "anum": "12ab", **ALICE}, 400,
         "ERROR: A-number '12ab' is not a phone number (digits, optionally after + or 00,"
         " at most 20)"),
        ({"apientry": "callback", **ALICE}, 400, "ERROR: A-number is missing"),
        ({"apientry": "p2p", "anum": "4917011", **ALICE}, 400, "ERROR: B-number is missing"),
        ({"apientry": "callback", "anum": "1" * 300, **ALICE}, 400,
         "ERROR: anum is longer than 256 characters"),
        ({"apientry": "rating", "anum": "3312", **ALICE}, 404, "ERROR: no rate for 3312"),
        ({"apientry": "drop_tables", **ALICE}, 400,
         "ERROR: unknown apientry 'drop_tables' (one of apitest, callback, p2p, balance,"
         " rating)"),
    ]
    for params, status, body in cases:
        assert await call(api, **params) == (status, body), params
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_bytes_that_are_not_utf8_get_400(api, sql):
    """A query with invalid UTF-8 is refused with a clear reason, and the server lives on."""
    response = await treq.get(api.url.encode() + b"?apientry=apitest&authid=%ff%fe&authpwd=x")
    assert response.code == 400
    assert (await response.text()).strip() == "ERROR: the request is not UTF-8"
    assert await call(api, apientry="apitest", **ALICE) == (200, "OK")


@pytest_twisted.ensureDeferred
async def test_metrics_count_requests_and_http_calls(api):
    """/metrics is Prometheus text: stored requests by source, HTTP calls by status."""
    await call(api, apientry="callback", anum="4917011", **ALICE)
    await call(api, apientry="balance", authid="alice", authpwd="x")
    response = await treq.get(api.url.replace("/mvapireq/", "/metrics"))
    text = await response.text()
    assert response.code == 200
    assert 'mizu_callback_requests_total{source="http"} 1.0' in text
    assert 'mizu_http_request_seconds_count{api="mvapireq",status="200"} 1.0' in text
    assert 'mizu_http_request_seconds_count{api="mvapireq",status="401"} 1.0' in text
    assert "mizu_live_calls 0.0" in text
