"""Real GraphQL clients (npm and Python) driven from tests: see `node_client.py`."""
