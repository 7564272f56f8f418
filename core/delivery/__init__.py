"""Delivery: the outbox (rows written before sending), the worker that sends them, the channels."""
