"""``tb_config``: the global settings rows."""

from __future__ import annotations

from twisted.internet import defer


class ConfigTable:
    """Reads and writes ``tb_config`` name/value rows."""

    def __init__(self, pool):
        self._pool = pool

    @defer.inlineCallbacks
    def load(self):
        """Fires with every row as a ``{name: value}`` dict."""
        rows = yield self._pool.runQuery("SELECT name, value FROM tb_config")
        return {name: value for name, value in rows}

    def set(self, name: str, value: str) -> defer.Deferred:
        """Insert or replace one setting."""
        return self._pool.runOperation(
            "INSERT INTO tb_config (name, value) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            (name, value),
        )
