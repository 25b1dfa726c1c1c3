"""relaychat's client side: a full-duplex library (:mod:`.connection`) and a terminal client
(:mod:`.tui`, imported on demand because it needs prompt_toolkit)."""

from relaychat.client.connection import (
    ClientProtocol,
    Connection,
    ConnectionClosed,
    Phase,
    RegistrationError,
    connect,
)

__all__ = [
    "ClientProtocol",
    "Connection",
    "ConnectionClosed",
    "Phase",
    "RegistrationError",
    "connect",
]
