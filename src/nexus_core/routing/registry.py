"""The model registry: built-in profiles, every model the OpenCode config declares, and a user overlay.

Sources, later wins field by field:

1. built-ins (the seed's profiles: ``opencode-custom-opus``, ``opencode-custom-sonnet``,
   ``opencode-default``);
2. every model under ``provider.<id>.models`` of the merged OpenCode config. A model whose
   ``<provider>/<key>`` equals a built-in's CLI model name enriches that built-in (name,
   limits, pricing); any other becomes a new entry with id ``opencode-<provider>-<key>``;
3. overlay files, user first then project (see :func:`overlay_paths`), which can set quality
   scores, aliases, the CLI model name, limits and the fallback chain of any entry, or add one.
   An invalid overlay entry is reported with its reason and skipped; the rest loads.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nexus_core.config import jsonc
from nexus_core.config.loader import MergedConfig, global_config_dir
from nexus_core.errors import first_validation_problem
from nexus_core.opencode.argv import CLI_MODEL_RE

__all__ = [
    "BUILTIN_MODELS",
    "CLI_MODEL_RE",
    "ModelProfile",
    "Pricing",
    "Quality",
    "Registry",
    "RegistryProblem",
    "build_registry",
    "overlay_paths",
]

Source = Literal["built-in", "opencode.json", "overlay"]


class Quality(BaseModel):
    """Quality scores from 0 to 10. ``cost`` is cost-efficiency: 10 is the cheapest."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    reasoning: float = Field(5, ge=0, le=10)
    code: float = Field(5, ge=0, le=10)
    speed: float = Field(5, ge=0, le=10)
    cost: float = Field(5, ge=0, le=10)


class Pricing(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class ModelProfile(BaseModel):
    """One model nexus can route to through OpenCode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str
    provider: str
    cli: Literal["opencode"] = "opencode"
    cli_model_name: str | None = Field(
        description="Exactly what `opencode run --model` takes: <provider-id>/<model-key>. "
        "None only for opencode-default when the config names no default model."
    )
    quality: Quality = Quality()
    scores_from: str = "default"
    context_limit: int | None = None
    output_limit: int | None = None
    pricing: Pricing | None = None
    aliases: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    source: Source = "built-in"
    declared_in: str | None = None
    overlay_file: str | None = None

    @field_validator("cli_model_name")
    @classmethod
    def _shape(cls, value: str | None) -> str | None:
        if value is not None and not CLI_MODEL_RE.match(value):
            raise ValueError(f"{value!r} is not of the form <provider-id>/<model-key>")
        return value

    @property
    def provider_id(self) -> str | None:
        return self.cli_model_name.split("/", 1)[0] if self.cli_model_name else None

    @property
    def model_key(self) -> str | None:
        return self.cli_model_name.split("/", 1)[1] if self.cli_model_name else None


BUILTIN_MODELS: tuple[ModelProfile, ...] = (
    ModelProfile(
        id="opencode-custom-opus",
        name="Claude Opus 4.5 (custom gateway)",
        provider="custom-openai",
        cli_model_name="custom/claude-opus-4-5",
        quality=Quality(reasoning=10, code=9, speed=5, cost=3),
        scores_from="built-in",
        context_limit=200_000,
        output_limit=65_536,
        pricing=Pricing(input=5.0, output=25.0),
        aliases=("opus", "custom-opus"),
        fallback=("opencode-custom-sonnet", "opencode-default"),
    ),
    ModelProfile(
        id="opencode-custom-sonnet",
        name="Claude Sonnet 4.5 (custom gateway)",
        provider="custom-openai",
        cli_model_name="custom/claude-sonnet-4-5",
        quality=Quality(reasoning=9, code=9, speed=7, cost=6),
        scores_from="built-in",
        context_limit=200_000,
        output_limit=65_536,
        pricing=Pricing(input=3.0, output=15.0),
        aliases=("sonnet", "custom-sonnet"),
        fallback=("opencode-default",),
    ),
    ModelProfile(
        id="opencode-default",
        name="OpenCode's configured default model",
        provider="opencode",
        cli_model_name=None,
        quality=Quality(reasoning=7, code=7, speed=6, cost=5),
        scores_from="built-in",
        aliases=("default",),
    ),
)

# Scores for config models whose key names a known family; anything else gets neutral 5s.
_FAMILY_SCORES: tuple[tuple[str, Quality], ...] = (
    ("opus", Quality(reasoning=10, code=9, speed=5, cost=3)),
    ("sonnet", Quality(reasoning=9, code=9, speed=7, cost=6)),
    ("haiku", Quality(reasoning=6, code=7, speed=9, cost=9)),
    ("mini", Quality(reasoning=6, code=6, speed=9, cost=9)),
    ("flash", Quality(reasoning=6, code=6, speed=9, cost=9)),
)


class RegistryProblem(BaseModel):
    """An overlay entry that was skipped, and why."""

    model_config = ConfigDict(frozen=True)
    source: str
    entry: str
    reason: str

    def sentence(self) -> str:
        return f"{self.source}: model {self.entry!r} skipped: {self.reason}."


class OverlayEntry(BaseModel):
    """What an overlay may set for a model (by id). All fields are optional."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    cli_model_name: str | None = None
    quality: dict[str, float] | None = None
    aliases: list[str] | None = None
    fallback: list[str] | None = None
    context_limit: int | None = Field(None, gt=0)
    output_limit: int | None = Field(None, gt=0)
    pricing: Pricing | None = None

    @field_validator("cli_model_name")
    @classmethod
    def _shape(cls, value: str | None) -> str | None:
        if value is not None and not CLI_MODEL_RE.match(value):
            raise ValueError(f"{value!r} is not of the form <provider-id>/<model-key>")
        return value


class Registry(BaseModel):
    """Every model profile, in a stable order, plus the overlay problems met on the way."""

    model_config = ConfigDict(frozen=True)
    models: tuple[ModelProfile, ...]
    problems: tuple[RegistryProblem, ...] = ()

    def get(self, model_id: str) -> ModelProfile | None:
        return next((m for m in self.models if m.id == model_id), None)

    def find(self, hint: str) -> ModelProfile | None:
        """A model by id, else by alias, else by CLI model name (case-insensitive), or None.

        An id always names its own model, even when another entry lists it as an alias.
        """
        wanted = hint.strip().lower()
        tiers = (
            lambda m: {m.id.lower()},
            lambda m: {a.lower() for a in m.aliases},
            lambda m: {m.cli_model_name.lower()} if m.cli_model_name else set(),
        )
        for names_of in tiers:
            found = next((m for m in self.models if wanted in names_of(m)), None)
            if found is not None:
                return found
        return None

    def closest(self, hint: str, n: int = 3) -> list[str]:
        """The ids, aliases or CLI model names nearest to ``hint``, best first."""
        names: list[str] = []
        for model in self.models:
            names += [model.id, *model.aliases]
            if model.cli_model_name:
                names.append(model.cli_model_name)
        return difflib.get_close_matches(hint, names, n=n, cutoff=0.4)

    def by_cli_model_name(self, name: str) -> ModelProfile | None:
        return next((m for m in self.models if m.cli_model_name == name), None)


def overlay_paths(directory: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Overlay locations, lowest precedence first.

    * user: ``$XDG_CONFIG_HOME/nexus/models.json`` (``~/.config/nexus/models.json``);
    * project: ``.nexus/models.json`` in the working directory;
    * ``NEXUS_MODELS_FILE`` when set.
    """
    env = os.environ if env is None else env
    user = global_config_dir(env).parent / "nexus" / "models.json"
    paths = [user, Path(directory or os.getcwd()).resolve() / ".nexus" / "models.json"]
    if env.get("NEXUS_MODELS_FILE"):
        paths.append(Path(env["NEXUS_MODELS_FILE"]).expanduser())
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _family_quality(key: str) -> tuple[Quality, str]:
    lowered = key.lower()
    for family, quality in _FAMILY_SCORES:
        if family in lowered:
            return quality, f"family:{family}"
    return Quality(), "default"


def _from_config(
    config: MergedConfig, problems: list[RegistryProblem]
) -> tuple[list[ModelProfile], dict[str, dict[str, Any]]]:
    """New profiles for config models, and enrichments for built-ins keyed by id.

    A model nexus cannot take is reported in ``problems`` (never dropped without a word).
    """
    builtin_by_cli = {m.cli_model_name: m for m in BUILTIN_MODELS if m.cli_model_name}
    new: list[ModelProfile] = []
    enrich: dict[str, dict[str, Any]] = {}
    for pid, provider in config.providers.items():
        for key, entry in provider.models.items():
            cli_name = f"{pid}/{key}"
            if not CLI_MODEL_RE.match(cli_name):
                problems.append(
                    RegistryProblem(
                        source=config.origin("provider", pid, "models", key) or "the OpenCode config",
                        entry=cli_name,
                        reason="nexus passes only names of letters, digits and . _ - : @ / + to opencode run --model; "
                        "rename the provider or model key (the gateway's model id can stay in the entry's \"id\")",
                    )
                )
                continue
            fields: dict[str, Any] = {"declared_in": config.origin("provider", pid, "models", key)}
            if entry.limit and entry.limit.context:
                fields["context_limit"] = entry.limit.context
            if entry.limit and entry.limit.output:
                fields["output_limit"] = entry.limit.output
            cost = entry.cost or {}
            if isinstance(cost.get("input"), (int, float)) and isinstance(cost.get("output"), (int, float)):
                fields["pricing"] = Pricing(input=cost["input"], output=cost["output"])
            builtin = builtin_by_cli.get(cli_name)
            if builtin is not None:
                if entry.name:
                    fields["name"] = entry.name
                enrich[builtin.id] = fields
                continue
            quality, scores_from = _family_quality(key)
            new.append(
                ModelProfile(
                    id=f"opencode-{_slug(pid)}-{_slug(key)}",
                    name=entry.name or key,
                    provider=pid,
                    cli_model_name=cli_name,
                    quality=quality,
                    scores_from=scores_from,
                    source="opencode.json",
                    **fields,
                )
            )
    return new, enrich


def _read_overlay(path: Path) -> tuple[dict[str, Any], list[RegistryProblem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [RegistryProblem(source=str(path), entry="*", reason=f"cannot be read ({exc.strerror})")]
    try:
        data = jsonc.loads(text) if text.strip() else {}
    except jsonc.JsoncError as exc:
        return {}, [RegistryProblem(source=f"{path}:{exc.line}:{exc.column}", entry="*", reason=exc.reason)]
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return {}, [RegistryProblem(source=str(path), entry="*", reason='expected {"models": {"<id>": {…}}}')]
    return models, []


def _apply_overlay(models: dict[str, ModelProfile], path: Path, problems: list[RegistryProblem]) -> None:
    entries, found = _read_overlay(path)
    problems.extend(found)
    for model_id, raw in entries.items():

        def skip(reason: str, model_id: str = model_id) -> None:
            problems.append(RegistryProblem(source=str(path), entry=model_id, reason=reason))

        try:
            entry = OverlayEntry.model_validate(raw)
            existing = models.get(model_id)
            if existing is None:
                if not entry.cli_model_name:
                    skip("a new model needs a cli_model_name (<provider-id>/<model-key>)")
                    continue
                base: dict[str, Any] = {
                    "id": model_id,
                    "name": entry.name or model_id,
                    "provider": entry.cli_model_name.split("/", 1)[0],
                    "cli_model_name": entry.cli_model_name,
                }
            else:
                base = existing.model_dump()
            update = entry.model_dump(exclude_none=True)
            if "quality" in update:
                base["quality"] = Quality.model_validate({**dict(base.get("quality") or {}), **update.pop("quality")})
                base["scores_from"] = "overlay"
            base.update(update)
            base["source"] = "overlay" if existing is None else existing.source
            base["overlay_file"] = str(path)
            models[model_id] = ModelProfile.model_validate(base)
        except ValidationError as exc:
            skip(first_validation_problem(exc, top="entry"))


def build_registry(config: MergedConfig | None, overlays: Iterable[Path] = ()) -> Registry:
    """Assemble the registry from built-ins, the merged config and the overlay files."""
    models: dict[str, ModelProfile] = {m.id: m for m in BUILTIN_MODELS}
    problems: list[RegistryProblem] = []
    if config is not None:
        new, enrich = _from_config(config, problems)
        for model_id, fields in enrich.items():
            models[model_id] = models[model_id].model_copy(update=fields)
        default = config.data.get("model")
        if isinstance(default, str) and CLI_MODEL_RE.match(default):
            models["opencode-default"] = models["opencode-default"].model_copy(update={"cli_model_name": default})
        for profile in new:
            taken = models.get(profile.id)
            if taken is None:
                models[profile.id] = profile
            else:
                problems.append(
                    RegistryProblem(
                        source=profile.declared_in or "the OpenCode config",
                        entry=profile.cli_model_name or profile.id,
                        reason=f"its id {profile.id} is already {taken.cli_model_name or taken.id}'s; rename one of the two keys",
                    )
                )
    for path in overlays:
        _apply_overlay(models, path, problems)
    return Registry(models=tuple(models.values()), problems=tuple(problems))
