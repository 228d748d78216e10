"""The privileged reference policy's bookkeeping: its plan, and the recoveries it makes before the plan resumes.

The reference (``ToolEnv.reference_call``) makes its plan's calls one per step and, around them, recovers from
faults: it makes a call again after a 503, a 429 (once the limit has passed) or a stale read; it reads back
(``_read_back``) after a 504 or a 409; it plans again (``_reference_plan``) after a conflict, after a timeout of a
write it had not planned, and after any write off its plan that changed the state (a noisy policy's random call or
near miss). After a 504 on one of its own writes it does not plan again: the read-back shows whether the write went
through, and the plan drops it if it did.

``ReferenceTracker.observe`` sees every call, whoever made it, so the reference can take over at any step. Its state
is a function of the episode's actions alone, never of when ``reference_call`` was asked: a plan made stale by a
change is computed when first asked for, from a copy of the state right after that change, and the calls made since
are then applied to it. So a branch start (``reset`` with ``options["actions"]``) continues the reference exactly as
the recorded episode would have, and an episode no one asks the reference about never plans (a state copy per
change is all it costs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .outcomes import CallResult
from .tools import ToolCall

if TYPE_CHECKING:
    from .env import ToolEnv

__all__ = ["ReferenceTracker"]

_READ_BACK_AFTER = ("write_timeout", "concurrent_edit")


class ReferenceTracker:
    """The reference's plan and recovery queue for one episode."""

    def __init__(self, plan: list[ToolCall] | None, env: ToolEnv):
        self.plan: list[ToolCall] | None = None
        self.recovery: list[ToolCall] = []  # calls to make before the plan resumes
        self._since: tuple[Any, int, list[ToolCall]] | None = None  # (state, turn, recovery) to plan from
        self._events: list[tuple[ToolCall, CallResult, ToolCall | None, Any, int]] = []  # calls since then
        if plan is not None:
            self.plan = list(plan)
        else:
            self._plan_later(env)

    def next_call(self, env: ToolEnv) -> ToolCall:
        """The reference's next call from the current state."""
        if self._since is not None:
            self._catch_up(env)
        if self.recovery:
            return self.recovery[0]
        if not self.plan:
            self.plan = env._reference_plan()
            if not self.plan:
                raise RuntimeError(f"{type(env).__name__}._reference_plan() returned no calls")
        return self.plan[0]

    def observe(self, env: ToolEnv, call: ToolCall, result: CallResult) -> None:
        """Keep the plan and the recoveries up to date after ``call`` answered ``result``."""
        read_back = env._read_back(call) if result.fault in _READ_BACK_AFTER else None
        if self._since is not None:  # the plan is not known yet: keep the call, and the state it may plan from
            changed = result.applied or result.fault in _READ_BACK_AFTER
            self._events.append((call, result, read_back, env.state.copy() if changed else None, env.turn))
            return
        self._apply(env, call, result, read_back, None, env.turn)

    # -- internals --------------------------------------------------------------------------------------------------

    def _plan_later(self, env: ToolEnv, after: Any = None, turn: int = 0) -> None:
        """The plan is stale: plan, when first asked, from the state as it is now. While catching up the plan is
        wanted at once, from ``after`` (the state the call left, at ``turn``)."""
        if after is not None:
            self.plan = env._plan_on(after, turn)
            return
        self.plan = None
        self._since = (env.state.copy(), env.turn, list(self.recovery))
        self._events = []

    def _catch_up(self, env: ToolEnv) -> None:
        state, turn, recovery = self._since
        events, self._since, self._events = self._events, None, []
        self.plan, self.recovery = env._plan_on(state, turn), list(recovery)
        for call, result, read_back, after, turn in events:
            self._apply(env, call, result, read_back, after, turn)

    def _apply(self, env: ToolEnv, call: ToolCall, result: CallResult, read_back: ToolCall | None, after: Any,
               turn: int) -> None:
        """The bookkeeping for one call; ``after`` is the state it left (only while catching up)."""
        fault, own = result.fault, _heads(self.plan, call)
        if fault in _READ_BACK_AFTER:  # an outcome the reference cannot see: read back first
            self.recovery = [read_back] if read_back is not None else []
            if fault == "write_timeout" and own:  # its own write: the read-back says whether to make it again
                if result.applied:
                    self.plan.pop(0)
            else:
                self._plan_later(env, after, turn)
        elif fault is not None:  # 503, 429 or a stale read: nothing happened, so the same call again
            if not _heads(self.recovery, call) and not own and not env.tool_specs()[call.name].write:
                self.recovery.insert(0, call)  # a read off the plan (a check of a write, say) is made again
        elif _heads(self.recovery, call):
            self.recovery.pop(0)
        elif own:
            self.plan.pop(0)
        elif result.applied:  # a change off the plan: the plan is stale
            self._plan_later(env, after, turn)


def _heads(calls: list[ToolCall] | None, call: ToolCall) -> bool:
    return bool(calls) and calls[0] == call
