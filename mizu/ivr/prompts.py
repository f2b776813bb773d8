"""IVR prompts: where a prompt's WAV file is, and how numbers, amounts and call times are
spoken with the packaged vocabulary.

A prompt is named by its file name without ``.wav`` (``enter-pin``). ``Prompts`` looks a
name up as ``<folder>/<language>/<name>.wav`` in each operator folder in order, then in the
packaged ``mizu/sounds``; so an operator overrides a packaged prompt by placing a file of the
same name in their folder. When ``language`` is not ``en``, the same folders are searched
for the English file last, so a partly translated set still speaks every prompt.

Numbers are spoken with ``digit-0`` .. ``digit-9``, ``number-10`` .. ``number-20``, the tens
``number-30`` .. ``number-90``, ``number-hundred`` and ``number-thousand``.
"""

from __future__ import annotations

import os
import re
from decimal import ROUND_DOWN, Decimal

from mizu.errors import ConfigError

PACKAGED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sounds")

# A prompt name is a plain file name: no path separators, no dots, nothing hidden.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class Prompts:
    """Finds prompt files by name and turns numbers into lists of prompt names."""

    def __init__(self, folders: list[str] | tuple[str, ...] = (), language: str = "en"):
        if not _NAME.match(language or ""):
            raise ConfigError([f"prompt language {language!r} is not a plain folder name"])
        self.language = language
        self.folders = [*folders, PACKAGED]
        languages = [language] if language == "en" else [language, "en"]
        self._search = [os.path.join(folder, lang) for lang in languages
                        for folder in self.folders]

    def find(self, name: str) -> str | None:
        """The file of prompt ``name``, or None when no folder has it."""
        if not isinstance(name, str) or not _NAME.match(name):
            return None
        for folder in self._search:
            candidate = os.path.join(folder, name + ".wav")
            if os.path.isfile(candidate):
                return candidate
        return None

    def has(self, name: str) -> bool:
        """Whether prompt ``name`` exists in some folder."""
        return self.find(name) is not None

    def path(self, name: str) -> str:
        """The file of prompt ``name``; ``ConfigError`` when no folder has it."""
        found = self.find(name)
        if found is None:
            raise ConfigError([f"prompt {name!r} not found ({self.language}) in "
                               + ", ".join(self._search)])
        return found

    def paths(self, names: list[str]) -> list[str]:
        """The files of several prompts, in order."""
        return [self.path(name) for name in names]

    def number(self, n: int) -> list[str]:
        """``n`` (0 or more) in words: 42 -> number-40 digit-2; 115 -> digit-1
        number-hundred number-15. From a million on, the digits are said one by one."""
        if n < 0:
            raise ValueError(f"cannot say a negative number ({n})")
        if n == 0:
            return ["digit-0"]
        if n >= 1_000_000:
            return [f"digit-{c}" for c in str(n)]
        thousands, rest = divmod(n, 1000)
        words = (_below_thousand(thousands) + ["number-thousand"]) if thousands else []
        return words + _below_thousand(rest)

    def amount(self, value: Decimal) -> list[str]:
        """A money amount, cut (never rounded up) to cents: 12.34 -> number-12 point digit-3
        digit-4; 12.30 -> ... point digit-3 digit-0; a whole amount has no ``point``."""
        value = Decimal(value)
        if value < 0:
            raise ValueError(f"cannot say a negative amount ({value})")
        cents = int(value.quantize(Decimal("0.01"), rounding=ROUND_DOWN) * 100)
        whole, fraction = divmod(cents, 100)
        words = self.number(whole)
        if fraction:
            words += ["point", f"digit-{fraction // 10}", f"digit-{fraction % 10}"]
        return words

    def minutes(self, seconds: int, lead: str | None = "you-have") -> list[str]:
        """How long a call may last, in whole minutes (cut, never rounded up): "you have N
        minutes" ("1 minute"); under a minute, "you have N seconds". ``lead`` None: no
        "you have"."""
        seconds = max(0, int(seconds))
        words = [lead] if lead else []
        whole = seconds // 60
        if whole:
            return words + self.number(whole) + ["minute" if whole == 1 else "minutes"]
        return words + self.number(seconds) + ["seconds"]


def _below_thousand(n: int) -> list[str]:
    """1-999 in words; 0 is nothing (it only appears as part of a larger number)."""
    hundreds, rest = divmod(n, 100)
    words = [f"digit-{hundreds}", "number-hundred"] if hundreds else []
    if rest == 0:
        return words
    if rest < 10:
        return words + [f"digit-{rest}"]
    if rest <= 20:
        return words + [f"number-{rest}"]
    tens, units = divmod(rest, 10)
    return words + [f"number-{tens * 10}"] + ([f"digit-{units}"] if units else [])
