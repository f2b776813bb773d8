"""One pjsua2 worker process as the controller sees it: spawn, AMP link, death."""

from __future__ import annotations

import os
import socket
import sys

from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from mizu.errors import TelephonyError
from mizu.sip import amp as cmd
from mizu.sip.link import ControllerLink

log = Logger()
HELLO_TIMEOUT = 20.0  # a worker that has not said Hello by then is killed and restarted
# A running worker is asked Hello every PING_INTERVAL s; one that has not answered for
# HELLO_TIMEOUT s is hung (a deadlocked pjsua, SIGSTOP) and is killed, so that its calls
# end and it is replaced instead of holding them, and the callbacks on them, forever.
PING_INTERVAL = 5.0


class WorkerProcess(protocol.ProcessProtocol):
    """A spawned ``mizu.sip.worker``; ``ended`` fires when it exits (``end_reason`` says why)."""

    def __init__(self, index: int, host: str, port: int, public_address: str,
                 max_calls: int, sink, reactor, log_level: int = 1):
        self.index, self.host, self.port = index, host, port
        self.public_address, self.max_calls = public_address, max_calls
        self.log_level = log_level
        self.last_error = ""  # the worker's last line on stderr
        self.sink = sink
        self._reactor = reactor
        self.pid: int | None = None
        self.capacity = 0
        self.engine = ""  # e.g. wheel-2.15.1, pjproject-2.17+mizu1: from its Hello
        self.setup_rate = 0.0  # outgoing setups a second it takes
        self.link: ControllerLink | None = None
        self.ended = defer.Deferred()
        self.end_reason = None
        self._partial = {1: b"", 2: b""}
        self._pinger = None
        self._ping_since: float | None = None  # when the unanswered ping was sent

    def spawn(self) -> defer.Deferred:
        """Start the process with an AMP socket on its fd 3; fires once it said Hello."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [sys.executable, "-m", "mizu.sip.worker", "--host", self.host,
                "--port", str(self.port), "--max-calls", str(self.max_calls),
                "--log-level", str(self.log_level), "--fd", "3"]
        if self.public_address:
            args += ["--public-address", self.public_address]
        self._reactor.spawnProcess(self, sys.executable, args, env=os.environ.copy(),
                                   childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()})
        theirs.close()
        self.link = ControllerLink(self.sink)
        self._reactor.adoptStreamConnection(
            ours.fileno(), socket.AF_UNIX, protocol.Factory.forProtocol(lambda: self.link))
        ours.close()
        result = defer.Deferred()
        timer = self._reactor.callLater(HELLO_TIMEOUT, self._no_hello)

        def said_hello(info):
            if timer.active():
                timer.cancel()
            if not result.called:
                result.callback(self._hello(info))

        def ended(_):
            if timer.active():
                timer.cancel()
            if not result.called:  # ended before saying Hello: its last complaint says why
                why = self.last_error or self.end_reason.getErrorMessage()
                result.errback(TelephonyError(why))

        # A lost link fails Hello too; the process's end then reports the reason.
        self.link.callRemote(cmd.Hello).addCallbacks(said_hello, lambda _: None)
        self.ended.addCallback(ended)
        return result

    def _no_hello(self):
        log.error("sip worker {n} said nothing for {s} s; killing it", n=self.index,
                  s=HELLO_TIMEOUT)
        self._kill()

    def _hello(self, info):
        self.pid, self.capacity = info["pid"], info["capacity"]
        self.engine, self.setup_rate = info["engine"], info["setup_rate"]
        log.info("sip worker {n} pid={pid} port={port} capacity={capacity} engine={engine}",
                 n=self.index, pid=self.pid, port=self.port, capacity=self.capacity,
                 engine=self.engine)
        if not self.ended.called:
            self._pinger = task.LoopingCall(self._ping)
            self._pinger.clock = self._reactor
            self._pinger.start(PING_INTERVAL, now=False)
        return self

    def _ping(self):
        now = self._reactor.seconds()
        if self._ping_since is not None:
            if now - self._ping_since >= HELLO_TIMEOUT:
                log.error("sip worker {n} pid={pid} has not answered for {s:.0f} s; killing"
                          " it", n=self.index, pid=self.pid, s=now - self._ping_since)
                self._stop_pinging()
                self._kill()
            return
        if self.ended.called or self._link_lost():
            return
        self._ping_since = now

        def answered(_):
            self._ping_since = None

        self.link.callRemote(cmd.Hello).addCallbacks(answered, lambda _: None)

    def _stop_pinging(self):
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self._pinger = None

    def connectionMade(self):
        self.pid = self.transport.pid
        self.transport.closeStdin()

    def childDataReceived(self, fd, data):
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if not text.strip():
                continue
            if fd == 2:  # Python's tracebacks and the worker's own complaints
                self.last_error = text.strip()
                log.warn("sip worker {n}: {line}", n=self.index, line=text)
            else:  # pjsua's log, at the level [sip] log_level asks for
                log.info("sip worker {n}: {line}", n=self.index, line=text)

    def processEnded(self, reason):
        self._stop_pinging()
        if self.link is not None and self.link.transport is not None:
            self.link.transport.loseConnection()
        log.info("sip worker {n} pid={pid} ended: {reason}", n=self.index, pid=self.pid,
                 reason=reason.getErrorMessage())
        self.end_reason = reason
        self.capacity = 0  # status shows calls=0/0 until the replacement said Hello
        self.engine = ""
        self.ended.callback(None)  # a Failure here would be an errback nobody handles
        self.sink.workerEnded(self, reason)

    @property
    def alive(self) -> bool:
        """Said Hello, has not exited and its link is up (a killed worker's socket closes
        a moment before its exit is reaped: no new call goes to it meanwhile)."""
        return bool(self.capacity) and not self.ended.called and not self._link_lost()

    def _link_lost(self) -> bool:
        return self.link is None or getattr(self.link, "lost", False)

    def call(self, command, **kwargs) -> defer.Deferred:
        """Send one command to the worker."""
        if self.ended.called or self._link_lost():
            return defer.fail(TelephonyError(f"sip worker {self.index} is not running"))
        return self.link.callRemote(command, **kwargs)

    def stop(self, grace: float) -> defer.Deferred:
        """Close the link (the worker then shuts down by itself); SIGKILL after ``grace``."""
        self._stop_pinging()
        if self.ended.called:
            return defer.succeed(None)
        if self.link is not None and self.link.transport is not None:
            self.link.transport.loseConnection()
        killer = self._reactor.callLater(grace, self._kill)
        done = defer.Deferred()

        def finished(_):
            if killer.active():
                killer.cancel()
            done.callback(None)

        self.ended.addBoth(finished)
        return done

    def _kill(self):
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass
