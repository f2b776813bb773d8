"""The INI configuration file (SPEC §2): defaults for every key, all errors reported at once."""

from __future__ import annotations

import configparser
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.endpoints import serverFromString

from mizu.errors import ConfigError

DEFAULT_CONFIG_PATH = os.path.join("etc", "mizu.ini")


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the data lives: an external DSN, or an embedded server under ``datadir``."""

    dsn: str = ""
    datadir: str = "var"


@dataclass(frozen=True)
class SipConfig:
    """The SIP front end: worker 0 listens on ``port``, worker n on ``port + n``."""

    host: str = "0.0.0.0"
    port: int = 5060
    workers: int = 2
    public_address: str = ""
    max_calls: int = 1000
    default_gateway: str = ""
    shutdown_grace: int = 30
    log_level: int = 1


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP API: its endpoint, the operator's API key and the abuse limits.

    ``authkey``: when set, ``/mvapireq/`` requests must carry ``authkey=`` with it.
    ``trusted_proxies``: the addresses whose ``X-Forwarded-For`` is believed (the last
    address it names is the client); from anyone else the header is ignored.
    Rates are requests per second, sustained, with bursts of ``*_burst``; 0 turns a
    limit off. ``user_rate`` counts requests that create a callback, per user.
    """

    listen: str = "tcp:8080"
    authkey: str = ""
    trusted_proxies: tuple[str, ...] = ()
    address_rate: float = 20.0
    address_burst: int = 100
    user_rate: float = 1.0
    user_burst: int = 10
    max_connections: int = 64
    request_timeout: int = 10
    max_body: int = 16384
    max_header_bytes: int = 8192
    max_headers: int = 64
    access_log: bool = False


@dataclass(frozen=True)
class ConsoleConfig:
    """The telnet console's endpoint and accounts (name to plain password or bcrypt hash)."""

    listen: str = "tcp:2323:interface=127.0.0.1"
    login_timeout: int = 60
    idle_timeout: int = 900
    max_unauthenticated: int = 20
    users: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmppConfig:
    """The SMPP link to the SMS provider, mizu binding as an ESME."""

    enabled: bool = False
    host: str = ""
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    bind: str = "transceiver"
    source_addr: str = ""
    enquire_interval: int = 30
    response_timeout: int = 10
    replies: bool = True
    duplicate_window: int = 120


@dataclass(frozen=True)
class SecurityConfig:
    """Bans by source address: ``ban_failures`` failed logins within ``ban_window`` seconds
    ban the address for ``ban_time`` seconds (SIP digest and console, counted apart)."""

    ban_failures: int = 10
    ban_window: int = 60
    ban_time: int = 900


@dataclass(frozen=True)
class IvrConfig:
    """Prompts and scripts, and the IVR's digit timeouts (SPEC §5).

    ``sounds`` is searched first for ``<language>/<prompt>.wav``; the prompts shipped in
    the package are the fallback. ``scripts`` holds operator scripts (``<name>.ivr``).
    """

    sounds: str = os.path.join("etc", "sounds")
    language: str = "en"
    scripts: str = os.path.join("etc", "ivr")
    first_digit_timeout: int = 10
    inter_digit_timeout: int = 5
    max_ivr_time: int = 600


@dataclass(frozen=True)
class CallbackConfig:
    """The callback queue and call legs: ring timeouts, limits, polling and heartbeats.

    ``quota``: how many seconds of a bridged call are reserved at a time; more is reserved
    before they run out, and the call is cut when no more credit can be reserved.
    """

    ring_timeout: int = 45
    max_call_time: int = 14400
    quota: int = 300
    poll_interval: int = 5
    heartbeat: int = 5
    stale_after: int = 30
    max_attempts: int = 3
    retry_delay: int = 30


# ITU-T global service codes that carriers bill at premium or satellite rates and that
# international revenue share fraud (IRSF) pumps traffic to: Inmarsat (870), UPT (878),
# satellite networks (881), international networks (882, 883), OCHA (888) and the
# international premium rate service (979).
DEFAULT_BLOCKED_PREFIXES = ("870", "878", "881", "882", "883", "888", "979")


@dataclass(frozen=True)
class FraudConfig:
    """Fraud guards; each refusal names its reason to the requester and is logged.

    ``max_calls_per_user``: calls one user may have at once (callbacks and card calls).
    ``callbacks_per_hour``: callback requests one user may make in any hour;
    ``anumber_per_hour``: the same for one A-number, from any trigger (the console is
    the operator and is not counted). ``daily_spend``: what one user may be charged in a
    UTC day; a call is cut when it is reached. ``blocked_prefixes`` and the prefixes in
    the ``blocklist`` file are never dialled, as A or as B. 0 (or empty) turns a guard off.
    """

    max_calls_per_user: int = 4
    callbacks_per_hour: int = 30
    anumber_per_hour: int = 10
    daily_spend: float = 50.0
    blocked_prefixes: tuple[str, ...] = DEFAULT_BLOCKED_PREFIXES
    blocklist: str = ""


@dataclass(frozen=True)
class Config:
    """A whole, validated configuration; ``path`` is the file it came from, if any."""

    path: str | None = None
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    smpp: SmppConfig = field(default_factory=SmppConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    ivr: IvrConfig = field(default_factory=IvrConfig)
    callback: CallbackConfig = field(default_factory=CallbackConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)

    def restart_required(self, new: Config) -> list[str]:
        """The settings that differ in ``new`` but cannot change while running."""
        fixed = [
            ("database", "dsn"), ("database", "datadir"),
            ("sip", "host"), ("sip", "port"), ("sip", "workers"),
            ("sip", "public_address"), ("sip", "max_calls"), ("sip", "log_level"),
            ("http", "listen"), ("console", "listen"),
            ("callback", "poll_interval"), ("callback", "heartbeat"),
            ("callback", "stale_after"),
        ]
        changed = []
        for section, key in fixed:
            if getattr(getattr(self, section), key) != getattr(getattr(new, section), key):
                name = "listen" if (section, key) in (("sip", "host"), ("sip", "port")) else key
                changed.append(f"[{section}] {name}")
        return sorted(set(changed))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _parse_number(kind, what: str, low, high):
    """A parser of numbers of ``kind`` (int or float) between ``low`` and ``high``."""

    def parse(text: str):
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {show(low)} and {show(high)}, got {show(value)}")
        return value

    show = str if kind is int else "{:g}".format
    return parse


def _parse_int(low: int, high: int):
    return _parse_number(int, "a whole number", low, high)


def _parse_float(low: float, high: float):
    return _parse_number(float, "a number", low, high)


def _parse_endpoint(text: str) -> str:
    text = text.strip()
    try:
        serverFromString(None, text)
    except Exception as e:  # the endpoint parser raises several types
        raise ValueError(f"not a Twisted endpoint description ({e}): {text!r}") from None
    return text


def _parse_addresses(text: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in text.replace(",", " ").split())
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"expected IP addresses, got {address!r}") from None
    return addresses


def _parse_prefixes(text: str) -> tuple[str, ...]:
    prefixes = tuple(part.strip() for part in text.replace(",", " ").split())
    for prefix in prefixes:  # as numbers are written: a leading + or 00 is dropped in use
        digits = prefix[1:] if prefix.startswith("+") else prefix
        if not (digits.isdecimal() and digits.isascii()):
            raise ValueError(f"expected number prefixes (digits), got {prefix!r}")
    return prefixes


def _parse_choice(*choices: str):
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _parse_sip_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), _parse_int(1, 65535)(port)


def _parse_gateway(text: str) -> str:
    text = text.strip()
    if text and not text.startswith(("sip:", "sips:")):
        raise ValueError(f"expected a SIP URI such as sip:{{number}}@carrier:5060, got {text!r}")
    return text


def _parse_language(text: str) -> str:
    value = text.strip()
    if not value or not value.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"expected a language folder name such as en, got {text!r}")
    return value


def _text(value: str) -> str:
    return value.strip()


# section -> key -> (field name, parser)
_SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "database": {"dsn": ("dsn", _text), "datadir": ("datadir", _text)},
    "sip": {
        "listen": ("listen", _parse_sip_listen),
        "workers": ("workers", _parse_int(0, 64)),
        "public_address": ("public_address", _text),
        "max_calls": ("max_calls", _parse_int(1, 1_000_000)),
        "default_gateway": ("default_gateway", _parse_gateway),
        "shutdown_grace": ("shutdown_grace", _parse_int(0, 3600)),
        "log_level": ("log_level", _parse_int(0, 6)),
    },
    "http": {
        "listen": ("listen", _parse_endpoint),
        "authkey": ("authkey", _text),
        "trusted_proxies": ("trusted_proxies", _parse_addresses),
        "address_rate": ("address_rate", _parse_float(0, 1_000_000)),
        "address_burst": ("address_burst", _parse_int(1, 1_000_000)),
        "user_rate": ("user_rate", _parse_float(0, 1_000_000)),
        "user_burst": ("user_burst", _parse_int(1, 1_000_000)),
        "max_connections": ("max_connections", _parse_int(0, 1_000_000)),
        "request_timeout": ("request_timeout", _parse_int(1, 3600)),
        "max_body": ("max_body", _parse_int(1024, 16 * 1024 * 1024)),
        "max_header_bytes": ("max_header_bytes", _parse_int(1024, 1024 * 1024)),
        "max_headers": ("max_headers", _parse_int(8, 1000)),
        "access_log": ("access_log", _parse_bool),
    },
    "console": {
        "listen": ("listen", _parse_endpoint),
        "login_timeout": ("login_timeout", _parse_int(5, 3600)),
        "idle_timeout": ("idle_timeout", _parse_int(0, 86400)),
        "max_unauthenticated": ("max_unauthenticated", _parse_int(1, 10_000)),
    },
    "smpp": {
        "enabled": ("enabled", _parse_bool),
        "host": ("host", _text),
        "port": ("port", _parse_int(1, 65535)),
        "system_id": ("system_id", _text),
        "password": ("password", _text),
        "system_type": ("system_type", _text),
        "bind": ("bind", _parse_choice("transceiver", "receiver")),
        "source_addr": ("source_addr", _text),
        "enquire_interval": ("enquire_interval", _parse_int(5, 3600)),
        "response_timeout": ("response_timeout", _parse_int(1, 300)),
        "replies": ("replies", _parse_bool),
        "duplicate_window": ("duplicate_window", _parse_int(0, 86400)),
    },
    "security": {
        "ban_failures": ("ban_failures", _parse_int(0, 1_000_000)),
        "ban_window": ("ban_window", _parse_int(1, 86400)),
        "ban_time": ("ban_time", _parse_int(1, 30 * 86400)),
    },
    "ivr": {
        "sounds": ("sounds", _text),
        "language": ("language", _parse_language),
        "scripts": ("scripts", _text),
        "first_digit_timeout": ("first_digit_timeout", _parse_int(1, 120)),
        "inter_digit_timeout": ("inter_digit_timeout", _parse_int(1, 60)),
        "max_ivr_time": ("max_ivr_time", _parse_int(10, 86400)),
    },
    "callback": {
        "ring_timeout": ("ring_timeout", _parse_int(5, 300)),
        "max_call_time": ("max_call_time", _parse_int(60, 86400)),
        "quota": ("quota", _parse_int(30, 86400)),
        "poll_interval": ("poll_interval", _parse_int(1, 3600)),
        "heartbeat": ("heartbeat", _parse_int(1, 300)),
        "stale_after": ("stale_after", _parse_int(5, 86400)),
        "max_attempts": ("max_attempts", _parse_int(1, 100)),
        "retry_delay": ("retry_delay", _parse_int(1, 86400)),
    },
    "fraud": {
        "max_calls_per_user": ("max_calls_per_user", _parse_int(0, 100_000)),
        "callbacks_per_hour": ("callbacks_per_hour", _parse_int(0, 1_000_000)),
        "anumber_per_hour": ("anumber_per_hour", _parse_int(0, 1_000_000)),
        "daily_spend": ("daily_spend", _parse_float(0, 1_000_000_000)),
        "blocked_prefixes": ("blocked_prefixes", _parse_prefixes),
        "blocklist": ("blocklist", _text),
    },
}
_SECTIONS = {"database": DatabaseConfig, "sip": SipConfig, "http": HttpConfig,
             "console": ConsoleConfig, "smpp": SmppConfig, "security": SecurityConfig,
             "ivr": IvrConfig, "callback": CallbackConfig, "fraud": FraudConfig}


def load_config(path: str | None = None, dsn: str | None = None,
                datadir: str | None = None) -> Config:
    """Read ``path`` (or ``etc/mizu.ini`` when present), apply overrides, and validate it all.

    Raises ``ConfigError`` listing every problem, never just the first.
    """
    errors: list[str] = []
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";", "#"), strict=True
    )
    parser.optionxform = str  # console user names keep their case
    source = path
    if path is None and os.path.exists(DEFAULT_CONFIG_PATH):
        source = DEFAULT_CONFIG_PATH
    if source is not None:
        try:
            with open(source, encoding="utf-8") as f:
                parser.read_file(f, source)
        except OSError as e:
            raise ConfigError([f"{source}: cannot read: {e.strerror}"]) from None
        except configparser.Error as e:
            raise ConfigError([f"{source}: {' '.join(str(e).split())}"]) from None

    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    users: dict[str, str] = {}
    for section in parser.sections():
        if section == "console.users":
            for name, password in parser.items(section):
                if not password.strip():
                    errors.append(f"[console.users] {name}: empty password")
                users[name] = password.strip()
            continue
        schema = _SCHEMA.get(section)
        if schema is None:
            errors.append(f"[{section}]: unknown section")
            continue
        for key, raw in parser.items(section):
            entry = schema.get(key.lower())
            if entry is None:
                errors.append(f"[{section}] {key}: unknown key")
                continue
            name, parse = entry
            try:
                values[section][name] = parse(raw)
            except ValueError as e:
                errors.append(f"[{section}] {key}: {e}")

    if dsn is not None:
        values["database"]["dsn"] = dsn.strip()
    if datadir is not None:
        values["database"]["datadir"] = datadir.strip()
    if not values["database"].get("datadir", "var"):
        errors.append("[database] datadir: must not be empty")
    if "listen" in values["sip"]:
        values["sip"]["host"], values["sip"]["port"] = values["sip"].pop("listen")
    smpp = values["smpp"]
    if smpp.get("enabled"):
        for key in ("host", "system_id"):
            if not smpp.get(key):
                errors.append(f"[smpp] {key}: required when enabled = yes")
    if errors:
        raise ConfigError(errors)

    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    sections["console"] = ConsoleConfig(**values["console"], users=users)
    return Config(path=source, **sections)

