"""Tidings: a real-time messaging server speaking the Centrifugo client protocol v2."""

__version__ = "0.1.0"

__all__ = ["__version__"]
