"""pytest-mtmcs: MTMCS-Bench contextual-safety evaluation as a pytest plugin."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
