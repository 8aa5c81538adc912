"""Causes nexus knows before any request: read from the config and the environment, said first.

An unset key variable, a key OpenCode will not send, a baseURL whose variable is unset: when
one of these holds for a provider, every failure of that provider is explained by it first —
in the doctor's checks and in a delegation's outcome — instead of by whatever the gateway
answered to a request without a key (LiteLLM proxy answers a bare 500).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from nexus_core.config.gateways import gateway_providers
from nexus_core.config.loader import MergedConfig
from nexus_core.opencode.events import FailureClass, Outcome

__all__ = ["KnownCause", "known_cause_for", "known_causes", "with_known_cause"]

KnownKind = Literal["key_unset", "key_not_sent", "base_url_unset"]

# Failures a missing key explains (a gateway may say 500, 400 or nothing useful); a refused
# connection or an unknown host is not the key's fault and keeps its class.
_EXPLAINED = frozenset(
    {
        FailureClass.AUTH,
        FailureClass.GATEWAY_ERROR,
        FailureClass.BAD_REQUEST,
        FailureClass.FAILED,
        FailureClass.MODEL_NOT_FOUND,
        FailureClass.CUT_STREAM,
    }
)


class KnownCause(BaseModel):
    """A cause nexus knows for provider ``provider_id``, with its one fix."""

    model_config = ConfigDict(frozen=True)

    provider_id: str
    kind: KnownKind
    summary: str
    fix: str
    failure: FailureClass


def _conventional_vars(pid: str) -> tuple[str, ...]:
    return (f"{pid.upper().replace('-', '_')}_API_KEY", "CUSTOM_API_KEY")


def known_causes(config: MergedConfig, env: Mapping[str, str]) -> dict[str, KnownCause]:
    """The known cause of each gateway provider that has one (provider id → cause)."""
    out: dict[str, KnownCause] = {}
    for gw in gateway_providers(config, env):
        pid = gw.provider_id
        if not gw.base_url and gw.base_url_var:
            out[pid] = KnownCause(
                provider_id=pid,
                kind="base_url_unset",
                summary=f"{gw.base_url_var} is not set, so provider {pid} has no baseURL",
                fix=f"export {gw.base_url_var}=https://your-gateway.example.com/v1",
                failure=FailureClass.CONFIG_INVALID,
            )
        elif gw.key_state == "unset":
            var = gw.key_label[5:-1] if gw.key_label.startswith("{env:") else None
            what = f"{var} is not set" if var else f"the key from {gw.key_label} is empty"
            out[pid] = KnownCause(
                provider_id=pid,
                kind="key_unset",
                summary=f"{what}: OpenCode sends provider {pid}'s requests without a key",
                fix=f"export {var}=<your gateway key> (provider {pid}'s apiKey is {{env:{var}}})"
                if var
                else f"set {gw.key_fix_target}",
                failure=FailureClass.AUTH,
            )
        elif gw.key_state == "absent":
            present = next((v for v in _conventional_vars(pid) if env.get(v)), None)
            if present:
                out[pid] = KnownCause(
                    provider_id=pid,
                    kind="key_not_sent",
                    summary=f"{present} is set, but provider {pid} has no options.apiKey naming it: OpenCode will not send it",
                    fix=f'set provider.{pid}.options.apiKey to "{{env:{present}}}" in opencode.json',
                    failure=FailureClass.AUTH,
                )
    return out


def known_cause_for(cli_model_name: str | None, causes: Mapping[str, KnownCause]) -> KnownCause | None:
    """The known cause of the provider of ``provider/model``, if any."""
    if not cli_model_name or "/" not in cli_model_name:
        return None
    return causes.get(cli_model_name.split("/", 1)[0])


def with_known_cause(outcome: Outcome, known: KnownCause | None) -> Outcome:
    """``outcome`` with the known cause said first (and its class, when the cause explains the failure)."""
    if known is None or outcome.ok or outcome.failure is FailureClass.CANCELLED:
        return outcome
    failure = known.failure if outcome.failure in _EXPLAINED else outcome.failure
    return outcome.model_copy(
        update={
            "failure": failure,
            "message": f"{known.summary}; the gateway said: {outcome.message}",
            "fix": known.fix,
        }
    )
