"""What mizu counts for Prometheus (``/metrics``): one registry per running server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The counters, gauges and histograms of one mizu; ``render()`` is the exposition."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mizu_callback_requests", "Callback requests stored, by source",
                                ["source"], registry=r)
        self.finished = Counter("mizu_calls_finished", "Calls that ended, by final status",
                                ["status"], registry=r)
        self.charged = Counter("mizu_credit_charged", "Credit charged to users", registry=r)
        self.live = Gauge("mizu_live_calls", "Call sessions in progress", registry=r)
        self.ivr = Gauge("mizu_ivr_sessions", "IVR sessions running", registry=r)
        self.free_slots = Gauge("mizu_free_call_slots", "SIP call slots free now", registry=r)
        self.http = Histogram("mizu_http_request_seconds", "HTTP API requests, by API and "
                              "status", ["api", "status"], registry=r)
        self.refused = Counter("mizu_http_refused", "HTTP requests refused by a limit, by "
                               "status (0: a connection over max_connections)", ["status"],
                               registry=r)
        self.sms = Counter("mizu_sms_messages", "Inbound SMS (deliver_sm), by outcome",
                           ["outcome"], registry=r)
        self.submit = Histogram("mizu_submit_seconds", "Time to authenticate and store a "
                                "callback request", registry=r)

    def watch(self, live, free_slots) -> None:
        """Read the two gauges from these callables at each scrape."""
        self.live.set_function(live)
        self.free_slots.set_function(free_slots)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)
