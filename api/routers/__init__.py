"""One router per resource: search, items, system (health, readiness, stats, metrics)."""
