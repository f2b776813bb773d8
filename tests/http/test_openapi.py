"""The OpenAPI document: valid OpenAPI 3.1, the same routes and statuses as ``ROUTES``, and
true of the live server under schemathesis' generated and fuzzed requests."""

import json
import sys

import pytest_twisted
import treq
from openapi_spec_validator import validate
from twisted.internet import defer, protocol, reactor

from mizu.http.jsonapi import ROUTES
from mizu.http.openapi import COMMON_ERRORS, document, statuses
from tests.running import running_mizu

CALLBACK_STATUSES = ("pending", "calling_a", "ivr", "calling_b", "bridged", "completed",
                     "failed")

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")
# Per operation and phase: enough to reach every documented status, and the whole run
# (four operations, coverage then fuzzing) stays well under a minute.
MAX_EXAMPLES = 60
TIMEOUT = 180


@pytest_twisted.async_yield_fixture
async def fuzzed(tmp_path, database, sql):
    """The ``api`` fixture's mizu with the request rates and login bans off (else the
    fuzzer is soon answered 429), a rate for most numbers and a few of alice's callbacks
    (ids 1 to 7, one per status) so that generated ids and numbers find something."""
    path = tmp_path / "mizu.ini"
    path.write_text("[sip]\nworkers = 0\n[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "address_rate = 0\nuser_rate = 0\n[security]\nban_failures = 0\n"
                    "[console]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console.users]\nadmin = pw\n")
    root = await running_mizu(path, database, tmp_path / "var")
    sql("INSERT INTO tb_user (username, password, credit) VALUES ('alice', 'wonder', 5)")
    sql("INSERT INTO tb_rates (prefix, price, connectfee) VALUES ('44', 0.125, 0.05)")
    for digit in "123456789":  # numbers after 0 (and 00) are left without a rate: 404
        sql("INSERT INTO tb_rates (prefix, price) VALUES (%s, 0.2)", (digit,))
    for status in CALLBACK_STATUSES:
        sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status, reason)"
            " SELECT id, '4917011', '', 'console', %s, 'because' FROM tb_user"
            " WHERE username = 'alice'", (status,))
    await root.reload()
    root.base = f"http://127.0.0.1:{root.getServiceNamed('http').port}/api/v1"
    yield root
    await root.stopService()


def test_document_is_valid_openapi_3_1():
    """openapi-spec-validator finds nothing wrong with the document."""
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_document_has_exactly_the_routes_and_their_statuses():
    """Each route of ROUTES with its success, its errors and the common statuses (429),
    nothing more; every error answers ``{"error": ...}``."""
    doc = document()
    listed = {(path, method.upper()): set(map(int, op["responses"]))
              for path, item in doc["paths"].items() for method, op in item.items()}
    assert listed == {(r.path, r.method): {r.status, *r.errors, *COMMON_ERRORS}
                      for r in ROUTES}
    for route in ROUTES:
        responses = doc["paths"][route.path][route.method.lower()]["responses"]
        assert [int(s) for s in responses] == statuses(route)
        for status, response in responses.items():
            schema = response["content"]["application/json"]["schema"]["$ref"]
            assert (schema == "#/components/schemas/Error") == (int(status) >= 400)
        assert responses["429"]["headers"]["Retry-After"]["required"]


@pytest_twisted.ensureDeferred
async def test_served_document_is_the_generated_one(fuzzed):
    """``/api/v1/openapi.json`` answers ``document()`` as JSON."""
    response = await treq.get(fuzzed.base + "/openapi.json")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert json.loads(await response.text()) == document()


class _Output(protocol.ProcessProtocol):
    """Collects a child's stdout and stderr; ``ended`` fires with its exit code."""

    def __init__(self):
        self.output = bytearray()
        self.ended = defer.Deferred(lambda _: self.transport.signalProcess("KILL"))

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.ended.called:
            self.ended.callback(reason.value.exitCode)


@pytest_twisted.ensureDeferred
async def test_schemathesis_finds_nothing(fuzzed, tmp_path):
    """schemathesis (positive and negative cases, as alice) gets no 5xx and only answers
    the document allows: documented statuses, content types, bodies and headers."""
    argv = [sys.executable, "-m", "schemathesis.cli", "run", fuzzed.base + "/openapi.json",
            "--url", fuzzed.base, "--auth", "alice:wonder", "--checks", CHECKS,
            "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES), "--workers", "2",
            "--generation-database", "none", "--request-timeout", "10", "--no-color"]
    child = _Output()
    # the server runs in this reactor: the fuzzer must run beside it, never block it
    reactor.spawnProcess(child, sys.executable, argv, env=None, path=str(tmp_path))
    code = await child.ended.addTimeout(TIMEOUT, reactor)
    output = child.output.decode("utf-8", "replace")
    print(output)
    assert code == 0, f"schemathesis failed (exit {code}):\n{output}"
