"""mizu: a Twisted callback and prepaid calling-card server."""

__version__ = "0.1.0"
