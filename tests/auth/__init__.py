"""Custom auth: handlers, filters, two-user isolation."""
