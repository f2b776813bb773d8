"""``tb_rates``, ``tb_routes`` and ``tb_ccampaigns``: what the core loads at start and reload."""

from __future__ import annotations

from twisted.internet import defer


class Catalog:
    """Reads the tariff, the outbound routes and the campaigns as whole tables."""

    def __init__(self, pool):
        self._pool = pool

    def rates(self) -> defer.Deferred:
        """Every rate as ``(prefix, price, initblock, increment, connectfee)``."""
        return self._pool.runQuery(
            "SELECT prefix, price, initblock, increment, connectfee FROM tb_rates"
            " ORDER BY prefix, id")

    @defer.inlineCallbacks
    def routes(self):
        """Every route as ``(prefix, gateway)``."""
        rows = yield self._pool.runQuery(
            "SELECT prefix, gateway FROM tb_routes ORDER BY prefix, id")
        return [tuple(r) for r in rows]

    @defer.inlineCallbacks
    def campaigns(self):
        """Every campaign as ``{id: (name, ivrscript)}``."""
        rows = yield self._pool.runQuery("SELECT id, name, ivrscript FROM tb_ccampaigns")
        return {id: (name, script) for id, name, script in rows}
