"""The fraud guards as HTTP clients see them: 403 for a blocked destination, 429 with
Retry-After for an hourly limit, in both APIs; nothing stored for a refusal."""

import pytest_twisted
import treq

ALICE = {"authid": "alice", "authpwd": "wonder"}
LIMITS = "[fraud]\ncallbacks_per_hour = 2\nanumber_per_hour = 0\n"


async def create(api, anum, bnum="4420111"):
    response = await treq.post(api.base + "/api/v1/callbacks", json={"anum": anum,
                                                                     "bnum": bnum},
                               auth=("alice", "wonder"))
    return response, await response.json()


@pytest_twisted.ensureDeferred
async def test_a_blocked_destination_is_403_and_an_hourly_limit_429(start_api, sql):
    api = await start_api(rest=LIMITS)
    response, body = await create(api, "4917011", bnum="+88216000000")
    assert response.code == 403
    assert "882 is a blocked" in body["error"]
    answer = await treq.get(api.url, params={"apientry": "callback", "anum": "0097955501",
                                             "bnum": "4420111", **ALICE})
    assert answer.code == 403
    assert (await answer.text()).startswith("ERROR: A-number 0097955501 is not allowed")
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0

    for anum in ("4917001", "4917002"):
        response, body = await create(api, anum)
        assert response.code == 202, body
    response, body = await create(api, "4917003")
    assert response.code == 429
    assert body["error"] == "too many callback requests: 2 in the last hour (at most 2)"
    assert response.headers.getRawHeaders("retry-after") == ["600"]
    answer = await treq.get(api.url, params={"apientry": "callback", "anum": "4917004",
                                             "bnum": "4420111", **ALICE})
    assert answer.code == 429
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 2
