"""The in-memory tables: loaded whole, and refused whole (with file:line) when any part is bad."""

from decimal import Decimal

import pytest
import pytest_twisted
from twisted.internet import defer

from mizu.config import Config, IvrConfig, SipConfig
from mizu.dispatch.tables import Tables
from mizu.errors import ConfigError


class Catalog:
    """The rows a ``Catalog`` would read from the database."""

    def __init__(self, rates=(), routes=(), campaigns=None):
        self._rates, self._routes, self._campaigns = list(rates), list(routes), campaigns or {}

    def rates(self):
        return defer.succeed(self._rates)

    def routes(self):
        return defer.succeed(self._routes)

    def campaigns(self):
        return defer.succeed(self._campaigns)


def config(tmp_path, gateway=""):
    return Config(sip=SipConfig(default_gateway=gateway),
                  ivr=IvrConfig(sounds=str(tmp_path / "sounds"), scripts=str(tmp_path / "ivr")))


@pytest_twisted.inlineCallbacks
def test_routes_by_longest_prefix_else_the_default_gateway(tmp_path):
    """4420 beats 44; no prefix: the default gateway; neither: no route."""
    (tmp_path / "ivr").mkdir()
    catalog = Catalog(routes=[("44", "sip:{number}@uk.example"),
                              ("+4420", "sip:{number}@london.example")])
    tables = yield Tables.load(catalog, config(tmp_path, "sip:{number}@default.example"))
    assert tables.gateway_uri("+44201234") == "sip:44201234@london.example"
    assert tables.gateway_uri("4411") == "sip:4411@uk.example"
    assert tables.gateway_uri("0049301") == "sip:49301@default.example"
    bare = yield Tables.load(catalog, config(tmp_path))
    assert bare.gateway_uri("4930") is None


@pytest_twisted.inlineCallbacks
def test_campaigns_choose_scripts_and_operator_scripts_load(tmp_path):
    """A campaign names a built-in or an operator script from the scripts folder."""
    (tmp_path / "ivr").mkdir()
    (tmp_path / "ivr" / "short.ivr").write_text("play welcome\nconnect\n")
    catalog = Catalog(rates=[("49", Decimal("0.06"), 60, 60, Decimal(0))],
                      campaigns={3: ("card", "callingcard"), 4: ("mine", "short")})
    tables = yield Tables.load(catalog, config(tmp_path))
    assert tables.script_for(3, "callback") is tables.scripts["callingcard"]
    assert tables.script_for(4, "callback") is tables.scripts["short"]
    assert tables.script_for(0, "callback") is tables.scripts["callback"]
    assert tables.rates.rate("4930").price == Decimal("0.06")


@pytest_twisted.inlineCallbacks
def test_every_problem_is_reported_with_file_and_line(tmp_path):
    """A broken script and a bad gateway together; then a campaign naming no script."""
    (tmp_path / "ivr").mkdir()
    broken = tmp_path / "ivr" / "broken.ivr"
    broken.write_text("play welcome\nfly away\n")
    catalog = Catalog(routes=[("1", "http://nope")], campaigns={7: ("x", "missing")})
    with pytest.raises(ConfigError) as e:
        yield Tables.load(catalog, config(tmp_path))
    text = "\n".join(e.value.errors)
    assert f"{broken}:2:" in text
    assert "tb_routes prefix '1'" in text
    (tmp_path / "ivr" / "broken.ivr").unlink()
    with pytest.raises(ConfigError) as e:
        yield Tables.load(catalog, config(tmp_path))
    assert any(m.startswith("tb_ccampaigns id 7 (x): no IVR script 'missing'")
               for m in e.value.errors)


@pytest_twisted.inlineCallbacks
def test_a_configured_scripts_folder_must_exist(tmp_path):
    """A typo in [ivr] scripts is an error, not silently no scripts."""
    with pytest.raises(ConfigError) as e:
        yield Tables.load(Catalog(), config(tmp_path))
    assert "ivr" in str(e.value)
