"""One root error with protocol-independent codes; each front end maps them to its wire form."""


class MizuError(Exception):
    """Root of every error mizu raises on purpose."""

    code = "error"

    def __str__(self) -> str:
        return self.args[0] if self.args else self.code


class ConfigError(MizuError):
    """A configuration that cannot be used; ``errors`` lists every problem found."""

    code = "config"

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


class StoreError(MizuError):
    """The database failed or could not be reached; wraps the driver's error.

    ``transient``: the same statement may succeed later (a lost connection, a deadlock, a
    full disk, a server shutting down), unlike a statement the server refuses as such."""

    code = "store"
    transient = False


class StoreUnavailable(StoreError):
    """No live database connection right now; the pool is reconnecting."""

    code = "store-unavailable"
    transient = True


class SchemaTooNew(StoreError):
    """The database schema was written by a newer mizu than this one."""

    code = "schema-too-new"


class CommandError(MizuError):
    """A console command with wrong arguments or one that could not be carried out."""

    code = "command"


class TelephonyError(MizuError):
    """A telephony operation failed (the SIP bridge and the fake raise the same ones)."""

    code = "telephony"


class NoCapacity(TelephonyError):
    """No call slot is free where the leg would have to go."""

    code = "no-capacity"


class LegGone(TelephonyError):
    """The leg has ended (or never existed); nothing more can be done with it."""

    code = "leg-gone"


class ShuttingDown(TelephonyError):
    """The node is stopping and takes no new calls."""

    code = "shutting-down"


class AuthenticationFailed(MizuError):
    """The requester could not be authenticated; nothing was stored."""

    code = "authentication"


class BadRequest(MizuError):
    """A request with a missing or malformed field; nothing was stored."""

    code = "bad-request"


class NotFound(MizuError):
    """The thing asked for does not exist."""

    code = "not-found"


class InsufficientCredit(MizuError):
    """The paying user's credit (less what live calls reserve) cannot cover the call."""

    code = "insufficient-credit"


class NoRoute(MizuError):
    """No rate (or no gateway) covers the number dialled."""

    code = "no-route"


class LimitReached(MizuError):
    """A fraud guard refused the request or the call: too many calls at once, too many
    callback requests in the last hour, or the user's spend for the day reached.
    ``retry_after``: whole seconds after which asking again may succeed, when known."""

    code = "limit"

    def __init__(self, reason: str, retry_after: int | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Blocked(NoRoute):
    """A number on the destination blocklist (premium-rate and fraud-risk ranges)."""

    code = "blocked"
