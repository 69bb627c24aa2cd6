"""Signed stream names in Rails' MessageVerifier format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import signing

# Generated with Ruby (activesupport 6.1.7):
# ActiveSupport::MessageVerifier.new("s3cr3t", digest: "SHA256", serializer: JSON).generate(name)
FROM_RAILS = {
    "chat:1": "ImNoYXQ6MSI=--8790ba663e276a477b330854d016a3d4c4f86cd2d7821665bf3e2df0c25741aa",
    "config_update_2025-boston_7": "ImNvbmZpZ191cGRhdGVfMjAyNS1ib3N0b25fNyI=--"
    "954dabd9b44f4c7b89d4e3869fc042fd3a82d6a94cd6097afd0894885ca68fe4",
    "café": "ImNhZsOpIg==--efadc336aef9de787247470baf82299d58f8c50f9ca9549cef5535d93d60dabb",
    "a/b+c?~~>": "ImEvYitjP35+PiI=--0c9cc2fcca5f62bb3bcc84383054036e1a3c0887a786e3186700e896862551c3",
}
RAILS_STYLE = FROM_RAILS["chat:1"]


@pytest.mark.parametrize(("name", "signed"), FROM_RAILS.items())
def test_names_signed_by_rails_verify_and_sign_identically(name: str, signed: str) -> None:
    assert signing.verify(signed, b"s3cr3t") == name
    assert signing.sign(name, b"s3cr3t") == signed


def test_wrong_secret_and_tampering_fail() -> None:
    assert signing.verify(RAILS_STYLE, b"other") is None
    data, digest = RAILS_STYLE.split("--")
    assert signing.verify(data + "--" + digest[:-1] + ("0" if digest[-1] != "0" else "1"), b"s3cr3t") is None
    forged = base64.b64encode(b'"chat:2"').decode()
    assert signing.verify(forged + "--" + digest, b"s3cr3t") is None


def test_malformed_inputs_fail() -> None:
    for value in ["", "--", "abc", "abc--", "--abc", "é--é", "x" * 10]:
        assert signing.verify(value, b"k") is None


def test_json_must_decode_to_a_string() -> None:
    for value in [[1, 2], {"a": 1}, 42, None]:
        data = base64.b64encode(json.dumps(value).encode()).decode()
        signed = data + "--" + hmac.new(b"k", data.encode(), hashlib.sha256).hexdigest()
        assert signing.verify(signed, b"k") is None


def test_url_safe_base64_is_accepted() -> None:
    name = "stream?>>~~"  # encodes with + and / in the standard alphabet
    standard = base64.b64encode(json.dumps(name).encode()).decode()
    assert "+" in standard or "/" in standard
    url_safe = base64.urlsafe_b64encode(json.dumps(name).encode()).decode().rstrip("=")
    signed = url_safe + "--" + hmac.new(b"k", url_safe.encode(), hashlib.sha256).hexdigest()
    assert signing.verify(signed, b"k") == name


def test_invalid_base64_with_a_valid_mac_fails() -> None:
    data = "!!notbase64!!"
    signed = data + "--" + hmac.new(b"k", data.encode(), hashlib.sha256).hexdigest()
    assert signing.verify(signed, b"k") is None


@given(name=st.text(), secret=st.binary(min_size=1, max_size=64))
def test_sign_then_verify_round_trips(name: str, secret: bytes) -> None:
    assert signing.verify(signing.sign(name, secret), secret) == name


@given(value=st.text())
def test_verify_never_raises(value: str) -> None:
    assert signing.verify(value, b"k") is None


def test_same_secret_compares_bytes() -> None:
    assert signing.same_secret(b"abc", b"abc")
    assert not signing.same_secret(b"abc", b"abd")


def test_signatures_and_broadcast_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain == would leak, through timing, how much of a forged signature or key is right.

    No timing test can show that reliably, so this records what the comparisons go through:
    replacing _compare_digest with ==/!= in signing.py fails here.
    """
    compared: list[tuple[bytes, bytes]] = []
    real = signing._compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing, "_compare_digest", recording)
    signed = FROM_RAILS["chat:1"]
    assert signing.verify(signed, b"s3cr3t") == "chat:1"
    assert signing.verify(signed[:-1] + "0", b"s3cr3t") is None
    assert signing.same_secret(b"key", b"key") is True
    assert signing.same_secret(b"kez", b"key") is False
    assert len(compared) == 4
    assert compared[2] == (b"key", b"key") and compared[3] == (b"kez", b"key")


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 128, 200])
@pytest.mark.parametrize("message_size", [0, 1, 55, 56, 64, 1000])
def test_hmac_sha256_is_the_standard_libraries(key_size: int, message_size: int) -> None:
    """Keys shorter than, as long as and longer than SHA-256's 64-byte block (hashed first), around message padding."""
    key = bytes(range(key_size))
    message = bytes((7 * i) % 256 for i in range(message_size))
    assert signing.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


@given(key=st.binary(max_size=300), message=st.binary(max_size=300))
def test_hmac_sha256_agrees_with_hmac_on_any_input(key: bytes, message: bytes) -> None:
    assert signing.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
