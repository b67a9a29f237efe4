# SPDX-License-Identifier: Apache-2.0
"""Signed requests for brokers without ACLs: HMAC-SHA256 over the request with a shared key from a file,
replay-protected by a timestamp and a nonce (docs/control.md "Who may ask").

A signed request is the plain JSON request plus ``client`` (who signs), ``sent_at`` (Unix time, s), ``nonce``
(16-64 characters, unique per request) and ``sig``: the hex HMAC-SHA256 of the request's canonical JSON (sorted
keys, no spaces, ASCII) without ``sig``. The receiver accepts it only when the signature matches, ``sent_at`` is
within ``max_age_s`` of its own clock (either way), and the nonce was not seen within that window.

    >>> key = b"0123456789abcdef0123456789abcdef"
    >>> signed = sign_request({"id": "r1", "name": "pick_place_payload"}, key, client="op", now=100.0, nonce="n" * 16)
    >>> RequestAuthenticator(key, clock=lambda: 101.0).verify(signed)
    'op'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import TwinExtError

__all__ = ["MIN_KEY_BYTES", "RequestAuthenticator", "Unauthorised", "load_key", "sign_request"]

MIN_KEY_BYTES = 16
"""Shortest shared key accepted, bytes (after stripping whitespace); 32 random bytes (64 hex) are recommended."""
_MAX_NONCES = 8192


class Unauthorised(TwinExtError, PermissionError):
    """A request without a valid signature, too old or too new, or replayed; the message says which."""


def load_key(path: str | Path) -> bytes:
    """The shared key: the file's content with surrounding whitespace stripped.

    Raises:
        TwinExtError: the file is missing, unreadable or shorter than `MIN_KEY_BYTES`.
    """
    path = Path(path)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise TwinExtError(
            f"cannot read the request key file {str(path)!r}: {exc.strerror}; fix: create it, e.g. "
            f"`python -c 'import secrets; print(secrets.token_hex(32))' > {path}` (and chmod 600 it)"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise TwinExtError(
            f"the request key in {str(path)!r} is {len(key)} bytes; use at least {MIN_KEY_BYTES} (e.g. 64 hex characters)"
        )
    return key


def _canonical(doc: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign_request(
    doc: Mapping[str, Any], key: bytes, *, client: str, now: float | None = None, nonce: str | None = None
) -> dict[str, Any]:
    """A copy of ``doc`` with ``client``, ``sent_at`` (Unix s, default now), ``nonce`` (default 32 random hex) and
    ``sig`` set."""
    out = {k: v for k, v in doc.items() if k != "sig"}
    out.update(client=client, sent_at=time.time() if now is None else float(now), nonce=nonce or os.urandom(16).hex())
    out["sig"] = hmac.new(key, _canonical(out), hashlib.sha256).hexdigest()
    return out


class RequestAuthenticator:
    """Checks signed requests (thread-safe enough for one dispatcher thread: call `verify` from one thread).

    Args:
        key: the shared key (`load_key`).
        max_age_s: accepted |now - sent_at|, s; also how long a nonce is remembered.
        clock: Unix time, s (tests inject one).
    """

    def __init__(self, key: bytes, *, max_age_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the key must be at least {MIN_KEY_BYTES} bytes")
        self._key = bytes(key)
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> when it may be forgotten (Unix s)

    def verify(self, doc: Mapping[str, Any]) -> str:
        """The signing client of a valid request.

        Raises:
            Unauthorised: unsigned, bad signature, stale or future ``sent_at``, a replayed nonce.
        """
        sig, nonce, sent_at, client = doc.get("sig"), doc.get("nonce"), doc.get("sent_at"), doc.get("client")
        if not isinstance(sig, str) or not isinstance(nonce, str) or not isinstance(client, str):
            raise Unauthorised(
                "the request is not signed (this twin requires client, sent_at, nonce and sig: HMAC-SHA256 with the "
                "shared key, docs/control.md)"
            )
        if not 16 <= len(nonce) <= 64:
            raise Unauthorised("nonce must be 16..64 characters (random per request)")
        try:
            expected = hmac.new(self._key, _canonical(doc), hashlib.sha256).hexdigest()
        except (TypeError, ValueError):
            raise Unauthorised("the request cannot be put in canonical form to check its signature") from None
        if not hmac.compare_digest(expected, sig):
            raise Unauthorised("bad signature (wrong key, or the request was changed after signing)")
        now = self._clock()
        if isinstance(sent_at, bool) or not isinstance(sent_at, (int, float)) or abs(now - sent_at) > self.max_age_s:
            raise Unauthorised(
                f"sent_at is not within {self.max_age_s:g} s of the twin's clock (a replay, or unsynchronised clocks)"
            )
        while self._nonces and next(iter(self._nonces.values())) < now:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            raise Unauthorised("this nonce was used already (a replayed request)")
        if len(self._nonces) >= _MAX_NONCES:
            raise Unauthorised("too many signed requests within max_age_s; slow down")
        self._nonces[nonce] = now + 2 * self.max_age_s
        return client
