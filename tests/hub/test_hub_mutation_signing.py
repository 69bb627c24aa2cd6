"""Signed stream names: the edges that mutation testing of hub/signing.py found untested."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from hub import signing

SECRET = b"k"


def mac(data: str) -> str:
    return hmac.new(SECRET, data.encode(), hashlib.sha256).hexdigest()


def url_safe(name: str) -> str:
    """`name` signed with URL-safe base64 without padding (as some verifiers write it)."""
    data = base64.urlsafe_b64encode(json.dumps(name, ensure_ascii=False).encode()).decode().rstrip("=")
    return data + "--" + mac(data)


# Each encodes (URL-safe, unpadded) to a length of every remainder mod 4, with - and _ alone and together;
# "ϾϾϾ" encodes to "Is--z77PviI", which holds the separator itself.
URL_SAFE_NAMES = {
    "??": "Ij8_Ig",
    "a??": "ImE_PyI",
    "¿¿": "IsK_wr8i",
    ">>": "Ij4-Ig",
    "aϿϿ": "ImHPv8-_Ig",
    "abc࿀࿀": "ImFiY-C_gOC_gCI",
    "ϾϾϾ": "Is--z77PviI",
}


@pytest.mark.parametrize(("name", "encoded"), URL_SAFE_NAMES.items())
def test_url_safe_unpadded_names_verify(name: str, encoded: str) -> None:
    signed = url_safe(name)
    assert signed.startswith(encoded + "--")
    assert signing.verify(signed, SECRET) == name


@pytest.mark.parametrize("signed", ["é--" + "0" * 64, "abc--é", "é--é"])
def test_non_ascii_on_either_side_of_the_separator_is_refused_without_raising(signed: str) -> None:
    assert signing.verify(signed, SECRET) is None


def test_standard_base64_is_decoded_strictly_even_under_a_valid_mac() -> None:
    """Like Rails' strict_decode64: a name whose base64 has a stray character is refused, MAC or not."""
    data = base64.b64encode(b'"x"').decode()
    assert signing.verify(data + "--" + mac(data), SECRET) == "x"
    stray = data[:2] + "!" + data[2:]
    assert signing.verify(stray + "--" + mac(stray), SECRET) is None
