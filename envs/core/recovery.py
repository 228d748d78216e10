"""Recovery records: for every fault that fires and every rejected call, whether the agent then handled it.

``info["recovery"]`` (in ``reset``'s info and every step's, cumulative; final once the episode has ended) is a list
of records, one per event, in the order they happened::

    {"kind": "write_timeout", "turn": 4, "tool": "refund_items", "handled": True, "turns": 1,
     "detail": "read back with lookup_order(order_id='O-1') at turn 5"}

``kind`` is a fault kind or ``"rejected_call"`` (the tool refused the call); ``turn`` the turn it happened (0 for a
seeded error); ``turns`` the turns from it to the handling (None while, or if never, handled). The rules, judged on
the calls the agent made next (an action that is no valid call is skipped):

- ``write_timeout``: handled once the agent makes a read that shows whether the write took effect (the env's
  ``_read_back`` call, or any read whose answer differs between the state with the write and without it) before it
  makes the same write again; not handled if it makes the write again first, or if the write had gone through and
  it makes it again after reading (applied twice).
- ``transient_error``: handled when the agent makes the same call again.
- ``rate_limit``: handled when it makes the same call again once the limit has ended (calls before then are not
  handled yet).
- ``stale_read``: handled when it makes the same read again.
- ``concurrent_edit``: handled when its next call that answers is a read; not handled if it writes (or finishes)
  first.
- ``seeded_error``: handled when the earlier wrong action is undone in the final state
  (``ToolEnv._seeded_error_undone``, by default "the final state passes the checker"); ``turns``: to the write
  after which it stayed undone (to the episode's end with the default hook).
- ``rejected_call``: handled when the next call is not the identical call.

Whatever is not handled when the episode ends is ``handled: False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .outcomes import OK, REJECTED, CallResult
from .tools import ToolCall

if TYPE_CHECKING:
    from .env import ToolEnv
    from .faults import SeededError

__all__ = ["RECOVERY_KINDS", "RecoveryLog"]

RECOVERY_KINDS = ("transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit", "seeded_error",
                  "rejected_call")
_PENDING = "not handled yet"


@dataclass
class _Watch:
    """An event whose handling is still open."""

    record: dict[str, Any]
    call: ToolCall
    until: int = 0  # rate_limit: the turn the limit ends
    read_back: ToolCall | None = None  # write_timeout: the env's read-back of the write
    states: tuple[Any, Any] | None = None  # write_timeout: the state without and with the write
    applied: bool = False  # write_timeout: the write went through
    read_at: int | None = None  # write_timeout: the turn of the read that showed it


class RecoveryLog:
    """One episode's recovery records; ``ToolEnv`` feeds it every call and closes it at the episode's end."""

    def __init__(self, judge_seeded_each_write: bool = True) -> None:
        """``judge_seeded_each_write``: ask ``_seeded_error_undone`` after every change (a cheap domain hook), or
        only at the end (the default hook, the checker)."""
        self.records: list[dict[str, Any]] = []
        self._open: list[_Watch] = []
        self._seeded: dict[str, Any] | None = None
        self._variant = ""
        self._undone_since: int | None = None
        self._each_write = judge_seeded_each_write

    def copy_records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.records]

    # -- events -----------------------------------------------------------------------------------------------------

    def seeded(self, error: SeededError) -> None:
        self._variant = error.variant
        self._seeded = self._add("seeded_error", 0, None, f"{error.variant}: not undone yet")

    def observe(self, env: ToolEnv, call: ToolCall, result: CallResult, fired: dict[str, Any] | None) -> None:
        """``call`` answered ``result``; ``fired`` is the fault record it added (None if no new fault fired)."""
        turn, spec = env.turn, env.tool_specs()[call.name]
        for watch in list(self._open):
            if self._sees(env, watch, call, result, spec.write, turn):
                self._open.remove(watch)
        if self._seeded is not None and (result.applied or result.fault == "concurrent_edit"):
            self._check_seeded(env, turn)
        if result.outcome == REJECTED:
            self._watch("rejected_call", turn, call)
        elif fired is not None:
            watch = self._watch(fired["kind"], turn, call)
            if fired["kind"] == "rate_limit":
                watch.until = turn + fired["retry_after"]
            elif fired["kind"] == "write_timeout":
                watch.read_back, watch.applied = env._read_back(call), bool(fired["applied"])
                watch.states = env._faults.timeout_states

    def close(self, env: ToolEnv) -> None:
        """The episode has ended: what is still open was not handled."""
        for watch in self._open:
            if watch.read_at is None:
                self._settle(watch.record, False, None, "not handled by the end of the episode")
        self._open = []
        if self._seeded is not None:
            undone = bool(env._seeded_error_undone())
            since = self._undone_since if self._undone_since is not None else env.turn
            self._settle(self._seeded, undone, since if undone else None,
                         f"{self._variant}: {'undone' if undone else 'not undone'} in the final state")

    # -- rules ------------------------------------------------------------------------------------------------------

    def _sees(self, env: ToolEnv, watch: _Watch, call: ToolCall, result: CallResult, write: bool, turn: int) -> bool:
        """Apply ``watch``'s rule to the next call; True when the event is settled."""
        record, kind, same = watch.record, watch.record["kind"], call == watch.call
        since = turn - record["turn"]
        if kind in ("transient_error", "stale_read") and same:
            return self._settle(record, True, since, f"made again at turn {turn}")
        if kind == "rate_limit" and same and turn >= watch.until:
            return self._settle(record, True, since, f"made again at turn {turn}, after the limit ended")
        if kind == "concurrent_edit":
            if not write and result.outcome == OK:
                return self._settle(record, True, since, f"read with {call} at turn {turn}")
            if write:
                return self._settle(record, False, None, f"wrote again ({call}) at turn {turn} before reading")
        if kind == "rejected_call":
            if same:
                return self._settle(record, False, None, f"the same call again at turn {turn}")
            return self._settle(record, True, since, f"a different call next ({call.name})")
        if kind == "write_timeout":
            return self._sees_after_timeout(env, watch, call, result, write, turn)
        return False

    def _sees_after_timeout(self, env: ToolEnv, watch: _Watch, call: ToolCall, result: CallResult, write: bool,
                            turn: int) -> bool:
        record = watch.record
        if watch.read_at is None:
            if not write and result.outcome == OK and self._shows(env, watch, call):
                watch.read_at = turn
                self._settle(record, True, turn - record["turn"], f"read back with {call} at turn {turn}")
                return not watch.applied  # a write that went through stays watched: made again, it applies twice
            if call == watch.call:
                twice = " (it had been applied: now it is applied twice)" if watch.applied and result.applied else ""
                return self._settle(record, False, None, f"made the write again at turn {turn} without reading back"
                                                         f"{twice}")
            return False
        if call == watch.call and result.applied:
            return self._settle(record, False, None, f"read back at turn {watch.read_at}, then made the write again "
                                                     f"at turn {turn}: it is applied twice")
        return False

    @staticmethod
    def _shows(env: ToolEnv, watch: _Watch, read: ToolCall) -> bool:
        """Whether ``read`` tells whether the timed-out write took effect."""
        if read == watch.read_back:
            return True
        spec = env.tool_specs()[read.name]
        without, with_write = (env._on_state(s, lambda: env._execute(spec, read))[0].observation for s in watch.states)
        return without != with_write

    def _check_seeded(self, env: ToolEnv, turn: int) -> None:
        if not self._each_write:
            return  # the default hook (the checker) is judged once, at the end
        if env._seeded_error_undone():
            if self._undone_since is None:
                self._undone_since = turn
        else:
            self._undone_since = None

    # -- records ----------------------------------------------------------------------------------------------------

    def _add(self, kind: str, turn: int, tool: str | None, detail: str = _PENDING) -> dict[str, Any]:
        record = {"kind": kind, "turn": turn, "tool": tool, "handled": False, "turns": None, "detail": detail}
        self.records.append(record)
        return record

    def _watch(self, kind: str, turn: int, call: ToolCall) -> _Watch:
        watch = _Watch(self._add(kind, turn, call.name), call)
        self._open.append(watch)
        return watch

    @staticmethod
    def _settle(record: dict[str, Any], handled: bool, turns: int | None, detail: str) -> bool:
        record.update(handled=handled, turns=turns if handled else None, detail=detail)
        return True

