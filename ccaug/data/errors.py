"""Errors for bad input data, and the collector that either raises them or records them.

Every reader and the tiler report bad input through a `Problems` object, so that `--skip-invalid` works the
same everywhere: by default the first problem raises a `DataError` naming the file, the line (or the id) and
what was expected; with ``skip_invalid=True`` every problem is recorded and the offending item is skipped.
Degenerate but legal instances (zero area, fully outside a tile) are not errors: they are counted with
`Problems.drop` so that the summary can say how many were dropped and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad input: names the file, the line or the id, and what was expected."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, item: str | None = None):
        self.path = str(path)
        self.line = line
        self.item = item
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
        if self.item is not None:
            where += f" ({self.item})"
        return f"{where}: {self.message}"

    def __reduce__(self):  # picklable across worker processes
        return (DataError, (self.path, self.message, self.line, self.item))


@dataclass
class Problems:
    """Collects bad input (raising at once unless `skip_invalid`) and counts dropped degenerate instances."""

    skip_invalid: bool = False
    errors: list[DataError] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def report(self, path: str | Path, message: str, line: int | None = None, item: str | None = None) -> None:
        error = DataError(path, message, line=line, item=item)
        if not self.skip_invalid:
            raise error
        self.errors.append(error)

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] += count

    def merge(self, other: Problems) -> None:
        self.errors.extend(other.errors)
        self.dropped.update(other.dropped)

    def summary_lines(self, max_errors: int = 20) -> list[str]:
        lines = [f"skipped invalid input: {error}" for error in self.errors[:max_errors]]
        if len(self.errors) > max_errors:
            lines.append(f"... and {len(self.errors) - max_errors} more invalid items")
        lines += [f"dropped {count} instance(s): {reason}" for reason, count in sorted(self.dropped.items())]
        return lines
