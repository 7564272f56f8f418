"""The HTTP gateway: health, status, usage, routes, metrics and an OpenAI-compatible API."""

from core.gateway.server import Gateway, PortInUse, create_app

__all__ = ["Gateway", "PortInUse", "create_app"]
