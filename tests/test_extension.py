"""Extending an environment keeps its benchmark: task identity is ``task_family``, not the Python class name.

An ablation that subclasses a shipped environment to add one tool (or only renames it) must see every task of both
splits as it was, seeded mistakes included; a new environment gets its own family.
"""

from __future__ import annotations

import pytest
from test_core import LedgerEnv
from test_task_identity import MODES, start_digest

from envs.core import FaultConfig, SeededError, ToolCall, ToolEnv, tool
from envs.spreadsheet.env import SpreadsheetEnv
from envs.support.env import SupportDeskEnv


class SupportWithNotes(SupportDeskEnv):
    """The support desk plus a scratchpad tool: an ablation's typical change."""

    @tool
    def take_note(self, text: str) -> str:
        """Write a private note; the customer never sees it.

        Args:
            text: The note.
        """
        return "noted"


class SpreadsheetWithCount(SpreadsheetEnv):
    @tool
    def count_sheets(self) -> str:
        """Count the workbook's sheets."""
        return f"{len(self.state.book.sheets)} sheet(s)"


Renamed = type("SomethingElseEntirely", (SupportDeskEnv,), {})


@pytest.mark.parametrize(("base", "extended"), [(SupportDeskEnv, SupportWithNotes), (SupportDeskEnv, Renamed),
                                                (SpreadsheetEnv, SpreadsheetWithCount)])
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_a_subclass_that_adds_a_tool_keeps_every_task(base, extended, mode, split):
    faults, seeds = MODES[mode]
    seeds = seeds[:30]
    assert extended.task_family == base.task_family
    assert start_digest("", split, seeds, env=extended(faults=faults)) == start_digest("", split, seeds,
                                                                                      env=base(faults=faults))


def test_the_added_tool_is_a_tool_and_the_fault_kinds_are_inherited():
    assert "take_note" in SupportWithNotes.tool_specs() and "take_note" not in SupportDeskEnv.tool_specs()
    assert SupportWithNotes.fault_kinds == SupportDeskEnv.fault_kinds
    env = SupportWithNotes(faults=SupportWithNotes.all_faults(0.2))
    obs, info = env.reset(seed=0, options={"task_seed": 0})
    assert "take_note" in [t["function"]["name"] for t in info["tools"]]


def test_a_new_environment_is_its_own_family_and_its_subclasses_share_it():
    class Pantry(LedgerEnv):
        pass

    class PantryPlus(Pantry):
        pass

    class Pinned(LedgerEnv):
        task_family = "mylab/pantry"

    assert LedgerEnv.task_family == "LedgerEnv" and Pantry.task_family == PantryPlus.task_family == "LedgerEnv"
    assert Pinned.task_family == "mylab/pantry"
    tasks = {}
    for cls in (LedgerEnv, PantryPlus, Pinned):
        env = cls()
        env.reset(seed=0, options={"task_seed": 5})
        tasks[cls] = env.task.amounts
    assert tasks[LedgerEnv] == tasks[PantryPlus] != tasks[Pinned]


def test_fault_kinds_follow_the_hooks_an_environment_implements():
    class Bare(ToolEnv):
        def _read_back(self, call):
            return None

        @tool(finish=True)
        def done(self) -> str:
            """Finish."""
            return "done"

    class WithEdit(Bare):
        def _concurrent_edit(self, rng):
            return None

    class WithBoth(WithEdit):
        def _seed_error(self, rng):
            return SeededError("x", [ToolCall("done")])

    assert Bare.fault_kinds == ("transient_error", "rate_limit", "write_timeout", "stale_read")
    assert WithEdit.fault_kinds == Bare.fault_kinds + ("concurrent_edit",)
    assert WithBoth.fault_kinds == Bare.fault_kinds + ("concurrent_edit", "seeded_error")
    assert WithBoth.all_faults(0.2) == FaultConfig.all(0.2)
    assert Bare.all_faults(0.3) == FaultConfig(transient_error=0.3, rate_limit=0.3, write_timeout=0.3, stale_read=0.3)
    with pytest.raises(ValueError, match="does not support fault kind.*all_faults"):
        Bare(faults=FaultConfig.all(0.1))
    with pytest.raises(TypeError, match="does not implement _seed_error"):
        type("Claims", (Bare,), {"fault_kinds": ("seeded_error",)})
    with pytest.raises(TypeError, match="unknown kind"):
        type("Typo", (Bare,), {"fault_kinds": ("stale_reads",)})
