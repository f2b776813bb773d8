"""A logged-in console session: one command a line (the login is in ``login``).

Every reply ends with a line ``OK`` or ``ERROR: <reason>``, then the prompt. Commands
are ``do_<name>`` methods of ``ConsoleProtocol``; their docstrings are the help.
"""

from __future__ import annotations

import inspect
import math
import re
import shlex
from collections.abc import Iterable

from twisted.conch import telnet
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from mizu.dispatch.request import CallbackRequest
from mizu.errors import CommandError, ConfigError, MizuError

log = Logger()

MAX_LINE = 4096
MAX_QUEUED = 100  # lines received ahead of their answers
SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_TOO_LONG = object()  # stands in the queue for a refused line
PROMPT = b"mizu> "


@implementer(telnet.ITelnetProtocol, IPushProducer)
class ConsoleProtocol(TimeoutMixin, telnet.TelnetProtocol):
    """One logged-in console session, driving the server through its public methods.

    It is closed after ``idle_timeout`` seconds without input (0: never). Memory stays
    bounded against a peer that sends without reading: the session is the producer of its
    TCP connection, so while the answers wait in a full send buffer no more lines run and
    no more input is read; more than ``MAX_QUEUED`` lines waiting end the session.
    """

    def __init__(self, server, user: str, clock, idle_timeout: float = 0):
        self.server = server
        self.user = user
        self.clock = clock
        self.callLater = clock.callLater
        self.idle_timeout = idle_timeout
        self._buffer = b""
        self._queue: list[str | object] = []
        self._busy = False
        self._closed = False
        self._discarding = False
        self._paused = False
        self._tcp = None

    def connectionMade(self):
        log.info("console user {user} logged in", user=self.user)
        self._write_lines(["mizu console. Type help for the commands."])
        self.transport.write(PROMPT)
        self.setTimeout(self.idle_timeout or None)
        tcp = getattr(self.transport, "transport", None)  # under the telnet layer
        if tcp is not None and getattr(tcp, "producer", None) is None:
            tcp.registerProducer(self, True)
            self._tcp = tcp

    def connectionLost(self, reason=None):
        self._closed = True
        self.setTimeout(None)

    # -- IPushProducer: the TCP send buffer is full (or has room again) ------------------
    def pauseProducing(self):
        self._paused = True
        self._tcp.pauseProducing()  # read no more input meanwhile

    def resumeProducing(self):
        self._paused = False
        self._tcp.resumeProducing()
        self._drain()

    def stopProducing(self):
        self._closed = True

    def timeoutConnection(self):
        log.info("console user {user} idle for {s} s: session closed",
                 user=self.user, s=self.idle_timeout)
        self._write_lines(["", f"ERROR: no input for {self.idle_timeout:g} s: session closed"])
        self._closed = True
        self.transport.loseConnection()

    def dataReceived(self, data: bytes):
        self.resetTimeout()
        if self._closed:
            return
        # The telnet layer turns CR LF into LF and CR NUL (Return on some clients) into CR.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        while data:
            head, newline, data = data.partition(b"\n")
            if self._discarding:
                # The rest of a line already refused as too long: never run its tail.
                self._discarding = not newline
                continue
            self._buffer += head
            if len(self._buffer) > MAX_LINE:
                self._buffer = b""
                self._discarding = not newline
                self._queue.append(_TOO_LONG)
            elif newline:
                line, self._buffer = self._buffer, b""
                self._queue.append(line.rstrip(b"\r").decode("utf-8", "replace"))
            self._drain()  # lines pile up only behind a command that is still running
            if self._closed:
                return
            if len(self._queue) > MAX_QUEUED:
                self._overflow()
                return

    def _overflow(self):
        """More lines waiting than a person pastes: answer once and end the session, so
        that a peer sending commands without reading the answers cannot grow memory."""
        log.warn("console user {user} sent more than {n} lines ahead of the answers: "
                 "session closed", user=self.user, n=MAX_QUEUED)
        self._queue.clear()
        self._write_lines(["", f"ERROR: more than {MAX_QUEUED} lines waiting for an answer: "
                               "session closed"])
        self._closed = True
        close = getattr(self.transport, "closeAfterWrite", None)
        if close is not None:
            close(self.callLater)
        else:
            self.transport.loseConnection()

    def _drain(self):
        while self._queue and not self._busy and not self._closed and not self._paused:
            line = self._queue.pop(0)
            self._busy = True
            d = defer.maybeDeferred(self._execute, line)
            d.addCallbacks(self._reply_ok, self._reply_error)
            d.addBoth(self._done)

    def _done(self, _):
        self._busy = False
        if not self._closed:
            self.transport.write(PROMPT)
            self._drain()

    def _execute(self, line: str):
        if line is _TOO_LONG:
            raise CommandError(f"line longer than {MAX_LINE} characters")
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise CommandError(f"cannot parse the line: {e}") from None
        if not words:
            return []
        name, args = words[0].lower(), words[1:]
        handler = getattr(self, f"do_{name}", None)
        if handler is None:
            raise CommandError(f"unknown command {words[0]!r}; type help")
        try:
            inspect.signature(handler).bind(*args)
        except TypeError:
            raise CommandError(f"wrong arguments; usage: {self._doc(name)[0]}") from None
        return handler(*args)

    def _doc(self, name: str) -> list[str]:
        doc = getattr(self, f"do_{name}").__doc__ or name
        return [line.strip() for line in doc.strip().splitlines() if line.strip()]

    def _reply_ok(self, lines: Iterable[str] | None):
        self._write_lines(list(lines or []) + ["OK"])

    def _reply_error(self, failure):
        if failure.check(ConfigError):
            reason = "; ".join(failure.value.errors)
        elif failure.check(MizuError):
            reason = str(failure.value)
        else:
            log.failure("console command failed", failure)
            reason = f"internal error: {failure.getErrorMessage()}"
        self._write_lines([f"ERROR: {reason}"])

    def _write_lines(self, lines: list[str]):
        if not self._closed:
            # TelnetTransport turns each \n into CR LF on the wire.
            self.transport.write("".join(f"{line}\n" for line in lines).encode("utf-8"))

    # -- commands ------------------------------------------------------------------

    def do_help(self, command=None):
        """help [<command>] -- list the commands, or show how to use one"""
        if command is not None:
            if not hasattr(self, f"do_{command.lower()}"):
                raise CommandError(f"unknown command {command!r}")
            return self._doc(command.lower())
        names = sorted(n[3:] for n in dir(self) if n.startswith("do_"))
        return [self._doc(name)[0] for name in names]

    def do_quit(self):
        """quit -- end this session"""
        self._write_lines(["bye", "OK"])
        self._closed = True
        self.transport.loseConnection()
        return defer.Deferred()  # never fires: the session is over

    def do_status(self):
        """status -- the server, its database and its SIP workers"""
        return self.server.status_lines()

    def do_calls(self):
        """calls -- the live call legs"""
        lines = self.server.call_lines()
        return lines + [f"{len(lines)} live leg(s)"]

    def do_reload(self):
        """reload -- re-read config, tb_config, rates, routes, campaigns, scripts; calls go on"""
        return self.server.reload()

    @defer.inlineCallbacks
    def do_config(self, name=None, *value):
        """config [<name> [<value>]] -- show the global settings, one, or set one at once"""
        if name is None:
            return [f"{key} = {val}" for key, val in self.server.settings.items()]
        if not value:
            shown = self.server.settings.get(name)
            if shown is None:
                raise CommandError(f"no setting named {name!r}")
            return [f"{name} = {shown}"]
        if not SETTING_NAME.fullmatch(name):
            raise CommandError(f"{name!r} is not a setting name (a letter, then letters, "
                               "digits or _, at most 64)")
        settings = yield self.server.set_setting(name, " ".join(value))
        return [f"{name} = {settings.get(name)}"]

    def _ban_lines(self, bans) -> list[str]:
        now = self.clock.seconds()
        return [f"{ban.kind} {ban.address} banned for {math.ceil(ban.until - now)} s more"
                for ban in bans]

    def do_banned(self):
        """banned -- the addresses banned after failed logins, and for how long"""
        bans = self.server.bans.active()
        return self._ban_lines(bans) + [f"{len(bans)} ban(s) in force"]

    def do_delbanned(self, address=None):
        """delbanned [<address>] -- lift every ban, or the bans on one address"""
        lifted = self.server.bans.clear(address)
        log.info("console user {user} lifted {n} ban(s) on {address}", user=self.user,
                 n=len(lifted), address=address or "every address")
        return self._ban_lines(lifted) + [f"{len(lifted)} ban(s) lifted"]

    @defer.inlineCallbacks
    def do_callback(self, anum, *rest):
        """callback <anum> [<bnum>] [user=<username>] -- queue a callback to anum; prints the id"""
        bnum, username = "", ""
        for word in rest:
            if word.lower().startswith("user="):
                username = word[5:]
            elif not bnum:
                bnum = word
            else:
                raise CommandError("usage: callback <anum> [<bnum>] [user=<username>]")
        request = CallbackRequest(anum=anum, bnum=bnum, source="console", username=username,
                                  trusted=True)
        cbid = yield self.server.dispatcher.submit(request)
        log.info("console user {user} requested callback {id}", user=self.user, id=cbid)
        return [f"callback {cbid} pending"]

    @defer.inlineCallbacks
    def do_callbacks(self, which="pending"):
        """callbacks [pending|all] -- the latest callback requests"""
        if which not in ("pending", "all"):
            raise CommandError("usage: callbacks [pending|all]")
        rows = yield self.server.store.callbacks.recent(which == "pending")
        lines = [f"{r.id} {r.status} {r.anum} -> {r.bnum or '-'} source={r.source} "
                 f"user={r.userid or '-'} attempts={r.attempts}"
                 + (f" reason={r.reason}" if r.reason else "") for r in rows]
        return lines + [f"{len(rows)} callback(s)"]

    def do_drain(self, what=None):
        """drain [cancel] -- stop taking calls (live calls finish), or take them again"""
        dispatcher = self.server.dispatcher
        if what == "cancel":
            dispatcher.resume()
            log.info("console user {user} cancelled the drain", user=self.user)
            return ["taking calls again"]
        if what is not None:
            raise CommandError("usage: drain [cancel]")
        live = dispatcher.drain()
        log.info("console user {user} drained the node", user=self.user)
        return [f"draining: {live} live call(s) left; no new calls"]

    def do_hangup(self, ident):
        """hangup <id> -- end a live call: a callback id or a session from calls"""
        session = self.server.dispatcher.session_for(ident)
        if session is None:
            raise CommandError(f"no live call {ident!r}")
        session.hangup()
        log.info("console user {user} hung up {key}", user=self.user, key=session.key)
        return [f"{session.key} hanging up"]
