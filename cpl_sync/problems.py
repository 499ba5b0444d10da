"""Problems found in a CPL file, each pointing at what the user sees in Excel: row, column, reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # the file is rejected whole
    WARNING = "warning"  # recorded with the sync run; the file is still applied


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the column name a spreadsheet shows."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


@dataclass(frozen=True)
class Problem:
    reason: str
    row: int | None = None  # 1-based sheet row; None for problems with the file as a whole
    column: str | None = None  # the heading as written in the file
    column_index: int | None = None  # 0-based position in the sheet
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            letter = f" {column_letter(self.column_index)}" if self.column_index is not None else ""
            where.append(f'column{letter} "{self.column}"')
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "column_letter": None if self.column_index is None else column_letter(self.column_index),
            "reason": self.reason,
            "severity": self.severity.value,
        }


class CplFileRejected(Exception):
    """The file cannot become a snapshot. `problems` holds the first errors; `error_count` all of them."""

    def __init__(
        self, problems: list[Problem], error_count: int | None = None, warnings: list[Problem] | None = None
    ) -> None:
        self.problems = problems
        self.error_count = len(problems) if error_count is None else error_count
        self.warnings = warnings or []
        shown = "; ".join(str(p) for p in problems[:3])
        more = f" (and {self.error_count - 3} more)" if self.error_count > 3 else ""
        super().__init__(f"CPL file rejected with {self.error_count} error(s): {shown}{more}")


def file_problem(reason: str) -> CplFileRejected:
    return CplFileRejected([Problem(reason)])
