"""Inbound SMS over SMPP 3.4: mizu as an ESME bound to the operator's SMSC."""
