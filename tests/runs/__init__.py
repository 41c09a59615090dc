"""Runs through the queue and the worker: ordering, schedules, webhooks, the services."""
