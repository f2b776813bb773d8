"""Billing: tariffs by longest prefix, costs, and how long a call may last on its credit."""
