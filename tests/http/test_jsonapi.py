"""The JSON API and its OpenAPI document over real HTTP (treq), a running mizu, PostgreSQL."""

import hashlib
import json

import pytest_twisted
import treq

ALICE = ("alice", "wonder")


def url(api, path):
    return api.url.replace("/mvapireq/", "/api/v1" + path)


async def send(api, method, path, body=None, auth=ALICE, raw=None):
    """(status, decoded JSON) of one request."""
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
    response = await treq.request(method, url(api, path), data=raw, auth=auth,
                                  headers={b"content-type": [b"application/json"]})
    return response.code, json.loads(await response.text())


@pytest_twisted.ensureDeferred
async def test_create_then_follow_a_callback(api, sql):
    """POST stores the request (202 with the id); GET shows it to its owner only."""
    status, body = await send(api, "POST", "/callbacks", {"anum": "+4917011",
                                                          "bnum": "4420111"})
    assert status == 202 and body["status"] == "pending"
    assert sql("SELECT anum, bnum, source, userid IS NOT NULL FROM tb_callbacks "
               "WHERE id = %s", (body["id"],)) == [("+4917011", "4420111", "http", True)]
    status, shown = await send(api, "GET", f"/callbacks/{body['id']}")
    assert status == 200 and (shown["id"], shown["status"], shown["bnum"]) == (
        body["id"], "pending", "4420111")
    sql("INSERT INTO tb_user (username, password) VALUES ('bob', 'builder')")
    assert (await send(api, "GET", f"/callbacks/{body['id']}", auth=("bob", "builder")))[0] \
        == 404
    assert (await send(api, "GET", "/callbacks/nope"))[0] == 404


@pytest_twisted.ensureDeferred
async def test_balance_and_rates(api):
    """The balance as a plain decimal; a rate by longest prefix, 404 without one."""
    assert await send(api, "GET", "/balance") == (200, {"balance": "5.00"})
    status, rate = await send(api, "GET", "/rates/004420111")
    assert status == 200 and (rate["prefix"], rate["price"]) == ("44", "0.125")
    assert await send(api, "GET", "/rates/3312") == (404, {"error": "no rate for 3312"})
    assert (await send(api, "GET", "/rates/12ab"))[0] == 400


@pytest_twisted.ensureDeferred
async def test_refusals_store_nothing(api, sql):
    """Bad credentials 401 (with a Basic challenge), bad bodies 400, too big 413, unknown
    routes 404."""
    response = await treq.post(url(api, "/callbacks"), data=b'{"anum": "4917011"}',
                               auth=("alice", "guess"))
    assert response.code == 401
    assert response.headers.getRawHeaders(b"www-authenticate") == [b'Basic realm="mizu"']
    assert (await send(api, "POST", "/callbacks", {"anum": "4917011"}, auth=None))[0] == 401
    for raw, error in [(b"not json", "the body is not JSON"),
                       (b"[1, 2]", "the body must be a JSON object"),
                       (b'{"anum": 4917011}', "anum must be a string"),
                       (b'{"bnum": "4420111"}', "A-number is missing"),
                       (b"\xff\xfe", "the body is not JSON")]:
        assert await send(api, "POST", "/callbacks", raw=raw) == (400, {"error": error}), raw
    assert await send(api, "POST", "/callbacks", raw=b'{"anum": "' + b"1" * 20000 + b'"}') \
        == (413, {"error": "the body is larger than 16384 bytes"})
    assert (await send(api, "DELETE", "/callbacks/1"))[0] == 404
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_idempotency_key_never_stores_twice(api, sql):
    """The same key and body answer the first callback; another body with it is 422."""

    async def post(body, key):
        response = await treq.post(url(api, "/callbacks"), data=json.dumps(body).encode(),
                                   auth=ALICE, headers={b"idempotency-key": [key]})
        return response.code, json.loads(await response.text())

    first = await post({"anum": "4917011"}, b"order-1")
    assert first[0] == 202
    assert await post({"anum": "4917011"}, b"order-1") == first
    assert await post({"anum": "4917022"}, b"order-1") == (
        422, {"error": "this Idempotency-Key was used with another request"})
    refused = await post({"anum": "12ab"}, b"order-2")
    assert refused[0] == 400
    second = await post({"anum": "4917022"}, b"order-2")  # a refused key can be used again
    assert second[0] == 202 and second[1]["id"] != first[1]["id"]
    assert (await post({"anum": "4917011"}, "x" * 201))[0] == 400
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 2
    # A claim whose request died with the database (never completed, never released):
    # 409 while it may still be stored; after a minute the key is free again.
    alice_id = sql("SELECT id FROM tb_user WHERE username = 'alice'")[0][0]
    digest = hashlib.sha256(json.dumps(["4917033", ""]).encode()).hexdigest()
    sql("INSERT INTO tb_idempotency (userid, key, request) VALUES (%s, 'order-3', %s)",
        (alice_id, digest))
    assert (await post({"anum": "4917033"}, b"order-3"))[0] == 409
    sql("UPDATE tb_idempotency SET created = now() - interval '61 seconds'"
        " WHERE key = 'order-3'")
    third = await post({"anum": "4917033"}, b"order-3")
    assert third[0] == 202
    assert await post({"anum": "4917033"}, b"order-3") == third
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 3
