"""Prompts: finding prompt files (operator folders first) and saying numbers in words."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from mizu.errors import ConfigError
from mizu.ivr.prompts import PACKAGED, Prompts


@pytest.mark.parametrize("n, words", [
    (0, ["digit-0"]),
    (7, ["digit-7"]),
    (10, ["number-10"]),
    (13, ["number-13"]),
    (20, ["number-20"]),
    (21, ["number-20", "digit-1"]),
    (42, ["number-40", "digit-2"]),
    (90, ["number-90"]),
    (100, ["digit-1", "number-hundred"]),
    (115, ["digit-1", "number-hundred", "number-15"]),
    (305, ["digit-3", "number-hundred", "digit-5"]),
    (999, ["digit-9", "number-hundred", "number-90", "digit-9"]),
    (1000, ["digit-1", "number-thousand"]),
    (2005, ["digit-2", "number-thousand", "digit-5"]),
    (9999, ["digit-9", "number-thousand", "digit-9", "number-hundred", "number-90",
            "digit-9"]),
    (12000, ["number-12", "number-thousand"]),
])
def test_numbers_are_said_in_words(n, words):
    """number(n) uses digit-*, number-10..20, the tens, hundred and thousand."""
    assert Prompts().number(n) == words


def test_every_word_of_every_number_has_a_packaged_file():
    """0-9999 are spoken only with prompts that ship with mizu."""
    prompts = Prompts()
    words = {word for n in range(10000) for word in prompts.number(n)}
    assert all(prompts.has(word) for word in words)


def test_a_negative_number_is_refused():
    """There is no prompt for minus."""
    with pytest.raises(ValueError):
        Prompts().number(-1)


@pytest.mark.parametrize("amount, words", [
    ("12.34", ["number-12", "point", "digit-3", "digit-4"]),
    ("12.3456", ["number-12", "point", "digit-3", "digit-4"]),
    ("12.349", ["number-12", "point", "digit-3", "digit-4"]),
    ("12.30", ["number-12", "point", "digit-3", "digit-0"]),
    ("0.05", ["digit-0", "point", "digit-0", "digit-5"]),
    ("12", ["number-12"]),
    ("12.0000", ["number-12"]),
])
def test_amounts_are_said_to_the_cent_never_rounded_up(amount, words):
    """amount(): the whole part in words, then point and the two cent digits."""
    assert Prompts().amount(Decimal(amount)) == words


@pytest.mark.parametrize("seconds, words", [
    (600, ["you-have", "number-10", "minutes"]),
    (60, ["you-have", "digit-1", "minute"]),
    (119, ["you-have", "digit-1", "minute"]),
    (120, ["you-have", "digit-2", "minutes"]),
    (45, ["you-have", "number-40", "digit-5", "seconds"]),
    (0, ["you-have", "digit-0", "seconds"]),
])
def test_call_time_is_said_in_whole_minutes_or_seconds(seconds, words):
    """minutes(): "you have N minute(s)", cut down; under a minute the seconds."""
    assert Prompts().minutes(seconds) == words


def test_packaged_prompts_are_found():
    """Without operator folders the packaged English prompt is used."""
    prompts = Prompts()
    assert prompts.path("goodbye") == os.path.join(PACKAGED, "en", "goodbye.wav")
    assert os.path.isfile(prompts.path("goodbye"))


def test_an_operator_folder_overrides_a_packaged_prompt(tmp_path):
    """<folder>/<language>/<name>.wav wins over the packaged file; others still come from
    the package; new prompts become known."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "goodbye.wav").write_bytes(b"RIFF")
    (tmp_path / "en" / "promo.wav").write_bytes(b"RIFF")
    prompts = Prompts([str(tmp_path)])
    assert prompts.path("goodbye") == str(tmp_path / "en" / "goodbye.wav")
    assert prompts.path("welcome") == os.path.join(PACKAGED, "en", "welcome.wav")
    assert prompts.has("promo") and not Prompts().has("promo")


def test_folders_are_searched_in_order(tmp_path):
    """The first folder that has the prompt wins."""
    for name in ("one", "two"):
        (tmp_path / name / "en").mkdir(parents=True)
        (tmp_path / name / "en" / "welcome.wav").write_bytes(b"RIFF")
    prompts = Prompts([str(tmp_path / "one"), str(tmp_path / "two")])
    assert prompts.path("welcome") == str(tmp_path / "one" / "en" / "welcome.wav")


def test_another_language_falls_back_to_english(tmp_path):
    """language de: a German file where there is one, else the English one."""
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "goodbye.wav").write_bytes(b"RIFF")
    prompts = Prompts([str(tmp_path)], language="de")
    assert prompts.path("goodbye") == str(tmp_path / "de" / "goodbye.wav")
    assert prompts.path("welcome") == os.path.join(PACKAGED, "en", "welcome.wav")


def test_a_missing_prompt_is_an_error():
    """path() of an unknown prompt raises ConfigError naming it; has() says False."""
    prompts = Prompts()
    assert not prompts.has("no-such-prompt")
    with pytest.raises(ConfigError, match="no-such-prompt"):
        prompts.path("no-such-prompt")


@pytest.mark.parametrize("name", ["../en/goodbye", "en/goodbye", "goodbye.wav", "", ".x"])
def test_names_that_are_not_plain_file_names_are_never_found(name):
    """A prompt name cannot reach outside the prompt folders."""
    assert not Prompts().has(name)


def test_a_language_that_is_not_a_folder_name_is_refused():
    """language '../x' is a ConfigError."""
    with pytest.raises(ConfigError):
        Prompts(language="../x")
