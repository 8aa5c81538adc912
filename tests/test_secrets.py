"""The redactor: known values, key shapes, and the credentials a URL can carry."""

from __future__ import annotations

import pytest

from nexus_core.secrets import REDACTED, Redactor


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("baseURL http://user:hunter2pass99@127.0.0.1:8471/v1", "hunter2pass99"),
        ("see https://gw.example.com/v1?api-key=qparam777&x=1 for details", "qparam777"),
        ("https://gw.example.com/v1/models?access_token=tok123456", "tok123456"),
        ("https://gw.example.com/v1?sig=abcdef&se=2030", "abcdef"),
    ],
)
def test_credentials_in_urls_are_masked(text: str, secret: str) -> None:
    masked = Redactor()(text)
    assert secret not in masked and REDACTED in masked


def test_plain_urls_and_known_values() -> None:
    redact = Redactor(["plainkeyvalue0123"])
    assert redact("http://127.0.0.1:8471/v1?limit=5 and user@example.com") == "http://127.0.0.1:8471/v1?limit=5 and user@example.com"
    assert redact("key plainkeyvalue0123 at http://user@host/v1") == f"key {REDACTED} at http://user@host/v1"
