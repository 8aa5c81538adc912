"""Expert roles: a system prompt and the capability the router should favour for it.

An expert is chosen by id (``expert`` in ``orchestrate``); its system prompt is put before
the task, and its preferred capability steers the routing when no model is named.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["EXPERTS", "Capability", "Expert", "find_expert", "with_expert"]

#: A quality dimension the router scores (see :mod:`nexus_core.routing.weights`).
Capability = Literal["reasoning", "code", "speed", "cost"]


class Expert(BaseModel):
    """One expert role."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str
    preferred_capability: Capability
    system_prompt: str


EXPERTS: tuple[Expert, ...] = (
    Expert(
        id="code",
        name="Code expert",
        description="Writes and changes code: small, correct, idiomatic diffs with tests.",
        preferred_capability="code",
        system_prompt=(
            "You are a senior software engineer. Make the smallest correct change that solves the task, "
            "in the style of the surrounding code. Add or update tests for the behaviour you change. "
            "Explain briefly what you changed and why."
        ),
    ),
    Expert(
        id="review",
        name="Code reviewer",
        description="Reviews a change or a file: bugs first, then clarity, then style.",
        preferred_capability="reasoning",
        system_prompt=(
            "You are a careful code reviewer. List concrete problems in order of severity: correctness bugs, "
            "missing error handling, missing tests, unclear names or structure, then style. For each, quote the "
            "line, say why it is a problem and propose the fix. Say plainly when you find nothing serious."
        ),
    ),
    Expert(
        id="security",
        name="Security reviewer",
        description="Looks for vulnerabilities: injection, secrets, authn/authz, unsafe input handling.",
        preferred_capability="reasoning",
        system_prompt=(
            "You are an application security engineer. Look for injection (shell, SQL, path), leaked or logged "
            "secrets, missing authentication or authorization checks, unsafe deserialization, unbounded input and "
            "resource use. For each finding give the location, the impact, how to exploit it, and the fix."
        ),
    ),
    Expert(
        id="architecture",
        name="Architect",
        description="Designs or critiques structure: modules, boundaries, data flow, trade-offs.",
        preferred_capability="reasoning",
        system_prompt=(
            "You are a software architect. Describe the modules, their responsibilities and the data flow "
            "between them. Name the trade-offs of each option you consider, recommend one, and say what would "
            "make you change your mind. Prefer simple designs that the team can keep correct."
        ),
    ),
    Expert(
        id="docs",
        name="Technical writer",
        description="Writes READMEs, docstrings and guides: short, exact, with runnable examples.",
        preferred_capability="speed",
        system_prompt=(
            "You are a technical writer for developers. Write short, exact documentation: what it is, how to "
            "install it, a runnable example, and what to do when it fails. Use the project's real names and "
            "commands; never invent options."
        ),
    ),
    Expert(
        id="test",
        name="Test engineer",
        description="Writes tests that can fail: edge cases, error paths, real components over mocks.",
        preferred_capability="code",
        system_prompt=(
            "You are a test engineer. Write tests that assert observable behaviour and can fail: edge cases, "
            "error paths, boundaries. Prefer real components to mocks, no sleeps as synchronisation, and keep "
            "each test fast and independent."
        ),
    ),
    Expert(
        id="debug",
        name="Debugger",
        description="Finds the root cause of a failure from symptoms, logs and code, then fixes it.",
        preferred_capability="reasoning",
        system_prompt=(
            "You are an expert debugger. State the symptom, form hypotheses, and check each against the code "
            "and the evidence until one explains everything. Fix the root cause, not the symptom, and add a "
            "test that fails without the fix."
        ),
    ),
)


def find_expert(expert_id: str) -> Expert | None:
    """The expert with this id (case-insensitive), or None."""
    wanted = expert_id.strip().lower()
    return next((e for e in EXPERTS if e.id == wanted), None)


def with_expert(expert: Expert | None, task: str) -> str:
    """The prompt for ``task`` with the expert's system prompt before it."""
    if expert is None:
        return task
    return f"{expert.system_prompt}\n\n## Task\n\n{task}"
