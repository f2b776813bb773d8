"""The running mizu the HTTP tests talk to."""

import pytest
import pytest_twisted

from tests.running import running_mizu

BASE = ("[sip]\nworkers = 0\n[http]\nlisten = {listen}\n{http}"
        "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n{rest}")


@pytest.fixture
def start_api(tmp_path, database, sql):
    """``await start_api(http="key = value\\n", rest="[section]\\n...", listen=...)``:
    a started mizu (no SIP workers: requests are stored) with alice, nopass and one rate;
    stopped after the test."""
    started = []

    async def start(http: str = "", rest: str = "",
                    listen: str = "tcp:0:interface=127.0.0.1"):
        path = tmp_path / "mizu.ini"
        path.write_text(BASE.format(listen=listen, http=http, rest=rest))
        root = await running_mizu(path, database, tmp_path / "var")
        started.append(root)
        sql("INSERT INTO tb_user (username, password, credit) VALUES ('alice', 'wonder', 5)")
        sql("INSERT INTO tb_user (username, password) VALUES ('nopass', '')")
        sql("INSERT INTO tb_rates (prefix, price) VALUES ('44', 0.125)")
        await root.reload()
        root.port = root.getServiceNamed("http").port
        root.base = f"http://127.0.0.1:{root.port}"
        root.url = root.base + "/mvapireq/"
        return root

    yield start
    for root in started:
        pytest_twisted.blockon(root.stopService())


@pytest_twisted.async_yield_fixture
async def api(start_api):
    """A started mizu with the default limits."""
    yield await start_api()
