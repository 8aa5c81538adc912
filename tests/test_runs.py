"""The delegation's own rules, without OpenCode: which failures fall back, skipped entries, chains."""

from __future__ import annotations

import pytest

from nexus_core.opencode.events import AttemptFinished, AttemptStarted, FailureClass, Outcome, RunEvent
from nexus_core.routing.chain import CURABLE_BY_FALLBACK, DelegationSpec, chain_of, curable_by_fallback, delegate
from nexus_core.routing.registry import BUILTIN_MODELS, ModelProfile

DEFAULT = next(m for m in BUILTIN_MODELS if m.id == "opencode-default")


@pytest.mark.parametrize("failure", list(FailureClass))
def test_the_fallback_rule(failure: FailureClass) -> None:
    curable = {
        FailureClass.MODEL_NOT_FOUND,
        FailureClass.CONNECTION,
        FailureClass.GATEWAY_ERROR,
        FailureClass.STALLED,
        FailureClass.RATE_LIMITED,
        FailureClass.CUT_STREAM,
    }
    assert curable_by_fallback(Outcome(failure=failure, message="m")) is (failure in curable)
    assert curable == CURABLE_BY_FALLBACK
    assert not curable_by_fallback(Outcome(message="finished"))


async def test_an_entry_without_a_model_name_is_recorded_as_skipped() -> None:
    events: list[RunEvent] = []
    result = await delegate(DelegationSpec(prompt="x", chain=(DEFAULT,)), events.append)
    assert [type(e) for e in events] == [AttemptStarted, AttemptFinished]
    assert len(result.attempts) == 1 and not result.ok
    assert result.outcome.failure is FailureClass.CONFIG_INVALID and "no default model" in result.outcome.message
    assert result.summary()["attempts"][0]["model_id"] == "opencode-default"


def test_chain_of_keeps_the_first_of_repeats() -> None:
    a = ModelProfile(id="a", name="a", provider="custom", cli_model_name="custom/a")
    b = ModelProfile(id="b", name="b", provider="custom", cli_model_name="custom/b")
    assert chain_of([a, b, a, b]) == (a, b)


def test_chain_of_drops_a_second_id_for_a_model_name_already_in_the_chain() -> None:
    opus = ModelProfile(id="opus", name="opus", provider="custom", cli_model_name="custom/claude-opus-4-5")
    default = DEFAULT.model_copy(update={"cli_model_name": "custom/claude-opus-4-5"})
    assert chain_of([opus, default]) == (opus,)
    assert chain_of([opus, DEFAULT, DEFAULT]) == (opus, DEFAULT)


def test_a_chain_cannot_be_empty() -> None:
    with pytest.raises(ValueError):
        DelegationSpec(prompt="x", chain=())
