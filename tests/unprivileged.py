"""Running a child process as a user whom file permissions bind, so that "this directory is read-only"
means the same under CI (which runs as root) as on a developer's machine.

Root writes into a 0o555 directory (CAP_DAC_OVERRIDE), so a case about an unwritable path proves
nothing as root. As root, the child runs as `nobody` through util-linux's `setpriv` instead. It
keeps one capability, CAP_DAC_READ_SEARCH (read any file, enter any directory, never write): the
interpreter and its packages live where root installed them, often under /root, which nobody
else may enter. What the child works in comes from `workspace`: a folder it owns, on a path it can
walk without that capability (access(2), which the store calls, ignores it), so not under
pytest's root-only /tmp/pytest-of-root. Run as anyone else, the child runs as that user, unchanged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

NOBODY = 65534  # the conventional uid and gid of `nobody` / `nogroup`


def as_root() -> bool:
    return os.geteuid() == 0


def command(argv: Sequence[str]) -> list[str]:
    """`argv`, run as `nobody` when we are root; as it is otherwise."""
    if not as_root():
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise AssertionError(
            "running as root, these tests need `setpriv` (util-linux) to run as another user"
        )
    return [
        setpriv,
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--",
        *argv,
    ]


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A fresh folder the child owns, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="backrooms-unprivileged-"))
    try:
        give(path)
        yield path
    finally:
        shutil.rmtree(path)


def give(path: Path) -> None:
    """Make `path` and everything below it the child's own (when we are root)."""
    if not as_root():
        return
    os.chown(path, NOBODY, NOBODY)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), NOBODY, NOBODY, follow_symlinks=False)
