"""The IVR script format: parsing, validation with file:line, and loading the scripts."""

from __future__ import annotations

import os

import pytest

from mizu.errors import ConfigError
from mizu.ivr.prompts import Prompts
from mizu.ivr.script import BUILTIN, Step, load_scripts, parse

PROMPTS = Prompts()
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "ivr", "example.ivr")


def errors_of(text, prompts=PROMPTS):
    with pytest.raises(ConfigError) as caught:
        parse(text, "x.ivr", prompts)
    return caught.value.errors


def test_a_script_parses_into_steps_with_options_and_lines():
    """Comments and blank lines are skipped; options are typed; the file names the script."""
    script = parse("# top\n\nplay welcome barge=no  # hi\npin tries=2 first=7.5 min=4\n"
                   "destination prompt=none max=12\nhangup goodbye\n", "etc/ivr/promo.ivr",
                   PROMPTS)
    assert script.name == "promo" and script.filename == "etc/ivr/promo.ivr"
    assert script.steps == (
        Step("play", ("welcome",), {"barge": False}, 3),
        Step("pin", (), {"tries": 2, "first": 7.5, "min": 4}, 4),
        Step("destination", (), {"prompt": "none", "max": 12}, 5),
        Step("hangup", ("goodbye",), {}, 6),
    )
    assert script.steps[2].prompt("prompt", "enter-destination") == []
    assert script.steps[1].prompt("prompt", "enter-pin") == ["enter-pin"]


def test_the_built_in_scripts_parse_and_do_what_spec_5_says():
    """callback: pin, credit, destination, minutes, connect, hangup goodbye; callingcard:
    play welcome, then the same."""
    scripts = load_scripts(None, PROMPTS)
    callback = [s.kind for s in scripts["callback"].steps]
    assert callback == ["pin", "credit", "destination", "minutes", "connect", "hangup"]
    assert scripts["callback"].steps[-1].args == ("goodbye",)
    card = scripts["callingcard"].steps
    assert card[0] == Step("play", ("welcome",), {}, card[0].line)
    assert [s.kind for s in card[1:]] == callback


def test_the_operator_example_parses():
    """etc/ivr/example.ivr is a valid script."""
    with open(EXAMPLE, encoding="utf-8") as f:
        script = parse(f.read(), EXAMPLE, PROMPTS)
    assert script.name == "example" and script.steps[-1].kind == "hangup"


@pytest.mark.parametrize("line, problem", [
    ("dance", "unknown step 'dance'"),
    ("pin colour=red", "pin: unknown key 'colour'"),
    ("pin tries=many", "pin: bad tries='many': expected a whole number from 1 to 20"),
    ("pin tries=0", "pin: bad tries='0'"),
    ("pin tries=2 tries=3", "pin: tries given twice"),
    ("destination max=100", "destination: bad max='100'"),
    ("destination min=9 max=4", "destination: min=9 is more than max=4"),
    ("pin first=soon", "pin: bad first='soon': expected seconds"),
    ("pin inter=0", "pin: bad inter='0': expected more than 0"),
    ("play welcome timeout=NaN", "play: bad timeout='NaN'"),
    ("play welcome barge=maybe", "play: bad barge='maybe': expected yes or no"),
    ("play no-such-prompt", "play: unknown prompt 'no-such-prompt'"),
    ("play ../../etc/passwd", "play: '../../etc/passwd' is not a prompt name"),
    ("pin prompt=no-such-prompt", "pin: bad prompt='no-such-prompt': unknown prompt"),
    ("hangup no-such-prompt", "hangup: unknown prompt 'no-such-prompt'"),
    ("play", "play needs at least one prompt name"),
    ("credit welcome", "credit takes no prompt names (welcome)"),
    ("connect timeout=5", "connect: unknown key 'timeout'"),
    ("hangup barge=no", "hangup: unknown key 'barge' (keys: none)"),
])
def test_each_kind_of_error_is_reported_with_file_and_line(line, problem):
    """Every problem is '<file>:<line>: <problem>'."""
    (error,) = errors_of(f"# a comment\n{line}\n")
    assert error.startswith(f"x.ivr:2: {problem}")


def test_steps_after_hangup_are_an_error():
    """A step after hangup is never reached: reported on its line."""
    assert errors_of("hangup\nplay welcome\n") == [
        "x.ivr:2: play after the hangup on line 1 is never reached"]


def test_an_empty_script_is_an_error():
    """Only comments: 'the script has no steps'."""
    assert errors_of("# nothing\n") == ["x.ivr:1: the script has no steps"]


def test_all_errors_are_reported_together():
    """Several bad lines (and several problems on one line) all appear, in order."""
    assert errors_of("dance\nplay welcome\npin tries=x colour=red\nplay nope\n") == [
        "x.ivr:1: unknown step 'dance' (steps: play, pin, ani, credit, balance, destination,"
        " minutes, connect, hangup)",
        "x.ivr:3: pin: bad tries='x': expected a whole number from 1 to 20",
        "x.ivr:3: pin: unknown key 'colour' (keys: tries, prompt, wrong, min, max, first,"
        " inter, timeout)",
        "x.ivr:4: play: unknown prompt 'nope'",
    ]


def test_missing_connect_and_hangup_are_fine():
    """A script may end without connect or hangup."""
    assert [s.kind for s in parse("play welcome\n", "x.ivr", PROMPTS).steps] == ["play"]


def test_without_prompts_only_the_name_syntax_is_checked():
    """parse() without a Prompts accepts any well-formed prompt name."""
    assert parse("play promo\n", "x.ivr").steps[0].args == ("promo",)


def test_operator_scripts_add_to_and_override_the_built_ins(tmp_path):
    """<folder>/<name>.ivr: a new name is added, 'callback' replaces the built-in."""
    (tmp_path / "promo.ivr").write_text("play welcome\nhangup\n")
    (tmp_path / "callback.ivr").write_text("hangup goodbye\n")
    (tmp_path / "notes.txt").write_text("not a script")
    scripts = load_scripts(str(tmp_path), PROMPTS)
    assert sorted(scripts) == ["callback", "callingcard", "promo"]
    assert [s.kind for s in scripts["callback"].steps] == ["hangup"]
    assert scripts["callingcard"].filename == os.path.join(BUILTIN, "callingcard.ivr")


def test_errors_of_every_file_are_collected_into_one(tmp_path):
    """Two bad files: one ConfigError listing both, each with its path and line."""
    (tmp_path / "a.ivr").write_text("play welcome\ndance\n")
    (tmp_path / "b.ivr").write_text("pin tries=99\n")
    (tmp_path / "c.ivr").write_bytes(b"play \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_scripts(str(tmp_path), PROMPTS)
    errors = caught.value.errors
    assert len(errors) == 3
    assert errors[0].startswith(f"{tmp_path / 'a.ivr'}:2: unknown step 'dance'")
    assert errors[1].startswith(f"{tmp_path / 'b.ivr'}:1: pin: bad tries='99'")
    assert errors[2].startswith(f"{tmp_path / 'c.ivr'}: cannot read the script")


def test_operator_prompts_are_valid_in_operator_scripts(tmp_path):
    """A prompt in the operator's sound folder may be used; unknown elsewhere."""
    sounds = tmp_path / "sounds"
    (sounds / "en").mkdir(parents=True)
    (sounds / "en" / "promo.wav").write_bytes(b"RIFF")
    scripts = tmp_path / "ivr"
    scripts.mkdir()
    (scripts / "promo.ivr").write_text("play promo\n")
    assert "promo" in load_scripts(str(scripts), Prompts([str(sounds)]))
    with pytest.raises(ConfigError, match="unknown prompt 'promo'"):
        load_scripts(str(scripts), PROMPTS)


def test_a_missing_folder_and_a_bad_script_name_are_errors(tmp_path):
    """No such folder: ConfigError; a file name that is no script name: ConfigError."""
    with pytest.raises(ConfigError, match="no such folder"):
        load_scripts(str(tmp_path / "nope"), PROMPTS)
    (tmp_path / "my script.ivr").write_text("hangup\n")
    with pytest.raises(ConfigError, match="is not a script name"):
        load_scripts(str(tmp_path), PROMPTS)
