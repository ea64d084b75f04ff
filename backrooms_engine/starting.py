"""Starting a run, one way in (issue 14): a request is checked once, stored with what rebuilds it
anywhere, and its conversation is built from the stored record by the same code a resume uses.

    check(spec)                 models, template, fit, keys, budget: a Plan, or a ConfigError
                                whose message is for the person who asked (nothing stored yet)
    store(plan, ...)            the run row with its blueprint (the template as loaded, the
                                resolved model specs): RunRecord, queued or this process's own
    plan_of(record)             for a run stored earlier, perhaps by another process: its stored
                                blueprint (or, for runs older than migration 008, the templates
                                folder and the registry), checked against this process's keys
    conversation(record, plan, history)
                                the contexts after the stored replies, with the stored actors

A blueprint holds no secret: a model spec names the variables holding its key and URL, and the
process that drives the run reads them from its own environment.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import budgets, templates
from .caps import Caps
from .conversation import Conversation, Participant, check_fit, participants_for
from .errors import StoreError
from .ports import TranscriptStore
from .pricing import Prices
from .records import Blueprint, ParticipantInfo, Reply, RunRecord, RunSpec
from .registry import PROVIDER_KINDS, ModelSpec, ProviderSpec, Registry, check_keys


@dataclass(frozen=True)
class Plan:
    """What a run runs: its spec, its template as loaded and its participants' model specs."""

    spec: RunSpec
    template: templates.Template
    specs: tuple[ModelSpec, ...]


class Starts:
    def __init__(
        self,
        registry: Registry,
        template_dirs: Sequence[Path],
        env: Mapping[str, str],
        prices: Mapping[str, Prices],
    ) -> None:
        self.registry = registry
        self.template_dirs = list(template_dirs)
        self._env = env
        self._prices = prices

    def check(self, spec: RunSpec) -> Plan:
        """Raises ConfigError subclasses whose messages are meant for the user as they are."""
        specs = tuple(self.registry.resolve(spec.models))
        template = templates.find(spec.template, self.template_dirs)
        check_fit(template, specs)
        check_keys(specs, self._env)
        budgets.check_priced(spec.budget_usd, specs, self._prices)
        return Plan(spec, template, specs)

    async def store(
        self,
        store: TranscriptStore,
        plan: Plan,
        log_path: str,
        created_at: datetime,
        *,
        queued: bool = False,
        caps: Caps | None = None,
    ) -> RunRecord:
        cast = [_info(p) for p in participants_for(plan.specs)]
        return await store.create_run(
            plan.spec,
            cast,
            log_path,
            created_at,
            blueprint=blueprint_of(plan),
            queued=queued,
            caps=caps,
        )

    async def plan_of(self, store: TranscriptStore, record: RunRecord) -> Plan:
        """The run's plan as stored, checked against this process's keys: ConfigError (or
        StoreError for an unreadable blueprint) when it cannot be driven here."""
        stored = await store.blueprint(record.id)
        if stored is None:  # stored before runs kept their blueprint (migration 008)
            specs = tuple(self.registry.resolve([p.alias for p in record.participants]))
            template = templates.find(record.spec.template, self.template_dirs)
        else:
            template, specs = read_blueprint(record, stored)
        check_keys(specs, self._env)
        return Plan(record.spec, template, specs)

    @staticmethod
    def conversation(record: RunRecord, plan: Plan, history: Sequence[Reply]) -> Conversation:
        # The stored actor names win, so a renamed display name never changes a run midway.
        participants = [
            Participant(p.position, spec, p.actor)
            for p, spec in zip(record.participants, plan.specs, strict=True)
        ]
        replies = [(r.position, r.text) for r in history]
        return Conversation.rebuild(plan.template, participants, replies)


def blueprint_of(plan: Plan) -> Blueprint:
    models = [dataclasses.asdict(spec) for spec in plan.specs]
    return Blueprint(templates.as_jsonl(plan.template), json.dumps(models, ensure_ascii=False))


def read_blueprint(
    record: RunRecord, stored: Blueprint
) -> tuple[templates.Template, tuple[ModelSpec, ...]]:
    origin = Path(f"run {record.id}'s stored template {record.spec.template!r}")
    template = templates.parse(record.spec.template, origin, stored.template)
    try:
        raw = json.loads(stored.models)
        specs = tuple(_model_spec(item) for item in raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"run {record.id}: its stored model specs are unreadable: {exc}") from None
    if len(specs) != len(record.participants):
        raise StoreError(
            f"run {record.id}: {len(specs)} stored model specs for "
            f"{len(record.participants)} participants"
        )
    return template, specs


def _model_spec(item: Any) -> ModelSpec:
    """A spec as `blueprint_of` wrote it; fields a later version added are left out."""
    provider = _known(ProviderSpec, item["provider"])
    if provider["kind"] not in PROVIDER_KINDS:
        raise ValueError(f"unknown provider kind {provider['kind']!r}")
    fields = _known(ModelSpec, item)
    fields["provider"] = ProviderSpec(**provider)
    return ModelSpec(**fields)


def _known(cls: type, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise TypeError(f"expected an object, got {type(item).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in item.items() if k in names}


def _info(p: Participant) -> ParticipantInfo:
    return ParticipantInfo(p.position, p.spec.alias, p.actor, p.spec.api_id, p.spec.provider.name)
