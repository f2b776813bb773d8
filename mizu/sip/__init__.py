"""SIP: pjsua2 worker processes and the bridge the core talks to."""
