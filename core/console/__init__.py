"""The web console at ``/ui/``: server-rendered pages over the facade the API reads,
behind a login cookie derived from the gateway token (see :mod:`core.console.routes`)."""

from core.console.routes import mount_console

__all__ = ["mount_console"]
