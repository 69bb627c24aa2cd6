"""Signed stream names in Rails' ActiveSupport::MessageVerifier format (SHA256, JSON).

signed = base64(JSON.dump(name)) + "--" + hex(HMAC-SHA256(secret, base64 part))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

SEPARATOR = "--"


def _digest(secret: bytes, data: str) -> str:
    return hmac.new(secret, data.encode("ascii"), hashlib.sha256).hexdigest()


def sign(name: str, secret: bytes) -> str:
    data = base64.b64encode(json.dumps(name, ensure_ascii=False).encode("utf-8")).decode("ascii")
    return data + SEPARATOR + _digest(secret, data)


def verify(signed: str, secret: bytes) -> str | None:
    """The stream name inside `signed`, or None when it is forged, malformed or not a string."""
    data, sep, digest = signed.rpartition(SEPARATOR)
    if not sep or not data or not data.isascii() or not digest.isascii():
        return None
    if not hmac.compare_digest(digest.encode("ascii"), _digest(secret, data).encode("ascii")):
        return None
    try:
        if "-" in data or "_" in data:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        else:
            raw = base64.b64decode(data, validate=True)
        name = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return name if isinstance(name, str) else None


def same_secret(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(given, expected)
