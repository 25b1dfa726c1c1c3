"""Whether to advertise the IRCv3 ``sts`` policy, decided from the listeners.

Theory of operation
-------------------
An STS policy tells clients to use TLS on a port from now on, for ``duration``
seconds: advertised with a certificate that clients do not trust (a
self-signed one from ``relaychat gencert``), it would lock every client that
honours it out of the server. So ``[sts] enabled = "auto"`` advertises only
when the TLS listener clients are sent to has a certificate that verifies
against the system's CA store, for a name it carries, today; ``"true"``
advertises whenever a TLS listener exists (the operator knows better: a
certificate from a private CA that the clients trust), ``"false"`` never.

The driver asks :func:`sts_policy` once the listeners are bound (``port = 0``
means the first TLS listener's real port) and again on REHASH (a renewed or
replaced certificate), off the core's thread: it reads files. The core only
gets the resulting :class:`~relaychat.protocol.caps.StsPolicy` (or None).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from relaychat.protocol.caps import StsPolicy

if TYPE_CHECKING:
    from relaychat.config import ListenConfig, StsConfig

__all__ = ["certificate_problem", "sts_policy", "system_roots"]


def sts_policy(
    sts: StsConfig,
    listen: Sequence[ListenConfig],
    ports: Sequence[int],
    roots: Sequence[x509.Certificate] | None = None,
) -> tuple[StsPolicy | None, str | None]:
    """The policy to advertise (or None) and why, for the log (None: nothing
    to say, STS is off or there is no TLS listener). ``ports``: the bound port
    of each listener, in order; ``roots``: the trusted CAs (None: the system's
    store)."""
    secure = [(item, port) for item, port in zip(listen, ports, strict=True) if item.tls]
    if sts.enabled == "false" or not secure:
        return None, None
    port = sts.port or secure[0][1]
    listener = next((item for item, bound in secure if bound == port), secure[0][0])
    if sts.enabled == "auto":
        problem = certificate_problem(listener.cert, roots)
        if problem is not None:
            return None, (
                f"not advertised: the certificate {listener.cert} {problem} "
                "([sts] enabled = true advertises it anyway)"
            )
    policy = StsPolicy(port, sts.duration, sts.preload)
    return policy, f"advertised (port={port}, duration={sts.duration})"


def certificate_problem(
    cert_file: str,
    roots: Sequence[x509.Certificate] | None = None,
    now: datetime.datetime | None = None,
) -> str | None:
    """What keeps clients from trusting ``cert_file`` (a PEM chain, leaf
    first), or None when it verifies against ``roots`` (None: the system's
    CA store) for one of the names it carries, at ``now``."""
    try:
        pem = Path(cert_file).read_bytes()
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return "is not a PEM certificate"
    leaf, intermediates = chain[0], chain[1:]
    when = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= when:
        return "has expired"
    if leaf.not_valid_before_utc > when:
        return "is not valid yet"
    names = _names(leaf)
    if not names:
        return "names no host (no subjectAltName)"
    trusted = system_roots() if roots is None else list(roots)
    if not trusted:
        return "cannot be checked: no system CA store found"
    store = Store(trusted)
    reason = ""
    for name in names:
        verifier = PolicyBuilder().store(store).time(when).build_server_verifier(name)
        try:
            verifier.verify(leaf, intermediates)
            return None
        except VerificationError as exc:
            reason = str(exc)
    return f"does not verify against the system's CA store ({reason})"


def _names(cert: x509.Certificate) -> list[x509.verification.Subject]:
    """The DNS names (a wildcard made concrete) and IP addresses it is for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[x509.verification.Subject] = []
    for dns in san.get_values_for_type(x509.DNSName):
        host = "sts-check" + dns[1:] if dns.startswith("*.") else dns
        try:
            names.append(x509.DNSName(host))
        except ValueError:
            continue
    for ip in san.get_values_for_type(x509.IPAddress):
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            names.append(x509.IPAddress(ip))
    return names


def system_roots() -> list[x509.Certificate]:
    """The CA certificates of the system's store (OpenSSL's default file, or
    its directory); empty when there is none."""
    paths = ssl.get_default_verify_paths()
    files: list[str] = []
    if paths.cafile and os.path.isfile(paths.cafile):
        files.append(paths.cafile)
    elif paths.capath and os.path.isdir(paths.capath):
        files.extend(
            os.path.join(paths.capath, name)
            for name in sorted(os.listdir(paths.capath))
            if name.endswith((".pem", ".crt")) or name[-2:-1] == "."
        )
    roots: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old roots with odd serial numbers warn
        for path in files:
            try:
                roots.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
            except (OSError, ValueError):
                continue
    return roots
