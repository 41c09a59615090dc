"""Outages and crashes: Postgres, Redis and processes going away."""
