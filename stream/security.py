"""How every Kafka client of the project connects: TLS and SASL from the settings.

Production clusters nearly all require TLS, SASL or both (Confluent Cloud, MSK with SCRAM,
Aiven). One place turns ``ECM_SECURITY_PROTOCOL``, the SASL mechanism and credentials and
the TLS files into the arguments the clients take: :func:`connection` for aiokafka's and
kafka-python's producers, consumers and admin clients (they name them alike), and
:func:`faust_credentials` for the Faust app. Every client the project opens goes through
one of them, so a worker, the simulator, watch, the desk and the report connect the same
way.

The password comes from ``ECM_SASL_PASSWORD`` or, better, a file (``ECM_SASL_PASSWORD_FILE``,
read when a client is made, so a rotated secret is picked up by the next client). It is
never printed: the settings' repr leaves it out, and no message here names it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.errors import SettingsError

if TYPE_CHECKING:
    from stream.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def check(settings: Settings) -> None:
    """Refuse settings that cannot connect, at start, with the variable to fix."""
    protocol = settings.security_protocol
    if protocol not in PROTOCOLS:
        raise SettingsError(f"ECM_SECURITY_PROTOCOL must be one of {PROTOCOLS}, "
                            f"not {protocol!r}")
    if settings.sasl_mechanism not in MECHANISMS:
        raise SettingsError(f"ECM_SASL_MECHANISM must be one of {MECHANISMS}")
    if protocol.startswith("SASL"):
        if not settings.sasl_username:
            raise SettingsError(f"ECM_SECURITY_PROTOCOL={protocol} needs ECM_SASL_USERNAME")
        if bool(settings.sasl_password) == bool(settings.sasl_password_file):
            raise SettingsError(f"ECM_SECURITY_PROTOCOL={protocol} needs one of "
                                "ECM_SASL_PASSWORD and ECM_SASL_PASSWORD_FILE")
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise SettingsError("a client certificate needs both ECM_SSL_CERTFILE and "
                            "ECM_SSL_KEYFILE")
    if not uses_tls(settings) and (settings.ssl_cafile or settings.ssl_certfile):
        raise SettingsError(f"ECM_SSL_* files are set but ECM_SECURITY_PROTOCOL={protocol} "
                            "does not use TLS (SSL or SASL_SSL)")


def uses_tls(settings: Settings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of a connection (None without TLS): the system's trusted roots, or
    the CA file; a client certificate where the cluster asks for one (mutual TLS)."""
    if not uses_tls(settings):
        return None
    ctx = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    ctx.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile:
        ctx.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return ctx


def _password(settings: Settings) -> str:
    if settings.sasl_password_file:
        try:
            return Path(settings.sasl_password_file).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"ECM_SASL_PASSWORD_FILE cannot be read "
                                f"({type(exc).__name__})") from exc
    return settings.sasl_password


def security(settings: Settings) -> dict[str, Any]:
    """The security arguments of an aiokafka or kafka-python client."""
    out: dict[str, Any] = {"security_protocol": settings.security_protocol}
    ctx = ssl_context(settings)
    if ctx is not None:
        out["ssl_context"] = ctx
    if settings.security_protocol.startswith("SASL"):
        out.update(sasl_mechanism=settings.sasl_mechanism,
                   sasl_plain_username=settings.sasl_username,
                   sasl_plain_password=_password(settings))
    return out


def connection(settings: Settings) -> dict[str, Any]:
    """Where and how an aiokafka or kafka-python client connects: ``bootstrap_servers``
    and the security arguments."""
    return {"bootstrap_servers": settings.bootstrap_servers, **security(settings)}


def faust_credentials(settings: Settings) -> Any:
    """The Faust app's ``broker_credentials`` (None for PLAINTEXT)."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(username=settings.sasl_username, password=_password(settings),
                                 ssl_context=ssl_context(settings),
                                 mechanism=settings.sasl_mechanism)
