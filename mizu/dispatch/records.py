"""What a call session is handed and what it records about its legs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Core:
    """What every call session needs, handed down by the dispatcher."""

    telephony: object
    store: object
    clock: object
    node: str
    settings: object  # callable: the Settings in force
    tables: object  # callable: the Tables in force
    config: object  # callable: the Config in force
    metrics: object = None  # mizu.metrics.Metrics, when counted

    def run_ivr(self, ivr):
        """``ivr.run()``, counted in ``mizu_ivr_sessions`` while it runs."""
        if self.metrics is None:
            return ivr.run()
        gauge = self.metrics.ivr
        gauge.inc()
        d = ivr.run()
        d.addBoth(lambda result: (gauge.dec(), result)[1])
        return d


@dataclass
class LegRecord:
    """What a leg's CDR needs, gathered while it runs."""

    kind: str  # 'A', 'B' or 'in'
    caller: str
    callee: str
    tariff: object = None
    start: float = 0.0
    answered: float | None = None
    ended: float | None = None
    result: str = ""
    cdr_id: int | None = None

    def duration(self, now: float) -> float:
        if self.answered is None:
            return 0.0
        return max(0.0, (self.ended if self.ended is not None else now) - self.answered)


def b_outcome(cause, answered: bool, cut: bool) -> str:
    """The outcome of a forwarded call, for the IVR and the callback's reason."""
    if answered:
        return "cut" if cut else "completed"
    return {"busy": "busy", "no_answer": "no_answer", "cancelled": "cancelled"}.get(
        cause.cause if cause else "", "failed")
