"""Conformance suites run against lgql's GraphQL endpoint (graphql-http audit via Node)."""
