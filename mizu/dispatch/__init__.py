"""The callback dispatcher: one path for every trigger, the queue, the policy, the call flows."""
