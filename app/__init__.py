"""lgql: a GraphQL-first server for LangGraph agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lgql")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
