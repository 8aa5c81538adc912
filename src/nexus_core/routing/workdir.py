"""Route where OpenCode will run: the config OpenCode reads in a working directory, against the project's.

OpenCode reads its project config from the directory it runs in, walking up to the git root
(plus the global config): a working directory outside the project, or one with an
``opencode.json`` of its own, gives it other providers and models than the project's. A task
run there is routed with that directory's config (:func:`~nexus_core.routing.snapshot.build_snapshot`
loads it the same way, :func:`~nexus_core.config.loader.load_config`); :func:`compare_workdir`
says in one sentence how it differs, to be said before running, and
:meth:`WorkdirConfig.explain` names that config, and the fix, in a "model not found" verdict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nexus_core.config.loader import MergedConfig, load_config
from nexus_core.opencode.events import FailureClass, Outcome

__all__ = ["WorkdirConfig", "compare_workdir", "config_sources", "explain_result", "workdir_config"]

_LOCAL_KINDS = frozenset({"project", "directory"})
R = TypeVar("R")


def config_sources(config: MergedConfig) -> str:
    """The files OpenCode reads for ``config.directory`` beyond the global ones, in words."""
    local = [layer.source for layer in config.layers if layer.kind in _LOCAL_KINDS]
    if local:
        return ", ".join(local)
    scope = f"no opencode.json from {config.directory} up to {config.worktree}"
    return f"{scope}, only the global config" if config.layers else scope


def _declared(config: MergedConfig) -> dict[str, str]:
    """``provider/key`` → the provider's baseURL ("" when none), for every declared model."""
    out: dict[str, str] = {}
    for pid, provider in config.providers.items():
        for key in provider.models:
            out[f"{pid}/{key}"] = provider.base_url or ""
    return out


def _names(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _differences(project: MergedConfig, workdir: MergedConfig) -> list[str]:
    theirs, ours = _declared(workdir), _declared(project)
    parts: list[str] = []
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    if missing:
        parts.append(f"it does not declare {_names(missing)}")
    if extra:
        parts.append(f"it declares {_names(extra)}, which the project does not")
    for pid in sorted(set(project.providers) & set(workdir.providers)):
        ours_url, theirs_url = project.providers[pid].base_url, workdir.providers[pid].base_url
        if ours_url != theirs_url:
            parts.append(f"its provider {pid} points at {theirs_url or 'no baseURL'}, not {ours_url or 'no baseURL'}")
    for role in ("model", "small_model"):
        mine, other = project.data.get(role), workdir.data.get(role)
        # small_model only when nothing else differs: the rest already says the models differ.
        if mine != other and (role == "model" or not parts):
            parts.append(f'its "{role}" is {other or "unset"}, not {mine or "unset"}')
    return parts


@dataclass(frozen=True)
class WorkdirConfig:
    """The config OpenCode reads in ``workdir`` against the project's, and how they differ.

    ``difference`` is one sentence when they differ in what routing and OpenCode use (providers,
    their baseURLs, declared models, ``model``/``small_model``), else None.
    """

    workdir: str
    project: str
    workdir_config: MergedConfig
    project_config: MergedConfig
    difference: str | None

    @property
    def sources(self) -> str:
        return config_sources(self.workdir_config)

    def explain(self, outcome: Outcome, cli_model_name: str | None) -> Outcome:
        """``outcome`` with the working directory's config named when a "model not found" comes from it.

        The message stays short (verdicts cut it); which config, and the fix, go in the fix.
        """
        if self.difference is None or outcome.failure is not FailureClass.MODEL_NOT_FOUND:
            return outcome
        theirs, ours = _declared(self.workdir_config), _declared(self.project_config)
        name = cli_model_name or "the model"
        local = [layer.source for layer in self.workdir_config.layers if layer.kind in _LOCAL_KINDS]
        target = local[-1] if local else str(Path(self.workdir) / "opencode.json")
        read = f"OpenCode read the config of {self.workdir} ({self.sources}), not the project's"
        if name not in theirs:
            message = f"Model not found: {name} is not declared in the config OpenCode read in {self.workdir}"
            found = f" ({config_sources(self.project_config)} declares it)" if name in ours else ""
            fix = (
                f"{read}{found}: declare {name} in {target} (copy the project's provider block), "
                f"or run the task in a directory under {self.project}"
            )
        elif name in ours and theirs[name] != ours[name]:
            pid = name.split("/", 1)[0]
            message = f"Model not found: in {self.workdir}, provider {pid} points at {theirs[name] or 'no baseURL'}"
            fix = (
                f"{read}, whose provider {pid} points at {theirs[name] or 'no baseURL'} instead of "
                f"{ours[name] or 'no baseURL'}: set provider.{pid}.options.baseURL in {target} to {ours[name]}, "
                "or declare there a model that gateway serves"
            )
        else:
            message = outcome.message
            fix = f"{read}; " + (outcome.fix or f"check the models {target} declares")
        return outcome.model_copy(update={"message": message, "fix": fix})


def compare_workdir(project: MergedConfig, workdir: MergedConfig) -> WorkdirConfig:
    """How the config of ``workdir.directory`` differs from the project's (one sentence, or None)."""
    parts = _differences(project, workdir) if project.directory != workdir.directory else []
    difference = None
    if parts:
        difference = (
            f"OpenCode reads another config in {workdir.directory} ({config_sources(workdir)}) than in the project: "
            f"{'; '.join(parts)}; the task is routed with that config, as OpenCode will run it there"
        )
    return WorkdirConfig(
        workdir=workdir.directory,
        project=project.directory,
        workdir_config=workdir,
        project_config=project,
        difference=difference,
    )


def workdir_config(
    project_dir: str | os.PathLike[str] | None,
    workdir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    workdir_loaded: MergedConfig | None = None,
) -> WorkdirConfig:
    """Load both configs (``workdir_loaded``: the working directory's, already loaded) and compare them.

    Raises :class:`~nexus_core.config.loader.ConfigError` when a file does not parse.
    """
    env = os.environ if env is None else env
    theirs = workdir_loaded if workdir_loaded is not None else load_config(workdir, env)
    project = load_config(project_dir, env)
    return compare_workdir(project, theirs)


def explain_result(result: R, info: WorkdirConfig | None) -> R:
    """A delegation result whose "model not found" attempts name the working directory's config."""
    if info is None or info.difference is None:
        return result
    attempts: Any = getattr(result, "attempts", ())
    changed = tuple(
        a.model_copy(update={"outcome": info.explain(a.outcome, a.cli_model_name)})
        if a.outcome.failure is FailureClass.MODEL_NOT_FOUND
        else a
        for a in attempts
    )
    return result.model_copy(update={"attempts": changed})  # type: ignore[attr-defined]
