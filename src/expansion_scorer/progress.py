"""Progress of long work: a bar with what is done and the time left, on a terminal only.

On a terminal (standard error is a TTY) and without `--quiet` (or `EXPANSION_QUIET=1`), the
training set, the backtest folds, the final fit and scoring in chunks each show a tqdm bar that
disappears when done; anywhere else (a pipe, a log file, CI) nothing extra is printed and the
commands print their step lines as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
QUIET = "EXPANSION_QUIET"


def shown() -> bool:
    return sys.stderr.isatty() and os.environ.get(QUIET, "") not in ("1", "true", "yes")


def progress(items: Iterable[T], what: str, total: int | None = None) -> Iterator[T]:
    """`items`, with a bar named `what` when progress is shown."""
    if not shown():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=what, total=total, leave=False, file=sys.stderr, unit="step")


class Stages:
    """A bar over a job's named stages: `done(name)` after each."""

    def __init__(self, what: str, names: list[str]) -> None:
        self._bar = None
        if shown():
            from tqdm import tqdm

            self._bar = tqdm(total=len(names), desc=what, leave=False, file=sys.stderr)
            self._bar.set_postfix_str(names[0])
        self._names = names

    def done(self, name: str) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        following = self._names.index(name) + 1 if name in self._names else len(self._names)
        if following < len(self._names):
            self._bar.set_postfix_str(self._names[following])
        else:
            self._bar.close()
