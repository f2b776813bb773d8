"""Global settings from tb_config: defaults, typing, validation, unknown names kept."""

from decimal import Decimal

import pytest

from mizu.errors import ConfigError
from mizu.settings import Settings


def test_defaults():
    """With no rows, the SPEC §6 defaults apply."""
    s = Settings.from_rows({})
    assert s.anumberhandling == 3 and s.freeivraccess == 0 and s.ivrbilling == 2
    assert s.callbackdelay == Decimal(1) and s.maxivrauthfail == 3
    assert s.callbackcallernumber == "" and s.defcallbackivr == 0


def test_values_are_typed_and_unknown_names_kept():
    """Known names are parsed to their types; unknown names are kept as text."""
    s = Settings.from_rows({"anumberhandling": "1", "callbackdelay": "2.5",
                            "callbackcallernumber": "+4930123", "FreeIvrAccess": "3",
                            "mycustom": "x y", "empty": None})
    assert s.anumberhandling == 1 and s.callbackdelay == Decimal("2.5")
    assert s.callbackcallernumber == "+4930123" and s.freeivraccess == 3
    assert s.extra == {"mycustom": "x y", "empty": ""}
    assert ("mycustom", "x y") in s.items()
    assert s.get("mycustom") == "x y" and s.get("freeivraccess") == "3"
    assert s.get("nosuch") is None


def test_every_bad_value_reported():
    """All invalid rows are listed in one ConfigError."""
    with pytest.raises(ConfigError) as e:
        Settings.from_rows({"anumberhandling": "7", "ivrbilling": "3", "callbackdelay": "soon",
                            "maxivrauthfail": "0", "callbackcallernumber": "12ab",
                            "freeaccessuserid": "-1", "ivrauthentication": "x"})
    assert len(e.value.errors) == 7
    assert "tb_config anumberhandling: expected one of 0, 1, 2, 3, got 7" in e.value.errors


def test_with_value_validates():
    """Setting one value returns a new Settings, or ValueError with the reason."""
    s = Settings()
    assert s.with_value("callbackdelay", "0").callbackdelay == Decimal(0)
    assert s.with_value("newname", "v").extra == {"newname": "v"}
    with pytest.raises(ValueError, match="expected one of 0, 1, 2, 5"):
        s.with_value("ivrbilling", "4")
    assert s.ivrbilling == 2
