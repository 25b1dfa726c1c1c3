"""What the core sees of outgoing mail: a :class:`Mailer` Protocol, given by the
driver as ``core.mailer`` (SMTP in :mod:`relaychat.mail`). ``send`` blocks
(network): handlers call it only inside an Op's ``run``, on a worker thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from relaychat.config import EmailConfig

__all__ = ["MailError", "Mailer"]


class MailError(Exception):
    """The mail was not accepted for delivery (server down, refused, timeout).
    The message names the server and the reason, never the mail's text."""


class Mailer(Protocol):
    def send(self, settings: EmailConfig, to: str, subject: str, body: str) -> None:
        """Hand one plain-text mail to the server that ``settings`` names;
        returns once it is accepted, raises :class:`MailError` otherwise."""
        ...
