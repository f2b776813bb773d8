"""What Core counts for the metrics."""

from twisted.internet import defer

from mizu.dispatch.records import Core
from mizu.metrics import Metrics


class Ivr:
    def __init__(self):
        self.done = defer.Deferred()

    def run(self):
        return self.done


def test_ivr_sessions_are_counted_while_they_run():
    metrics = Metrics()
    core = Core(None, None, None, "node", None, None, None, metrics)
    first, second = Ivr(), Ivr()
    core.run_ivr(first)
    failed = core.run_ivr(second)
    assert "mizu_ivr_sessions 2.0" in metrics.render().decode()
    first.done.callback("hangup")
    second.done.errback(RuntimeError("gone"))
    failed.addErrback(lambda f: None)
    assert "mizu_ivr_sessions 0.0" in metrics.render().decode()
