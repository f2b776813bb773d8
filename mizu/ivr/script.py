"""IVR scripts: a small declarative format, its parser and the script loader.

A script is a text file ``<name>.ivr``; the file name (without ``.ivr``) is the script's
name, the one campaigns point at. One step a line; ``#`` starts a comment that runs to the
end of the line; blank lines are ignored. A step is a word, then prompt names and
``key=value`` options separated by blanks::

    play welcome                  # plays prompts (a digit stops them and is kept)
    pin tries=3                   # ask the PIN unless the caller is authenticated
    credit                        # not enough credit: insufficient-credit, goodbye, hang up
    destination min=3 max=20      # collect B unless it is known already
    minutes                       # "you have N minutes" for B
    connect                       # "connecting", dial B, wait until that call is over
    hangup goodbye                # say goodbye and hang up

Steps (options in brackets; ``<s>`` is seconds, a decimal number up to 3600):

``play <prompt>... [barge=yes|no] [timeout=<s>]``
    Plays the prompts as one playlist. With ``barge=yes`` (default) a digit stops the play;
    either way the digits are kept for the next step that collects. ``timeout`` caps the
    play (default: the prompt limit); a capped play is stopped and the script goes on.
``pin [tries=N] [prompt=] [wrong=] [min=] [max=] [first=<s>] [inter=<s>] [timeout=<s>]``
    Skipped when the caller is authenticated. Asks the PIN (``prompt``, default
    ``enter-pin``) and has the host check it; a wrong PIN plays ``wrong`` (``wrong-pin``) and
    asks again, at most ``tries`` attempts (default: ``maxivrauthfail``), then goodbye and
    hang up. ``min``/``max``: PIN length (1/20).
``ani [timeout=<s>]``
    Silently tries to authenticate the caller by the A-number; goes on either way.
``credit [prompt=] [timeout=<s>]``
    Checks the paying user has enough credit for a call at all; if not, plays ``prompt``
    (``insufficient-credit``), goodbye and hangs up.
``balance [prompt=] [timeout=<s>]``
    Says the credit: ``prompt`` (``your-balance-is``), then the amount ("12 point 3 4").
``destination [prompt=] [min=] [max=] [tries=N] [first=<s>] [inter=<s>] [timeout=<s>]``
    Skipped when B is known (the callback request named it). Asks for B (``prompt``,
    default ``enter-destination``) with ``min``..``max`` digits (3/32); ``tries``: how often
    to ask when nothing or too few digits were entered (default: the collect tries).
``minutes [prompt=] [timeout=<s>]``
    Rates B; no rate: call-failed, goodbye, hang up; too little credit for B:
    insufficient-credit, goodbye, hang up. Else says ``prompt`` (``you-have``) and the
    longest call time ("12 minutes"; under a minute: "40 seconds").
``connect [prompt=] [failed=]``
    Plays ``prompt`` (``connecting``), dials B, bridges it and waits until that call is
    over; the connected call has its own limits (the credit cut), not the step timeout. If
    B could not be reached, plays ``failed`` (``call-failed``; for lack of credit
    ``insufficient-credit``) and goes on with the next step.
``hangup [<prompt>...]``
    Plays the prompts (to the end; digits do not stop them) and hangs up. Steps after it
    are an error. A script that simply ends hangs up too.

Collecting digits (``pin``, ``destination``): digits end with ``#``, after ``max`` digits
or when no digit came for ``inter`` seconds (default 5); ``first`` (default 10) is the
wait for the first digit, counted from the end of the prompt. ``*`` throws away the digits
entered so far and starts again. When digits were typed ahead the prompt is skipped.
``prompt=none`` (and ``wrong=none``, ``failed=none``) means: say nothing. Every step but
``play``, ``connect`` and ``hangup`` has a hard ``timeout`` (default 300 s): when it runs
out the caller hears goodbye and the call ends.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from mizu.errors import ConfigError

BUILTIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SILENT = "none"  # the value of a prompt option that says nothing


@dataclass(frozen=True)
class Step:
    """One line of a script: the step, its prompt names and its parsed options."""

    kind: str
    args: tuple[str, ...] = ()
    options: dict[str, object] = field(default_factory=dict)
    line: int = 0

    def opt(self, key: str, default: object = None) -> object:
        """The value of option ``key``, or ``default`` when the line does not set it."""
        return self.options.get(key, default)

    def prompt(self, key: str, default: str) -> list[str]:
        """The prompt option ``key`` as a playlist: [] for ``none``, else one name."""
        value = self.options.get(key, default)
        return [] if value == SILENT else [value]


@dataclass(frozen=True)
class Script:
    """A parsed script: its name (the file name), where it came from, and its steps."""

    name: str
    filename: str
    steps: tuple[Step, ...]


def _seconds(text: str, prompts) -> float:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("expected seconds (a decimal number)") from None
    if not value.is_finite() or not 0 < value <= 3600:
        raise ValueError("expected more than 0 and at most 3600 seconds")
    return float(value)


def _whole(low: int, high: int) -> Callable[[str, object], int]:
    def parse(text: str, prompts) -> int:
        if not re.fullmatch(r"[0-9]+", text) or not low <= int(text) <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return int(text)

    return parse


def _flag(text: str, prompts) -> bool:
    if text not in ("yes", "no"):
        raise ValueError("expected yes or no")
    return text == "yes"


def _prompt(text: str, prompts) -> str:
    if text != SILENT:
        _check_prompt(text, prompts)
    return text


def _check_prompt(name: str, prompts) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a prompt name (letters, digits, - and _)")
    if prompts is not None and not prompts.has(name):
        raise ValueError(f"unknown prompt {name!r}")


_TRIES, _DIGITS = _whole(1, 20), _whole(1, 64)
_COLLECT = {"min": _DIGITS, "max": _DIGITS, "first": _seconds, "inter": _seconds,
            "timeout": _seconds}


@dataclass(frozen=True)
class _Spec:
    args: str  # "none", "some" (at least one prompt name) or "any"
    keys: dict[str, Callable[[str, object], object]]


SPECS = {
    "play": _Spec("some", {"barge": _flag, "timeout": _seconds}),
    "pin": _Spec("none", {"tries": _TRIES, "prompt": _prompt, "wrong": _prompt, **_COLLECT}),
    "ani": _Spec("none", {"timeout": _seconds}),
    "credit": _Spec("none", {"prompt": _prompt, "timeout": _seconds}),
    "balance": _Spec("none", {"prompt": _prompt, "timeout": _seconds}),
    "destination": _Spec("none", {"tries": _TRIES, "prompt": _prompt, **_COLLECT}),
    "minutes": _Spec("none", {"prompt": _prompt, "timeout": _seconds}),
    "connect": _Spec("none", {"prompt": _prompt, "failed": _prompt}),
    "hangup": _Spec("any", {}),
}


def parse(text: str, filename: str, prompts=None) -> Script:
    """Parse a script; ``ConfigError`` lists every problem as ``<file>:<line>: <problem>``.

    With ``prompts`` (a ``Prompts``), every prompt name must exist.
    """
    errors: list[str] = []
    steps: list[Step] = []
    ended_at = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        problems: list[str] = []
        step = _parse_line(line, number, prompts, problems)
        if step is not None and ended_at:
            problems.append(f"{step.kind} after the hangup on line {ended_at} is never reached")
        errors += [f"{filename}:{number}: {problem}" for problem in problems]
        if step is not None:
            steps.append(step)
            if step.kind == "hangup" and not ended_at:
                ended_at = number
    if not steps and not errors:
        errors.append(f"{filename}:1: the script has no steps")
    if errors:
        raise ConfigError(errors)
    return Script(_script_name(filename), filename, tuple(steps))


def _parse_line(line: str, number: int, prompts, problems: list[str]) -> Step | None:
    kind, *tokens = line.split()
    spec = SPECS.get(kind)
    if spec is None:
        problems.append(f"unknown step {kind!r} (steps: {', '.join(SPECS)})")
        return None
    args: list[str] = []
    options: dict[str, object] = {}
    stray: list[str] = []
    for token in tokens:
        if "=" not in token:
            if spec.args == "none":
                stray.append(token)
                continue
            try:
                _check_prompt(token, prompts)
                args.append(token)
            except ValueError as e:
                problems.append(f"{kind}: {e}")
            continue
        key, _, value = token.partition("=")
        parse_value = spec.keys.get(key)
        if parse_value is None:
            known = ", ".join(spec.keys) or "none"
            problems.append(f"{kind}: unknown key {key!r} (keys: {known})")
        elif key in options:
            problems.append(f"{kind}: {key} given twice")
        else:
            try:
                options[key] = parse_value(value, prompts)
            except ValueError as e:
                problems.append(f"{kind}: bad {key}={value!r}: {e}")
    if stray:
        problems.append(f"{kind} takes no prompt names ({' '.join(stray)}),"
                        " only key=value options")
    if spec.args == "some" and not any("=" not in t for t in tokens):
        problems.append(f"{kind} needs at least one prompt name")
    low, high = options.get("min"), options.get("max")
    if low is not None and high is not None and low > high:
        problems.append(f"{kind}: min={low} is more than max={high}")
    return Step(kind, tuple(args), options, number)


def _script_name(filename: str) -> str:
    return os.path.splitext(os.path.basename(filename))[0]


def load_scripts(folder: str | None, prompts) -> dict[str, Script]:
    """The built-in scripts, then every ``<name>.ivr`` in ``folder`` (overriding a built-in
    of the same name). ``ConfigError`` lists the problems of every file at once."""
    errors: list[str] = []
    scripts: dict[str, Script] = {}
    files = sorted(glob.glob(os.path.join(BUILTIN, "*.ivr")))
    if folder is not None:
        if os.path.isdir(folder):
            files += sorted(glob.glob(os.path.join(glob.escape(folder), "*.ivr")))
        else:
            errors.append(f"{folder}: no such folder of IVR scripts")
    for path in files:
        name = _script_name(path)
        if not _NAME.match(name):
            errors.append(f"{path}: {name!r} is not a script name (letters, digits, - and _)")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            errors.append(f"{path}: cannot read the script: {e}")
            continue
        try:
            scripts[name] = parse(text, path, prompts)
        except ConfigError as e:
            errors += e.errors
    if errors:
        raise ConfigError(errors)
    return scripts
