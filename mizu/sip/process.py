"""One pjsua2 worker process as the controller sees it: spawn, AMP link, death."""

from __future__ import annotations

import os
import socket
import sys

from twisted.internet import defer, protocol
from twisted.logger import Logger

from mizu.errors import TelephonyError
from mizu.sip import amp as cmd
from mizu.sip.link import ControllerLink

log = Logger()
HELLO_TIMEOUT = 20.0  # a worker that has not said Hello by then is killed and restarted


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
        return self

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
        """Said Hello and has not exited."""
        return bool(self.capacity) and not self.ended.called

    def call(self, command, **kwargs) -> defer.Deferred:
        """Send one command to the worker."""
        if self.link is None or self.ended.called:
            return defer.fail(TelephonyError(f"sip worker {self.index} is not running"))
        return self.link.callRemote(command, **kwargs)

    def stop(self, grace: float) -> defer.Deferred:
        """Close the link (the worker then shuts down by itself); SIGKILL after ``grace``."""
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
