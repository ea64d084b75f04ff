"""`backrooms db copy --to URL`: the SQLite archive the settings name (BACKROOMS_DB, or a
sqlite:/// BACKROOMS_DATABASE_URL) copied into an empty PostgreSQL store, ids and all, for a
community moving to several processes (the README's "Deploying"). The copy itself is the store
package's (backrooms_engine/store/copy.py); this only names the two stores and prints the result.
"""

from __future__ import annotations

import argparse

from backrooms_engine.store.copy import copy_store, target_location

from . import eventloop
from .interrupts import Interrupts
from .settings import Settings


def cmd_db(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    target = target_location(args.to)
    copied = eventloop.run(copy_store(settings.store, target), settings.event_loop)
    print(copied.summary)
    return 0
