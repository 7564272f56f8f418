"""Running it: serve, the service unit, doctor, probes, logs, metrics, process identity."""
