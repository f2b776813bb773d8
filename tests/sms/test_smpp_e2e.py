"""SMS end to end: a running mizu (real PostgreSQL) bound as an ESME to a real SMSC,
Perl Net::SMPP (tests/sms/smsc.pl). Texts become stored callbacks, the SMSC gets its
answers and the replies, and mizu survives a dead, silent or rude SMSC."""

import pytest_twisted

from tests.e2e.peers import wait_until
from tests.running import running_mizu
from tests.sms.smsc import Smsc, gsm_hex, udh_parts

A_NUMBER = "4917011"
SMPP = ("[smpp]\nenabled = yes\nhost = 127.0.0.1\nport = {port}\nsystem_id = mizu\n"
        "password = secret\nbind = {bind}\nsource_addr = 4000\nenquire_interval = 5\n"
        "response_timeout = 2\n")


def smpp_lines(root):
    return [line for line in root.status_lines() if line.startswith("smpp")]


async def start(tmp_path, database, sql, smsc, bind="transceiver", extra=""):
    path = tmp_path / "mizu.ini"
    path.write_text("[sip]\nworkers = 0\n[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console.users]\nadmin = pw\n"
                    + SMPP.format(port=smsc.port, bind=bind) + extra)
    root = await running_mizu(path, database, tmp_path / "var")
    sql("INSERT INTO tb_user (username, password, pincode, credit)"
        " VALUES ('alice', 'wonder', '1234', 5)")
    sql("INSERT INTO tb_anumbers (anumber, userid) SELECT %s, id FROM tb_user"
        " WHERE username = 'alice'", (A_NUMBER,))
    return root


@pytest_twisted.async_yield_fixture
async def mizu(tmp_path, database, sql, smsc):
    await smsc.command("accept_binds mizu secret")
    root = await start(tmp_path, database, sql, smsc)
    await smsc.wait_for("bind", status=0)
    await wait_until(lambda: smpp_lines(root)[0].startswith("smpp bound"), what="bound")
    yield root
    await root.stopService()


def rows(sql):
    return sql("SELECT anum, bnum, source, status FROM tb_callbacks ORDER BY id")


async def text(smsc, body, source=A_NUMBER, **kw):
    """Deliver ``body`` (GSM); the deliver_sm_resp the SMSC got."""
    seq = await smsc.deliver(source, "4000", gsm_hex(body), **kw)
    return await smsc.wait_for("deliver_sm_resp", seq=seq)


@pytest_twisted.ensureDeferred
async def test_bind_and_a_callback_by_sms(mizu, smsc, sql):
    """bind_transceiver with the account; "CB 4420111" is stored before it is answered
    ESME_ROK, and the sender is told the callback's id."""
    bind = smsc.events[[e["event"] for e in smsc.events].index("bind")]
    assert (bind["command"], bind["system_id"], bind["password"]) == (
        "bind_transceiver", "mizu", "secret")
    assert smpp_lines(mizu)[0].startswith("smpp bound transceiver 127.0.0.1:")
    resp = await text(smsc, "cb 4420111")
    assert resp["status"] == 0
    assert rows(sql) == [(A_NUMBER, "4420111", "sms", "pending")]
    (cbid,) = sql("SELECT id FROM tb_callbacks")[0]
    reply = await smsc.wait_for("submit_sm")
    assert reply["destination_addr"] == A_NUMBER and reply["source_addr"] == "4000"
    assert bytes.fromhex(reply["short_message_hex"]).decode() == (
        f"Callback {cbid} accepted: we will call {A_NUMBER}, then 4420111.")


@pytest_twisted.ensureDeferred
async def test_balance_pin_p2p_and_refusals(mizu, smsc, sql):
    """BALANCE replies; a PIN phone-to-phone is stored; an unknown sender, a wrong PIN and
    nonsense store nothing and are told why; all are acknowledged ESME_ROK."""
    assert (await text(smsc, "Balance"))["status"] == 0
    reply = await smsc.wait_for("submit_sm")
    assert bytes.fromhex(reply["short_message_hex"]) == b"Your balance is 5.00."
    assert (await text(smsc, "1234 4930111 4420111", source="4477700"))["status"] == 0
    await smsc.wait_for("submit_sm", destination_addr="4477700")
    for body, source in (("cb", "4400999"), ("9999 4930111", "4400998"),
                         ("please call me", A_NUMBER)):
        assert (await text(smsc, body, source=source))["status"] == 0
        reply = await smsc.wait_for("submit_sm", destination_addr=source)
        assert bytes.fromhex(reply["short_message_hex"]).startswith(b"Not accepted: ")
    assert rows(sql) == [("4930111", "4420111", "sms", "pending")]


@pytest_twisted.ensureDeferred
async def test_concatenated_ucs2_receipts_and_copies(mizu, smsc, sql):
    """Two UCS-2 parts make one request; a delivery receipt is no request; the same text
    delivered again stores nothing more."""
    for esm, body in udh_parts("CALLBACK +4420111", ref=9, size=9, coding="ucs2"):
        seq = await smsc.deliver(A_NUMBER, "4000", body, esm_class=esm, data_coding=8)
        assert (await smsc.wait_for("deliver_sm_resp", seq=seq))["status"] == 0
    assert rows(sql) == [(A_NUMBER, "+4420111", "sms", "pending")]
    receipt = "id:m1 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD"
    seq = await smsc.deliver(A_NUMBER, "4000", receipt.encode().hex(), esm_class=0x04)
    assert (await smsc.wait_for("deliver_sm_resp", seq=seq))["status"] == 0
    await text(smsc, "CB 4420222")
    await text(smsc, "CB 4420222")
    assert len(rows(sql)) == 1  # one live callback per A-number, and the copy is known
    replies = [e for e in smsc.events if e["event"] == "submit_sm"]
    assert len(replies) == 3  # the receipt got none


@pytest_twisted.ensureDeferred
async def test_malformed_pdus_do_not_crash_mizu(mizu, smsc, sql):
    """An undecodable deliver_sm gets a generic_nack and the link goes on; an oversized
    command_length gets one and mizu binds again."""
    await smsc.command("raw 000000140000000500000000000000630000ffff")  # a truncated body
    nack = await smsc.wait_for("generic_nack")
    assert nack["seq"] == 0x63
    assert (await text(smsc, "CB"))["status"] == 0
    await smsc.command("raw 7fffffff0000000500000000000000640000")
    await smsc.wait_for("generic_nack", seq=0x64)
    await smsc.wait_for("closed")
    await smsc.wait_for("bind", status=0, timeout=30)
    await wait_until(lambda: smpp_lines(mizu)[0].startswith("smpp bound"), what="rebound")
    assert len(rows(sql)) == 1


@pytest_twisted.ensureDeferred
async def test_rebinds_after_the_smsc_dies_or_goes_silent(mizu, smsc, sql):
    """Killed and started again on the same port, the SMSC sees mizu bind again within
    30 s; a silent SMSC is dropped after an unanswered enquire_link, and rebound."""
    port = smsc.port
    smsc.kill()
    await wait_until(lambda: not smpp_lines(mizu)[0].startswith("smpp bound"), what="down")
    assert "last error" in smpp_lines(mizu)[0]
    again = Smsc(port=port)
    await again.start()
    try:
        await again.wait_for("bind", status=0, timeout=30)
        assert (await text(again, "CB"))["status"] == 0
        await again.command("silent on")
        await again.wait_for("closed", timeout=20)  # enquire_link every 5 s, 2 s to answer
        assert "enquire_link" in smpp_lines(mizu)[0]
        await again.command("silent off")
        await again.wait_for("bind", status=0, timeout=30)
    finally:
        await again.stop()
    assert len(rows(sql)) == 1


@pytest_twisted.ensureDeferred
async def test_refused_bind_backs_off_then_reload_fixes_it(tmp_path, database, sql, smsc):
    """A wrong password is refused (status says so, retries back off); a reload with the
    right one binds at once; stopping mizu unbinds."""
    await smsc.command("accept_binds mizu right")
    root = await start(tmp_path, database, sql, smsc)
    try:
        await smsc.wait_for("bind", status=0x0E)
        await wait_until(lambda: "ESME_RINVPASWD" in smpp_lines(root)[0], what="refused")
        await smsc.wait_for("bind", status=0x0E, timeout=5)
        path = root.config_path
        path.write_text(path.read_text().replace("password = secret", "password = right"))
        await root.reload()
        await smsc.wait_for("bind", status=0, timeout=10)
        await wait_until(lambda: smpp_lines(root)[0].startswith("smpp bound"), what="bound")
        binds = [e for e in smsc.events if e["event"] == "bind"]
        assert 2 <= len(binds) <= 5  # backing off: 1 s, 2 s, 4 s ...
    finally:
        await root.stopService()
    await smsc.wait_for("unbind")


@pytest_twisted.ensureDeferred
async def test_receiver_bind_stores_without_replies(tmp_path, database, sql, smsc):
    root = await start(tmp_path, database, sql, smsc, bind="receiver")
    try:
        bind = await smsc.wait_for("bind", status=0)
        assert bind["command"] == "bind_receiver"
        await wait_until(lambda: smpp_lines(root)[0].startswith("smpp bound"), what="bound")
        assert (await text(smsc, "CB 4420111"))["status"] == 0
        assert rows(sql) == [(A_NUMBER, "4420111", "sms", "pending")]
        assert not [e for e in smsc.events if e["event"] == "submit_sm"]
    finally:
        await root.stopService()
