"""Just enough SIP message parsing for the worker: header values and message bodies."""

from __future__ import annotations

import re

# Compact header forms (RFC 3261 §7.3.3) that matter to mizu.
_COMPACT = {"f": "from", "t": "to", "i": "call-id", "c": "content-type", "l": "content-length",
            "m": "contact", "v": "via"}
_URI_USER = re.compile(r"^\s*(?:sips?|tel):\+?([^@;>]*)", re.I)
_ANGLE_URI = re.compile(r"<([^>]*)>")
_BARE_URI = re.compile(r"^\s*([^;\s]+)")


def split_message(raw: str) -> tuple[str, dict[str, list[str]], str]:
    """(start line, lower-cased header name → values, body) of one SIP message."""
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers: dict[str, list[str]] = {}
    current = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and current is not None:  # folded continuation
            headers[current][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        name = _COMPACT.get(name, name)
        headers.setdefault(name, []).append(value.strip())
        current = name
    return lines[0].strip() if lines else "", headers, body


def header_lines(headers: dict[str, list[str]], names) -> list[str]:
    """Every value of the headers ``names``, as ``Name: value`` lines in that order."""
    return [f"{_CANONICAL.get(name, name.title())}: {value}"
            for name in names for value in headers.get(name, [])]


_CANONICAL = {"call-id": "Call-ID", "cseq": "CSeq", "via": "Via", "from": "From", "to": "To"}


def via_transport(via: str) -> str:
    """The transport of a Via value (``SIP/2.0/UDP host``) in lower case, or ''."""
    m = re.match(r"\s*SIP\s*/\s*2\.0\s*/\s*(\w+)", via, re.I)
    return m.group(1).lower() if m else ""


def audio_streams(sdp: str) -> int:
    """How many audio streams an SDP body offers."""
    return len(re.findall(r"^m=audio\s", sdp, re.M | re.I))


def stateless_response(request_lines: list[str], code: int, reason: str, tag: str,
                       extra: tuple[str, ...] = ()) -> bytes:
    """A final response built from a request's Via/From/To/Call-ID/CSeq header lines."""
    lines = [f"SIP/2.0 {code} {reason}"]
    for line in request_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "to" and ";tag=" not in value.lower():
            line = f"{line};tag={tag}"
        lines.append(line)
    lines += list(extra) + ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode("utf-8", "replace")


def header(headers: dict[str, list[str]], name: str) -> str:
    """The first value of a header, or an empty string."""
    values = headers.get(name.lower())
    return values[0] if values else ""


def request_uri(start_line: str) -> str:
    """The request-URI of a request line (``INVITE sip:x@y SIP/2.0``)."""
    parts = start_line.split()
    return parts[1] if len(parts) == 3 else ""


def address_uri(value: str) -> str:
    """The URI inside a From/To/P-Asserted-Identity value (``"A" <sip:a@b>;tag=1``)."""
    m = _ANGLE_URI.search(value) or _BARE_URI.match(value)
    return m.group(1).strip() if m else ""


def uri_user(uri: str) -> str:
    """The user part of a SIP or tel URI, without a leading ``+``."""
    m = _URI_USER.match(uri)
    return m.group(1) if m else ""


def info_digit(content_type: str, body: str) -> str | None:
    """The digit of a SIP INFO body: ``application/dtmf-relay`` or ``application/dtmf``."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/dtmf-relay":
        m = re.search(r"^\s*Signal\s*=\s*(\S)", body, re.I | re.M)
        return _digit(m.group(1)) if m else None
    if kind == "application/dtmf":
        return _digit(body.strip()[:2])
    return None


def _digit(text: str) -> str | None:
    text = text.strip().upper()
    if text in ("10",):
        return "*"
    if text in ("11",):
        return "#"
    return text if len(text) == 1 and text in "0123456789*#ABCD" else None
