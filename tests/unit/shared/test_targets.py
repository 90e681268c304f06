"""The identifier checks every module shares."""

from __future__ import annotations

import pytest

from shared.targets import is_sha1, normalise_sha1

SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"


@pytest.mark.parametrize(
    "value", [SHA1 + "\n", SHA1[:-1], SHA1 + "0", SHA1.replace("8", "g"), None, 40]
)
def test_is_sha1_refuses_anything_but_40_hex_characters(value: object) -> None:
    assert not is_sha1(value)


def test_normalise_sha1_strips_and_lower_cases() -> None:
    assert is_sha1(SHA1.upper())
    assert normalise_sha1(f"  {SHA1.upper()}\n") == SHA1
    assert normalise_sha1("not a sha1") is None
