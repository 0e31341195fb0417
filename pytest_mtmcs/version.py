"""The version of pytest-mtmcs (one place, read by the package, reports and the CLI)."""

__version__ = "0.1.0"
