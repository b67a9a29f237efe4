# SPDX-License-Identifier: Apache-2.0
"""The one broker-URL parser: ``mqtt://host:port`` / ``mqtts://host:port``, for the twin and the emulator."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ._validate import ConfigError

__all__ = ["BrokerAddress", "parse_broker_url"]

_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed broker URL.

    Attributes:
        host: host name or address.
        port: TCP port (1883 plain, 8883 TLS when the URL gives none).
        tls: True for ``mqtts://`` (and ``ssl://``).
        username, password: credentials carried in the URL (only where the caller allows them), else None.
    """

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def redacted(self) -> str:
        """``scheme://host:port`` without credentials (for messages and logs)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(
    url: object, *, key: str = "broker url", allow_credentials: bool = False, allow_tls: bool = True
) -> BrokerAddress:
    """Parse ``mqtt://[user[:password]@]host[:port]`` (or ``mqtts://``) into a `BrokerAddress`.

    Args:
        url: the URL as the user wrote it.
        key: where the user wrote it, named in errors (``"[broker] url"``, ``"--broker"``).
        allow_credentials: accept ``user:password@`` in the URL (the emulator's command line does; the twin's
            settings do not, since URLs end up in logs: they use ``broker.username`` / ``broker.password_env``).
        allow_tls: accept ``mqtts://``.

    Raises:
        ConfigError: naming ``key``, what is wrong and an example of a good URL.
    """
    example = "e.g. mqtt://127.0.0.1:1883"
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{key} {url!r} must look like mqtt://host:port ({example})")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError(f"{key} {url!r} must start with mqtt:// or mqtts:// ({example})")
    tls = _SCHEMES[scheme]
    if tls and not allow_tls:
        raise ConfigError(f"{key} {url!r}: TLS (mqtts://) is not supported here; use a plain mqtt:// listener")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key} {url!r} has an invalid port; it must be a number in 1..65535") from None
    if not parts.hostname:
        raise ConfigError(f"{key} {url!r} has no host ({example})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{key} {url!r} must be only scheme://host:port ({example})")
    has_credentials = parts.username is not None or parts.password is not None
    if has_credentials and not allow_credentials:
        raise ConfigError(
            f"{key} must not carry credentials (URLs end up in logs): use broker.username and broker.password_env"
        )
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
