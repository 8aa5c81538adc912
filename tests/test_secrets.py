"""The redactor: known values, key shapes, and the credentials a URL can carry."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert (
        redact("http://127.0.0.1:8471/v1?limit=5 and user@example.com")
        == "http://127.0.0.1:8471/v1?limit=5 and user@example.com"
    )
    assert redact("key plainkeyvalue0123 at http://user@host/v1") == f"key {REDACTED} at http://user@host/v1"


def test_the_keys_a_config_resolves_are_redacted_whatever_their_source(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    from nexus_core.config.loader import config_secrets
    from nexus_core.opencode.attempt import Attempt, AttemptSpec

    (tmp_path / "key.txt").write_text("sk-from-a-file-0123456789\n")
    config = {
        "provider": {
            "lit": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "written-in-the-file-42"},
            },
            "fil": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "{file:key.txt}"},
            },
            "hdr": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": "http://127.0.0.1:9/v1", "headers": {"Authorization": "Bearer team-token-9876"}},
            },
        }
    }
    (tmp_path / "opencode.json").write_text(json.dumps(config))
    found = config_secrets(tmp_path, hermetic_env)
    assert {"written-in-the-file-42", "sk-from-a-file-0123456789", "Bearer team-token-9876"} <= set(found)
    attempt = Attempt(AttemptSpec(cli_model_name="lit/m", prompt="hi", workdir=tmp_path, env=hermetic_env))
    shown = attempt._redact("401 for written-in-the-file-42, sk-from-a-file-0123456789 and team-token-9876")
    assert "written-in-the-file-42" not in shown and "sk-from-a-file" not in shown and "team-token-9876" not in shown
