"""Global settings kept in ``tb_config`` (SPEC §6), typed and validated."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from mizu.errors import ConfigError


def _choice(*allowed: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected one of {_list(allowed)}, got {text!r}") from None
        if value not in allowed:
            raise ValueError(f"expected one of {_list(allowed)}, got {value}")
        return value

    return parse


def _list(values: tuple[int, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _id(text: str) -> int:
    try:
        value = int(text.strip() or "0")
    except ValueError:
        raise ValueError(f"expected an id (a whole number, 0 for none), got {text!r}") from None
    if value < 0:
        raise ValueError(f"expected an id (0 for none), got {value}")
    return value


def _seconds(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"expected seconds as a decimal number, got {text!r}") from None
    if not Decimal(0) <= value <= Decimal(3600):
        raise ValueError(f"expected 0 to 3600 seconds, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 100:
        raise ValueError(f"expected 1 to 100, got {value}")
    return value


_NUMBER = re.compile(r"^\+?[0-9]{0,32}$")


def _caller_number(text: str) -> str:
    value = text.strip()
    if not _NUMBER.match(value):
        raise ValueError(f"expected digits with an optional leading +, got {text!r}")
    return value


# name -> parser of the stored text; defaults are the dataclass fields of Settings.
PARSERS: dict[str, Callable[[str], object]] = {
    "anumberhandling": _choice(0, 1, 2, 3),
    "ivrauthentication": _choice(0, 1, 2, 3, 4),
    "callbackcallernumber": _caller_number,
    "defcallbackivr": _id,
    "freeivraccess": _choice(0, 1, 2, 3),
    "freeaccessuserid": _id,
    "callbackdelay": _seconds,
    "maxivrauthfail": _positive,
    "ivrbilling": _choice(0, 1, 2, 5),
}


@dataclass(frozen=True)
class Settings:
    """The global settings in force; ``extra`` keeps names mizu does not know."""

    anumberhandling: int = 3
    ivrauthentication: int = 0
    callbackcallernumber: str = ""
    defcallbackivr: int = 0
    freeivraccess: int = 0
    freeaccessuserid: int = 0
    callbackdelay: Decimal = Decimal(1)
    maxivrauthfail: int = 3
    ivrbilling: int = 2
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Mapping[str, str | None]) -> Settings:
        """Build from ``tb_config`` name/value pairs; ``ConfigError`` lists every bad value."""
        errors, known, extra = [], {}, {}
        for name, value in sorted(rows.items()):
            parse = PARSERS.get(name.lower())
            if parse is None:
                extra[name] = value or ""
                continue
            try:
                known[name.lower()] = parse(value or "")
            except ValueError as e:
                errors.append(f"tb_config {name}: {e}")
        if errors:
            raise ConfigError(errors)
        return cls(**known, extra=extra)

    def with_value(self, name: str, value: str) -> Settings:
        """A copy with one setting changed; ``ValueError`` says why a value is refused."""
        parse = PARSERS.get(name.lower())
        if parse is None:
            return dataclasses.replace(self, extra={**self.extra, name: value})
        return dataclasses.replace(self, **{name.lower(): parse(value)})

    def items(self) -> list[tuple[str, str]]:
        """Every setting as (name, displayed value), known ones first."""
        known = [(name, str(getattr(self, name))) for name in PARSERS]
        return known + sorted(self.extra.items())

    def get(self, name: str) -> str | None:
        """The displayed value of one setting, or None when it is neither known nor stored."""
        for key, value in self.items():
            if key == name or (name.lower() in PARSERS and key == name.lower()):
                return value
        return None
