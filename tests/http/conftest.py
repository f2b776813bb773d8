"""The running mizu the HTTP tests talk to."""

import pytest_twisted

from tests.running import running_mizu


@pytest_twisted.async_yield_fixture
async def api(tmp_path, database, sql):
    """A started mizu (no SIP workers: requests are stored) with alice and one rate."""
    path = tmp_path / "mizu.ini"
    path.write_text("[sip]\nworkers = 0\n[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console.users]\nadmin = pw\n")
    root = await running_mizu(path, database, tmp_path / "var")
    sql("INSERT INTO tb_user (username, password, credit) VALUES ('alice', 'wonder', 5)")
    sql("INSERT INTO tb_user (username, password) VALUES ('nopass', '')")
    sql("INSERT INTO tb_rates (prefix, price) VALUES ('44', 0.125)")
    await root.reload()
    root.url = f"http://127.0.0.1:{root.getServiceNamed('http').port}/mvapireq/"
    yield root
    await root.stopService()
