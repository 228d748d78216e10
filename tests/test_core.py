"""The core's fault semantics, on a toy environment small enough to reason about exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from envs.core import CheckResult, FaultConfig, SeededError, ToolCall, ToolEnv, ToolError, tool


@dataclass
class Ledger:
    entries: list[int] = field(default_factory=list)

    def copy(self) -> Ledger:
        return Ledger(list(self.entries))


@dataclass
class Task:
    amounts: list[int]
    template: str = "ledger"

    @property
    def required_steps(self) -> int:
        return len(self.amounts) + 1


class LedgerEnv(ToolEnv):
    """Append the requested amounts to a ledger, once each."""

    description = "toy ledger"
    fault_kinds = ("transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit", "seeded_error")

    def _generate_task(self, rng, split, task_seed):
        return Task([int(x) for x in rng.integers(1, 100, size=3)])

    def _setup(self, task):
        self.state = Ledger()

    def _prompt(self):
        return f"Append {self.task.amounts} to the ledger, then finish."

    def _check(self):
        ok = self.state.entries == self.task.amounts
        return CheckResult(float(ok), {"ledger": ok}, [] if ok else [f"ledger is {self.state.entries}"])

    def _reference_plan(self):
        done = self.state.entries
        if done != self.task.amounts[: len(done)]:  # repair: remove the wrong tail
            return [ToolCall("pop", {}), *self._rest(done[:-1])]
        return self._rest(done)

    def _rest(self, done):
        return [ToolCall("append", {"amount": a}) for a in self.task.amounts[len(done):]] + [ToolCall("finish")]

    def _seed_error(self, rng):
        return SeededError("extra_entry", [ToolCall("append", {"amount": 1000})])

    def _concurrent_edit(self, rng):
        n = len(self.state.entries)
        if n < len(self.task.amounts):
            self.state.entries.append(self.task.amounts[n])
            return "a colleague appended the next amount"
        return None

    def _read_back(self, call):
        return ToolCall("read", {})

    @tool
    def read(self) -> str:
        """Show the ledger."""
        return f"ledger: {self.state.entries}"

    @tool(write=True)
    def append(self, amount: int) -> str:
        """Append an amount.

        Args:
            amount: The amount to append.
        """
        if amount <= 0:
            raise ToolError(f"amount must be positive, got {amount}")
        self.state.entries.append(amount)
        return f"appended {amount}"

    @tool(write=True)
    def pop(self) -> str:
        """Remove the last entry."""
        if not self.state.entries:
            raise ToolError("the ledger is empty")
        return f"removed {self.state.entries.pop()}"

    @tool(finish=True)
    def finish(self) -> str:
        """Finish the task."""
        return "done"


def call(name, **arguments):
    return json.dumps({"name": name, "arguments": arguments})


def run_reference(env, seed=0):
    env.reset(seed=seed, options={"task_seed": 0})
    log = []
    while True:
        action = env.reference_action()
        obs, reward, terminated, truncated, info = env.step(action)
        log.append((json.loads(action)["name"], obs))
        if terminated or truncated:
            return log, reward, info


def test_fault_free_reference_is_the_plan():
    log, reward, info = run_reference(LedgerEnv())
    assert [n for n, _ in log] == ["append"] * 3 + ["finish"] and reward == 1.0 and info["faults"] == []


def test_transient_error_does_nothing_and_the_retry_is_immune():
    env = LedgerEnv(faults=FaultConfig.only("transient_error", 1.0))
    log, reward, info = run_reference(env)
    assert [n for n, _ in log] == ["append", "append"] * 3 + ["finish", "finish"]
    assert all("503" in obs for obs in [o for _, o in log][::2]) and reward == 1.0
    assert [f["kind"] for f in info["faults"]] == ["transient_error"] * 4


def test_rate_limit_blocks_the_tool_for_the_retry_after_time():
    env = LedgerEnv(faults=FaultConfig.only("rate_limit", 1.0))
    env.reset(seed=0, options={"task_seed": 0})
    obs, *_, info = env.step(env.reference_action())
    wait = info["faults"][0]["retry_after"]
    assert "429" in obs and f"Retry after {wait} s" in obs
    for _ in range(wait - 1):
        obs, *_, info = env.step(env.reference_action())
        assert "429" in obs and len(info["faults"]) == 1  # still blocked: no new fault, nothing applied
    assert env.state.entries == []
    obs, *_ = env.step(env.reference_action())
    assert obs.startswith("appended")


def test_write_timeout_applies_half_the_time_and_blind_retry_double_applies():
    applied = []
    for seed in range(40):
        env = LedgerEnv(faults=FaultConfig.only("write_timeout", 1.0))
        env.reset(seed=seed, options={"task_seed": 0})
        amount = env.task.amounts[0]
        obs, *_, info = env.step(call("append", amount=amount))
        assert "504" in obs and "may or may not" in obs
        applied.append(info["faults"][0]["applied"])
        assert env.state.entries == ([amount] if applied[-1] else [])
        env.step(call("append", amount=amount))  # blind retry (immune: applies)
        assert env.state.entries == [amount] * (1 + applied[-1])
    assert 10 < sum(applied) < 30


def test_reference_reads_back_after_a_timeout_and_never_double_applies():
    for seed in range(20):
        log, reward, info = run_reference(LedgerEnv(faults=FaultConfig.only("write_timeout", 1.0)), seed)
        assert reward == 1.0, (seed, log)
        names = [n for n, _ in log]
        assert all(names[i + 1] == "read" for i, (_, o) in enumerate(log) if "504" in o)


def test_stale_read_shows_the_state_before_the_latest_write_once():
    env = LedgerEnv(faults=FaultConfig.only("stale_read", 1.0))
    env.reset(seed=0, options={"task_seed": 0})
    assert env.step(call("read"))[0] == "ledger: []"  # nothing written yet: nothing stale
    env.step(call("append", amount=5))
    stale, *_, info = env.step(call("read"))
    fresh, *_ = env.step(call("read"))
    assert stale == "ledger: []" and fresh == "ledger: [5]" and info["faults"][-1]["kind"] == "stale_read"


def test_concurrent_edit_rejects_the_write_and_the_reference_does_not_repeat_it():
    env = LedgerEnv(faults=FaultConfig.only("concurrent_edit", 1.0))
    log, reward, info = run_reference(env)
    assert "409" in log[0][1] and log[1][0] == "read" and reward == 1.0
    assert [f["kind"] for f in info["faults"]] == ["concurrent_edit"]  # once per episode
    assert len(log) == 1 + 1 + 2 + 1  # conflict, read back, the two amounts left, finish


def test_an_off_plan_write_re_plans_only_if_it_changed_something():
    class Counting(LedgerEnv):
        plans = 0

        def _reference_plan(self):
            Counting.plans += 1
            return super()._reference_plan()

    env = Counting()
    env.reset(seed=0, options={"task_seed": 0})
    planned = env.reference_action()
    obs, *_ = env.step(call("append", amount=-1))  # a slip the tool rejects: the plan stands
    assert obs.startswith("error: ") and env.reference_action() == planned and Counting.plans == 1
    env.step(call("append", amount=7))  # a wrong write that went through: plan again, from the new state
    assert env.reference_action() == call("pop") and Counting.plans == 2


def test_seeded_error_is_drawn_from_the_task_and_repaired():
    env = LedgerEnv(faults=FaultConfig.only("seeded_error", 1.0))
    starts = set()
    for seed in range(3):
        env.reset(seed=seed, options={"task_seed": 4})
        starts.add(tuple(env.state.entries))
    assert starts == {(1000,)}
    log, reward, info = run_reference(env)
    assert log[0][0] == "pop" and reward == 1.0 and info["faults"][0]["variant"] == "extra_entry"


def test_all_faults_at_rate_one_still_terminate_with_success():
    for seed in range(20):
        log, reward, info = run_reference(LedgerEnv(faults=FaultConfig.all(1.0), max_turns=200), seed)
        assert reward == 1.0, log


def test_tool_errors_are_observations_and_other_exceptions_propagate():
    env = LedgerEnv()
    env.reset(seed=0)
    obs, _, _, _, info = env.step(call("append", amount=-3))
    assert obs == "error: amount must be positive, got -3" and not info["invalid_action"] and info["tool"] == "append"
    env.state = None  # an environment bug must not be hidden from its author
    with pytest.raises(AttributeError):
        env.step(call("read"))


def test_unsupported_fault_kind_and_missing_finish_tool_are_errors():
    class NoStale(LedgerEnv):
        fault_kinds = ("transient_error",)

    with pytest.raises(ValueError, match="does not support fault kind"):
        NoStale(faults={"stale_read": 0.1})

    class NoFinish(ToolEnv):
        @tool
        def look(self) -> str:
            """Look."""
            return ""

    with pytest.raises(TypeError, match="finishing tool"):
        NoFinish()


def test_observations_are_ascii_and_bounded():
    from envs.core import MAX_OBSERVATION, sanitize

    text = sanitize("caf\u00e9 \r" + "x" * 20_000)
    assert text.startswith("caf? ?") and len(text) == MAX_OBSERVATION and text.endswith("characters truncated]")
    assert np.all([c.isascii() for c in text])


def test_choices_in_a_description_must_come_last():
    from envs.core.tools import tool_schema

    def pick(self, size: str) -> str:
        """Pick a size.

        Args:
            size: The size (choices: ["S", "M"])
        """

    def misplaced(self, size: str) -> str:
        """Pick a size.

        Args:
            size: The size (choices: ["S", "M"]) the customer asked for.
        """

    assert tool_schema(pick)["function"]["parameters"]["properties"]["size"]["enum"] == ["S", "M"]
    with pytest.raises(TypeError, match="move it to the end"):
        tool_schema(misplaced)


# -- hostile action text: every malformed action is an error observation, and a step's work stays bounded ----------


@pytest.mark.parametrize(("action", "words"), [
    ('{"name": "append", "arguments": {"amount": ' + "9" * 5000 + "}}", ["too large", "finite"]),
    ('{"name": ' + "9" * 5000 + "}", ["too large"]),
    ('{"name": "append", "arguments": {"amount": 5, "x": [' + "1" * 4301 + "]}}", ["too large"]),
    ('{"name": "append", "arguments": "{\\"amount\\": ' + "9" * 5000 + '}"}', ["not valid JSON", "too large"]),
    ('{"name": "append", "arguments": {"amount": ' + "9" * 320 + "}}", ["too large"]),
    ('{"name": "append", "arguments": {"amount": 1e999}}', ["too large"]),
    ('{"name": "append", "arguments": {"amount": -1e999}}', ["too large"]),
    ('{"name": "append", "arguments": {"amount": NaN}}', ["NaN", "finite"]),
    ('{"name": "append", "arguments": {"amount": Infinity}}', ["Infinity", "finite"]),
    ('{"name": "append", "arguments": {"amount": ' + "[" * 988 + "]" * 988 + "}}", ["nested too deeply"]),
    ('{"name": "append", "arguments": {"amount": ' + "[" * 40 + "]" * 40 + "}}", ["nested too deeply"]),
    ('{"name": "append", "arguments": {"amount": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}}", ["nested too deeply"]),
    ("\ufeff" + call("read"), ["tool call"]),
])
def test_hostile_json_becomes_an_error_observation(action, words):
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs.startswith("error: ") and info["invalid_action"] and env.state.entries == [], obs[:200]
    for word in words:
        assert word in obs, obs[:300]
    assert env.observation_space.contains(obs)


def test_wrong_type_messages_show_a_bounded_preview_of_any_value():
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    deep = "[" * 30 + "]" * 30
    wide = "[" + ", ".join(["[1, 2, 3]"] * 200_000) + "]"
    for value in (deep, wide, '{"k": ' + wide + "}"):
        obs, *_, info = env.step('{"name": "append", "arguments": {"amount": ' + value + "}}")
        assert info["invalid_action"] and "must be an integer" in obs and len(obs) < 200, obs[:300]


def test_largest_finite_numbers_still_reach_the_tool():
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    obs, *_ = env.step('{"name": "append", "arguments": {"amount": 17' + "0" * 307 + "}}")
    assert obs.startswith("appended 17000"), obs[:80]


def test_suggestions_never_compare_a_word_that_cannot_match(monkeypatch):
    from envs.core import tools

    seen = []
    real = tools.difflib.get_close_matches

    def spy(word, options, *args, **kwargs):
        seen.append((len(word), max(map(len, options))))
        return real(word, options, *args, **kwargs)

    monkeypatch.setattr(tools.difflib, "get_close_matches", spy)
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    for action in (call("x" * 10_000_000), call("append", **{"a" * 10_000_000: 1}),
                   call("append" * 3), call("append", **{"amount" * 3: 1})):
        obs, *_, info = env.step(action)
        assert info["invalid_action"] and "did you mean" not in obs
    assert all(word <= 2.34 * longest for word, longest in seen), seen
    obs, *_ = env.step(call("apend", amount=1))
    assert "did you mean 'append'?" in obs
    obs, *_ = env.step(call("append", amout=1))
    assert "did you mean 'amount'?" in obs


def test_tool_call_blocks_are_found_like_the_documented_pattern_in_linear_time():
    import random
    import re

    from envs.core.tools import _tool_call_blocks

    pattern = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
    rng = random.Random(0)
    parts = ["<tool_call>", "</tool_call>", " ", "\n", "x", "{}", "<tool", "call>"]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randrange(10)))
        assert _tool_call_blocks(text) == pattern.findall(text)[:2], text  # the first two decide: one call or not
    # A long run of spaces inside an unclosed block: the regex took 19 s for 40,000 (quadratic), hours for this.
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    obs, *_, info = env.step("<tool_call>x" + " " * 1_000_000 + "y")
    assert info["invalid_action"] and "no tool call found" not in obs


def test_a_string_argument_may_hold_the_tool_call_tags():
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    quoted = json.dumps({"name": "append", "arguments": {"amount": 2, "note": "</tool_call> <tool_call>"}})
    for action in (f"<tool_call>{quoted}</tool_call>", quoted, f"<tool_call>\n{quoted}"):
        obs, *_, info = env.step(action)
        assert "has no argument 'note'" in obs, (action, obs)  # parsed as the call it is, then validated
    obs, *_, info = env.step("<tool_call></tool_call>" * 200_000)  # every block scanned once took minutes
    assert info["invalid_action"] and "make exactly one tool call" in obs and "200000" in obs


# -- services and outcomes -----------------------------------------------------------------------------------------


def test_each_call_says_its_outcome_and_the_fault_that_answered():
    env = LedgerEnv(faults={"transient_error": 1.0})
    env.reset(seed=0, options={"task_seed": 0})
    seen = [env.step(action)[4] for action in (call("read"), call("read"), call("pop"), "{", call("pop"))]
    assert [(i["outcome"], i["fault"]) for i in seen] == [("fault", "transient_error"), ("ok", None),
                                                        ("fault", "transient_error"), ("invalid", None),
                                                        ("rejected", None)]


def test_a_refusal_may_be_worded_without_the_error_prefix():
    class Polite(LedgerEnv):
        @tool(write=True)
        def check_pin(self, pin: str) -> str:
            """Check a pin.

            Args:
                pin: The pin.
            """
            raise ToolError("verification failed: wrong pin", prefix="")

    env = Polite()
    env.reset(seed=0, options={"task_seed": 0})
    obs, *_, info = env.step(call("check_pin", pin="1"))
    assert obs == "verification failed: wrong pin" and info["outcome"] == "rejected"
    assert env.reference_action() == call("append", amount=env.task.amounts[0])  # a rejection changes no plan


def test_the_seeded_mistake_is_run_through_the_tools_and_shown_in_the_prompt():
    env = LedgerEnv(faults={"seeded_error": 1.0})
    prompt, info = env.reset(seed=0, options={"task_seed": 0})
    assert env.state.entries == [1000] and env.seeded_error.variant == "extra_entry"
    assert env.seeded_transcript == [(ToolCall("append", {"amount": 1000}), "appended 1000")]
    assert prompt.endswith("\n\nEarlier work on this task, by someone before you (check it):\n"
                           "> append(amount=1000)\n< appended 1000")
    assert info["faults"][0]["description"] == "append(amount=1000)"

    class OldStyle(LedgerEnv):
        def _seed_error(self, rng):
            return "extra_entry", "appended 1000", []

    with pytest.raises(TypeError, match="must return a SeededError"):
        OldStyle(faults={"seeded_error": 1.0}).reset(seed=0)


def test_required_steps_are_the_start_plans_calls_and_a_state_needs_copy():
    env = LedgerEnv()
    _, info = env.reset(seed=0, options={"task_seed": 0})
    assert info["required_steps"] == len(env.start_plan) == 4 and info["max_turns"] == 3 * 4 + 10

    class NoCopy(LedgerEnv):
        def _setup(self, task):
            self.state = SimpleNamespace(entries=[])

    with pytest.raises(TypeError, match="needs a copy"):
        NoCopy().reset(seed=0)


def test_a_scratch_copy_runs_tools_on_its_own_state():
    env = LedgerEnv()
    env.reset(seed=0, options={"task_seed": 0})
    twin = env.scratch_copy()
    twin.append(5)
    assert twin.state.entries == [5] and env.state.entries == [] and env.turn == 0
