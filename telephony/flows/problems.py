"""Problems found in a call flow document, each naming where it is and why."""

from __future__ import annotations

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
