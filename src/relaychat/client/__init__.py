"""relaychat's client side: a full-duplex library (:mod:`.connection`) and a terminal client
(:mod:`.tui`, imported on demand because it needs prompt_toolkit)."""

from relaychat.client.connection import (
    AuthenticationFailed,
    Batch,
    ClientLimits,
    ClientProtocol,
    Connection,
    ConnectionClosed,
    Incoming,
    NotSupported,
    PendingResponse,
    Phase,
    RecentMsgids,
    RegistrationError,
    RequestError,
    Response,
    SaslCredentials,
    TooManyRequests,
    connect,
)
from relaychat.protocol.client import ACCOUNT_REGISTRATION, DEFAULT_CAPS, MultilineLimits

__all__ = [
    "ACCOUNT_REGISTRATION",
    "DEFAULT_CAPS",
    "AuthenticationFailed",
    "Batch",
    "ClientLimits",
    "ClientProtocol",
    "Connection",
    "ConnectionClosed",
    "Incoming",
    "MultilineLimits",
    "NotSupported",
    "PendingResponse",
    "Phase",
    "RecentMsgids",
    "RegistrationError",
    "RequestError",
    "Response",
    "SaslCredentials",
    "TooManyRequests",
    "connect",
]
