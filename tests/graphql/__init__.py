"""The GraphQL API: resources, runs, errors, transports and the spec."""
