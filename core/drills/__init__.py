"""Failure drills: faults injected into one model's transport, and what they showed."""
