"""One delegation planner: a task and an optional hint become the chain of models to try, and why.

The CLI (``orchestrate``) and the MCP tools plan through :func:`plan_delegation`, so they agree:

* A hint (a registry id, alias or CLI model name) is always tried first, available or not, so a
  model asked for is never silently replaced; its fallbacks are routing's chain for it.
* A ``provider/model`` the registry does not know is tried alone (no fallbacks, no scores).
* Without a hint routing chooses (``capability`` puts the weight on one quality), and the chain
  is the chosen model's fallback chain, unavailable models left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus_core.routing.chain import chain_of
from nexus_core.routing.experts import Capability
from nexus_core.routing.profile import TaskProfile, profile_task
from nexus_core.routing.registry import CLI_MODEL_RE, ModelProfile
from nexus_core.routing.score import RoutingDecision, fallback_chain, resolve_hint, route
from nexus_core.routing.snapshot import RoutingSnapshot

__all__ = ["EMPHASIS", "DelegationPlan", "adhoc_model", "plan_delegation", "task_profile"]

#: The weight a preferred capability gets (the others keep their profile's).
EMPHASIS = 10.0


@dataclass(frozen=True)
class DelegationPlan:
    """The models to try, first to last, why the first, and routing's decision behind it (None for an
    ad-hoc ``provider/model`` the registry does not know)."""

    chain: tuple[ModelProfile, ...]
    why: str
    decision: RoutingDecision | None

    @property
    def first(self) -> ModelProfile:
        """The model tried first."""
        return self.chain[0]


def adhoc_model(cli_model_name: str) -> ModelProfile:
    """A model profile for a ``provider/model`` the registry does not know."""
    provider = cli_model_name.split("/", 1)[0]
    return ModelProfile(
        id=cli_model_name, name=cli_model_name, provider=provider, cli_model_name=cli_model_name, source="opencode.json"
    )


def task_profile(task: str, capability: Capability | None = None) -> TaskProfile:
    """Routing's profile of ``task``, with ``capability`` (when given) weighted :data:`EMPHASIS`."""
    return profile_task(
        task,
        reasoning=EMPHASIS if capability == "reasoning" else None,
        code=EMPHASIS if capability == "code" else None,
        speed=EMPHASIS if capability == "speed" else None,
        cost=EMPHASIS if capability == "cost" else None,
    )


def plan_delegation(
    snapshot: RoutingSnapshot,
    task: str,
    hint: str | None = None,
    *,
    capability: Capability | None = None,
    fallback: bool = True,
) -> DelegationPlan:
    """The plan for ``task`` (see the module's rules). ``fallback=False`` keeps the first model only.

    Raises :class:`~nexus_core.errors.NexusError` for a hint that names no model and is no
    ``provider/model``, and when no model can run the task.
    """
    wanted = (hint or "").strip() or None
    if wanted and snapshot.registry.find(wanted) is None and CLI_MODEL_RE.match(wanted):
        return DelegationPlan((adhoc_model(wanted),), f"asked for {wanted} (not in the registry: no fallbacks)", None)
    if wanted:
        first = resolve_hint(snapshot, wanted)
        decision = route(snapshot, task_profile(task, capability), wanted)
        chain, why = fallback_chain(snapshot, first.id), f"asked for {hint!r}"
    else:
        decision = route(snapshot, task_profile(task, capability))
        chosen = decision.chosen_or_raise()
        chain, why = list(decision.chain) or [chosen.model], f"routed: {decision.reason}"
    return DelegationPlan(chain_of(chain if fallback else chain[:1]), why, decision)
