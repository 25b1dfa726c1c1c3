"""relaychat: an IRC server with two engines, a full-duplex client library and a terminal client."""

__version__ = "0.1.0"
__all__ = ["__version__"]
