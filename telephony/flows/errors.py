"""Problems found in a call flow document, each naming where it is and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class FlowProblem:
    """One problem: the flow and step it is in (None above that level) and the reason."""

    flow: str | None
    step: str | None
    reason: str

    def __str__(self) -> str:
        where = []
        if self.flow is not None:
            where.append(f"flow {self.flow}")
        if self.step is not None:
            where.append(f"step {self.step}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class FlowDocumentError(ValueError):
    """A call flow document that cannot be used; `problems` lists every problem found."""

    def __init__(self, source: str, problems: Sequence[FlowProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = "; ".join(str(problem) for problem in self.problems)
        # One line: the message ends up in a single log event.
        super().__init__(f"{self.summary}: {listed}")

    @property
    def summary(self) -> str:
        """The head of the message: "<source>: N problems"."""
        count = len(self.problems)
        return f"{self.source}: {count} problem{'s' if count != 1 else ''}"
