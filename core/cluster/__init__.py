"""Several ``serve`` instances on one database: liveness, one leader, wake-ups, slots."""
