"""The web console at ``/ui/``: server-rendered pages over the facade the API reads,
behind a login cookie derived from the gateway token. The gateway mounts it with
:func:`core.console.routes.mount_console`."""
