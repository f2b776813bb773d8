"""What the call flows read on every call, held in memory: rates, routes, campaigns, scripts.

Loaded whole at start and on ``reload``; a reload that finds any problem keeps the tables
in force (``Tables.load`` fails with every problem before anything is replaced).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from twisted.internet import defer

from mizu.billing.rating import PrefixIndex, RateTable, normalise_number
from mizu.config import IvrConfig
from mizu.errors import ConfigError
from mizu.ivr.prompts import Prompts
from mizu.ivr.script import load_scripts

BUILTIN_CALLBACK = "callback"
BUILTIN_CARD = "callingcard"


@dataclass(frozen=True)
class Campaign:
    """A row of ``tb_ccampaigns``: the IVR script it runs."""

    id: int
    name: str
    script: str


@dataclass
class Tables:
    """Rates, routes, campaigns, IVR scripts and prompts, as one consistent snapshot."""

    rates: RateTable
    routes: PrefixIndex
    campaigns: dict[int, Campaign]
    scripts: dict
    prompts: Prompts
    default_gateway: str = ""
    errors: list[str] = field(default_factory=list)
    blocked: PrefixIndex = field(default_factory=PrefixIndex)

    @classmethod
    @defer.inlineCallbacks
    def load(cls, catalog, config):
        """Read everything; fails with ``ConfigError`` naming every problem found."""
        errors: list[str] = []
        rates = RateTable.from_rows((yield catalog.rates()))
        routes = []
        for prefix, gateway in (yield catalog.routes()):
            if not gateway.startswith(("sip:", "sips:")):
                errors.append(f"tb_routes prefix {prefix!r}: gateway {gateway!r} is not a SIP URI")
                continue
            routes.append((normalise_number(prefix), gateway))
        prompts = Prompts([config.ivr.sounds], config.ivr.language)
        scripts = {}
        try:
            folder = config.ivr.scripts
            if folder == IvrConfig().scripts and not os.path.isdir(folder):
                folder = None  # the default folder is optional; a configured one is not
            scripts = load_scripts(folder, prompts)
        except ConfigError as e:
            errors += e.errors
        campaigns = {}
        for cid, (name, script) in (yield catalog.campaigns()).items():
            script = (script or BUILTIN_CALLBACK).strip()
            if scripts and script not in scripts:
                errors.append(f"tb_ccampaigns id {cid} ({name}): no IVR script {script!r} "
                              f"(known: {', '.join(sorted(scripts))})")
            campaigns[cid] = Campaign(cid, name, script)
        blocked = [normalise_number(prefix) for prefix in config.fraud.blocked_prefixes]
        if config.fraud.blocklist:
            try:
                blocked += read_blocklist(config.fraud.blocklist)
            except ConfigError as e:
                errors += e.errors
        if errors:
            raise ConfigError(errors)
        return cls(rates, PrefixIndex(routes), campaigns, scripts, prompts,
                   config.sip.default_gateway,
                   blocked=PrefixIndex((prefix, prefix) for prefix in blocked))

    def blocked_prefix(self, number: str) -> str | None:
        """The blocklist prefix ``number`` falls under, or None if it may be dialled."""
        return self.blocked.longest(normalise_number(number)) if len(self.blocked) else None

    def script_for(self, campaign: int, default: str):
        """The script a campaign runs (``default`` for campaign 0 or an unknown id)."""
        found = self.campaigns.get(campaign)
        return self.scripts[found.script if found else default]

    def gateway_uri(self, number: str) -> str | None:
        """The SIP URI to dial ``number`` at: the longest ``tb_routes`` prefix, else the
        default gateway, else None."""
        digits = normalise_number(number)
        gateway = self.routes.longest(digits) or self.default_gateway
        if not gateway:
            return None
        return gateway.replace("{number}", digits)


def read_blocklist(path: str) -> list[str]:
    """The prefixes in a blocklist file: one per line (a leading ``+`` or ``00`` is
    dropped), ``#`` starts a comment; ``ConfigError`` names every bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"[fraud] blocklist {path}: cannot read: {e}"]) from None
    prefixes, errors = [], []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip().replace(" ", "").replace("-", "")
        if not text:
            continue
        digits = normalise_number(text)
        if not digits.isdecimal() or not digits.isascii():
            errors.append(f"[fraud] blocklist {path} line {n}: not a number prefix: "
                          f"{line.strip()!r}")
        else:
            prefixes.append(digits)
    if errors:
        raise ConfigError(errors)
    return prefixes
