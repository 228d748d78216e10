"""What one tool call did, as data: the observation, its outcome and the fault it met.

Every step's ``info`` carries the outcome (``info["outcome"]``) and the fault (``info["fault"]``), so nothing needs
to decide "was this rejected?" from the observation's text.

- ``ok``: the tool ran and answered (a write that went through changed the state);
- ``rejected``: the tool refused the call (it raised ``ToolError``) and changed nothing the task asks for;
- ``fault``: an injected fault answered instead (503, 429, 504, 409, or a stale read); ``fault`` names its kind;
- ``invalid``: the action was not a valid call of any tool (unparsable, unknown tool, wrong arguments).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAULT", "INVALID", "OK", "OUTCOMES", "REJECTED", "CallResult"]

OK, REJECTED, FAULT, INVALID = "ok", "rejected", "fault", "invalid"
OUTCOMES = (OK, REJECTED, FAULT, INVALID)


@dataclass(frozen=True, slots=True)
class CallResult:
    """One call's result. ``applied``: the call changed the state (a write that went through, or a timed-out write
    that was applied anyway); ``fault``: the kind of fault that answered (a call still rate-limited included)."""

    observation: str
    outcome: str
    fault: str | None = None
    applied: bool = False
