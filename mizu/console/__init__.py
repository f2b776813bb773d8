"""The telnet admin console."""
