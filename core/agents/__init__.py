"""Agents: what runs them (runner, scheduler), what they keep (runs, sessions, state), inputs."""
