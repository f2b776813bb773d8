"""The IVR engine: scripts, prompts and one session per call."""
