"""The INI configuration: defaults, validation reporting every error, overrides."""

import pytest

from mizu.config import Config, load_config
from mizu.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "mizu.ini"
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file(tmp_path, monkeypatch):
    """With no file, every key has the SPEC §2 default."""
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path is None
    assert config.database.dsn == "" and config.database.datadir == "var"
    assert (config.sip.host, config.sip.port, config.sip.workers) == ("0.0.0.0", 5060, 2)
    assert config.sip.max_calls == 1000
    assert config.http.listen == "tcp:8080"
    assert config.console.listen == "tcp:2323:interface=127.0.0.1"
    assert config.console.users == {}
    assert config.smpp.enabled is False and config.smpp.port == 2775
    assert config.smpp.bind == "transceiver"


def test_default_path_is_etc_mizu_ini(tmp_path, monkeypatch):
    """etc/mizu.ini in the working folder is read when no --config is given."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "mizu.ini").write_text("[sip]\nworkers = 3\n")
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path == "etc/mizu.ini" and config.sip.workers == 3


def test_values_and_inline_comments(tmp_path):
    """Values are parsed and typed; `;` comments after a value are ignored."""
    path = write(tmp_path, """
[database]
dsn = postgresql://mizu@db/mizu   ; external
[sip]
listen = 127.0.0.1:5070
workers = 4
default_gateway = sip:{number}@carrier.example:5060
[console]
listen = tcp:0:interface=127.0.0.1
[console.users]
Alice = secret
bob = $2b$12$abcdefghijklmnopqrstuu5E4bqPBl8pSHvIrRfeJ8w5RjJ9kjTMi
[smpp]
enabled = yes
host = smsc.example
system_id = mizu
bind = receiver
""")
    config = load_config(path)
    assert config.database.dsn == "postgresql://mizu@db/mizu"
    assert (config.sip.host, config.sip.port, config.sip.workers) == ("127.0.0.1", 5070, 4)
    assert config.sip.default_gateway == "sip:{number}@carrier.example:5060"
    assert config.console.users["Alice"] == "secret"  # user names keep their case
    assert config.smpp.enabled and config.smpp.bind == "receiver"


def test_every_error_is_reported_at_once(tmp_path):
    """One ConfigError lists all the problems of the file, not only the first."""
    path = write(tmp_path, """
[database]
datadir =
[sip]
listen = nowhere
workers = many
max_calls = 0
default_gateway = carrier.example
colour = blue
[http]
listen = bogus:8080
[console]
listen = tcp:notaport
[console.users]
admin =
[smpp]
enabled = perhaps
port = 70000
bind = transmitter
[nosuch]
x = 1
""")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    errors = "\n".join(e.value.errors)
    for expected in [
        "[database] datadir: must not be empty",
        "[sip] listen: expected host:port",
        "[sip] workers: expected a whole number",
        "[sip] max_calls: must be between 1 and",
        "[sip] default_gateway: expected a SIP URI",
        "[sip] colour: unknown key",
        "[http] listen: not a Twisted endpoint",
        "[console] listen: not a Twisted endpoint",
        "[console.users] admin: empty password",
        "[smpp] enabled: expected yes or no",
        "[smpp] port: must be between 1 and 65535",
        "[smpp] bind: must be one of transceiver, receiver",
        "[nosuch]: unknown section",
    ]:
        assert expected in errors
    assert len(e.value.errors) == 13


def test_smpp_enabled_needs_host_and_system_id(tmp_path):
    """Enabling SMPP without a host or system_id is an error naming both."""
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[smpp]\nenabled = yes\n"))
    assert e.value.errors == ["[smpp] host: required when enabled = yes",
                              "[smpp] system_id: required when enabled = yes"]


def test_unreadable_and_malformed_files(tmp_path):
    """A missing file and a file that is not INI are errors that name the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.ini"))
    with pytest.raises(ConfigError, match="mizu.ini"):
        load_config(write(tmp_path, "no section header\n"))
    with pytest.raises(ConfigError, match="mizu.ini"):
        load_config(write(tmp_path, "[sip]\nworkers = 1\nworkers = 2\n"))


def test_command_line_overrides(tmp_path):
    """--db and --datadir override [database] dsn and datadir."""
    path = write(tmp_path, "[database]\ndsn = postgresql://a/b\ndatadir = /srv/mizu\n")
    config = load_config(path, dsn="postgresql://c/d", datadir="/tmp/x")
    assert (config.database.dsn, config.database.datadir) == ("postgresql://c/d", "/tmp/x")
    assert load_config(path, dsn="").database.dsn == ""  # --db '' forces the embedded server


def test_restart_required_names_fixed_settings():
    """Changing listen addresses or the database is reported as needing a restart."""
    old = Config()
    new = Config(console=type(old.console)(listen="tcp:2424"),
                 sip=type(old.sip)(port=5070, workers=2))
    assert old.restart_required(new) == ["[console] listen", "[sip] listen"]
    assert old.restart_required(Config()) == []


def test_the_shipped_example_is_valid():
    """etc/mizu.ini.example loads without errors and matches the defaults."""
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "etc", "mizu.ini.example")
    config = load_config(path)
    assert config.sip == type(config.sip)() and config.console.users == {}


def test_security_and_console_limits_and_sip_restart_keys(tmp_path):
    """[security] and the console limits are read and checked; [sip] keys the workers were
    started with are reported as needing a restart, the others are not."""
    path = tmp_path / "mizu.ini"
    path.write_text("[security]\nban_failures = 3\nban_window = 10\nban_time = 60\n"
                    "[console]\nlogin_timeout = 9\nidle_timeout = 0\nmax_unauthenticated = 2\n"
                    "[sip]\nlog_level = 4\n")
    config = load_config(str(path))
    assert (config.security.ban_failures, config.security.ban_window,
            config.security.ban_time) == (3, 10, 60)
    assert (config.console.login_timeout, config.console.idle_timeout,
            config.console.max_unauthenticated) == (9, 0, 2)
    path.write_text("[security]\nban_time = 0\n[sip]\nlog_level = 9\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert len(e.value.errors) == 2
    old = Config()
    sip = type(old.sip)
    assert old.restart_required(Config(sip=sip(public_address="192.0.2.1", max_calls=9))) == [
        "[sip] max_calls", "[sip] public_address"]
    assert old.restart_required(Config(sip=sip(shutdown_grace=5, default_gateway="sip:x"))) == []
