"""Training scripts (accelerate-ready: one process on a CPU, or ``accelerate launch`` on several)."""
