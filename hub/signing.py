"""Signed stream names in Rails' ActiveSupport::MessageVerifier format (SHA256, JSON).

signed = base64(JSON.dump(name)) + "--" + hex(HMAC-SHA256(secret, base64 part))

No hmac, and hashlib only where Python has no SHA-256 of its own: without OpenSSL's _hashlib (kept out
of the hub, see hub/__main__.py) hashlib imports every built-in hash module, ~0.5 MB of resident memory
for the hub's lifetime. SHA-256 alone is enough, and HMAC is a few lines over it.
"""

from __future__ import annotations

import base64
import binascii
import json

# What hmac.compare_digest is when OpenSSL's _hashlib is absent: time independent of where the inputs differ.
from _operator import _compare_digest

try:
    from _sha256 import sha256
except ImportError:
    try:
        from _sha2 import sha256  # Python 3.12 and later
    except ImportError:
        # A Python built to hash with OpenSSL only (configure --with-builtin-hashlib-hashes): this
        # module also runs on any host's python3 (orchestrator/targets/onhost.py ships it there).
        from hashlib import sha256

SEPARATOR = "--"
_BLOCK = 64  # SHA-256's block size in bytes
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104): what hmac.new(key, message, hashlib.sha256).digest() gives."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_INNER_PAD))
    inner.update(message)
    return sha256(key.translate(_OUTER_PAD) + inner.digest()).digest()


def _digest(secret: bytes, data: str) -> str:
    return hmac_sha256(secret, data.encode("ascii")).hex()


def sign(name: str, secret: bytes) -> str:
    data = base64.b64encode(json.dumps(name, ensure_ascii=False).encode("utf-8")).decode("ascii")
    return data + SEPARATOR + _digest(secret, data)


def verify(signed: str, secret: bytes) -> str | None:
    """The stream name inside `signed`, or None when it is forged, malformed or not a string."""
    data, sep, digest = signed.rpartition(SEPARATOR)
    if not sep or not data or not data.isascii() or not digest.isascii():
        return None
    if not _compare_digest(digest.encode("ascii"), _digest(secret, data).encode("ascii")):
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
    return _compare_digest(given, expected)
