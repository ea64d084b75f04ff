"""`backrooms templates` and `backrooms models`: what a run can be started with."""

from __future__ import annotations

import argparse

from backrooms_engine import templates
from backrooms_engine.errors import TemplateError
from backrooms_engine.registry import load_registry

from .interrupts import Interrupts
from .runtime import template_dirs
from .settings import Settings


def cmd_templates(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    for name, path in templates.available(template_dirs(settings, args.templates_dir)).items():
        try:
            size = templates.load(path).size
        except TemplateError as exc:  # its message starts with the file (and line) already
            print(f"{name:28} broken: {exc}")
            continue
        noun = "participant" if size == 1 else "participants"
        print(f"{name:28} {f'{size} {noun}':16} {path}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    registry = load_registry(settings.models_file)
    print(f"{'alias':18} {'provider':11} {'api id':30} key")
    for alias in registry.aliases():
        spec = registry.get(alias)
        p = spec.provider
        if not p.key_env:
            key = "not needed"
        elif p.key_is_set(settings.env):
            key = f"{p.key_env} set"
        else:
            key = f"{p.key_env} missing" if p.key_required else f"{p.key_env} optional"
        print(f"{alias:18} {p.name:11} {spec.api_id:30} {key}")
    return 0
