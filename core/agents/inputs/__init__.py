"""An agent's named inputs, gathered before its prompt renders: HTTP, feeds, commands, files."""
