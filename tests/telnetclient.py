"""Drives the Debian ``telnet`` program on a pseudo-terminal, as an operator would."""

import re
import shutil

import pexpect

REPLY_END = re.compile(rb"^(OK|ERROR: [^\r\n]*)\r*$", re.M)


class TelnetSession:
    """One real telnet client connected to the console."""

    def __init__(self, port: int, timeout: float = 10):
        binary = shutil.which("telnet")
        assert binary, "the telnet client is missing: ./run-tests installs it"
        self.child = pexpect.spawn(binary, ["127.0.0.1", str(port)], timeout=timeout)
        self._at_username = False

    def login(self, user: str, password: str) -> bytes:
        """Answer the Username and Password prompts; returns what came after.

        ``refused`` when the server closed before any prompt; what it said (as for
        ``closed``) is then in ``self.child.before``.
        """
        if not self._at_username:
            if self.child.expect([b"Username: ", pexpect.EOF]) == 1:
                return b"refused"
        self.child.sendline(user.encode())
        self.child.expect(b"Password: ")
        self.child.sendline(password.encode())
        index = self.child.expect([b"mizu> ", b"Username: ", pexpect.EOF])
        self._at_username = index == 1
        return [b"prompt", b"again", b"closed"][index]

    def command(self, line: str) -> tuple[list[str], str]:
        """Send one command line; returns (reply lines, final OK/ERROR line)."""
        self.child.sendline(line.encode())
        self.child.expect(REPLY_END)
        body = self.child.before.decode("utf-8", "replace").replace("\r", "").split("\n")
        final = self.child.match.group(1).decode()
        # the terminal echoes the typed line first
        lines = [entry.removeprefix("mizu> ") for entry in body]
        lines = [entry for entry in lines if entry.strip() and entry.strip() != line.strip()]
        if line.strip().lower() != "quit":
            self.child.expect(b"mizu> ")
        return lines, final

    def closed(self) -> bool:
        """True once the server has closed the connection."""
        self.child.expect(pexpect.EOF)
        return True

    def close(self):
        self.child.close(force=True)
