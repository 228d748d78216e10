"""SpreadsheetEnv through the core's loop: reference policy on >= 500 tasks per split with faults off and with each
fault kind on, every fault kind at rate 1.0, stale reads after a write, re-plans that redo nothing, do-nothing and
random policies, determinism, pickling, malformed and hostile actions, seeded-error and coworker starts, .xlsx export
of an episode."""

from __future__ import annotations

import copy
import io
import json
import pickle
import random

import pytest

from envs.core import FaultConfig
from envs.policies import DoNothingPolicy, ReferencePolicy
from envs.spreadsheet.env import SpreadsheetEnv
from envs.spreadsheet.formulas import col_letter
from envs.spreadsheet.xlsx import from_xlsx, to_xlsx

KINDS = SpreadsheetEnv.fault_kinds
N_TASKS = 500


class CheckingReference(ReferencePolicy):
    """The reference, but it reads back each of its writes once, as a careful agent does: that read is where a
    stale read shows (the reference alone re-reads only after a fault)."""

    def __init__(self):
        self.pending = None

    def act(self, env, observation: str) -> str:
        core = env.unwrapped
        if self.pending is not None:
            call, self.pending = self.pending, None
            return call.to_json()
        call = core.reference_call()
        spec = core.tool_specs()[call.name]
        if spec.write and not spec.finish:
            self.pending = core._read_back(call)
        return call.to_json()


class RandomPolicy:
    """Plausible random calls on and around the table (so they reach the tools' real paths), finishing at random."""

    def __init__(self, seed: int = 0):
        self.r = random.Random(seed)

    def act(self, env, observation: str) -> str:
        r = self.r
        sheet = env.unwrapped.task.layout.sheet
        col, row = col_letter(r.randint(1, 10)), r.randint(1, 20)
        cell = f"{sheet}!{col}{row}"
        choices = [
            call("read_range", cells=f"{sheet}!A1:{col}{row}"), call("list_sheets"), call("find", text="a"),
            call("write_values", cells=cell, values=[[r.choice(["x", 1, 2.5, None, True])]]),
            call("set_formula", cell=cell, formula=r.choice(["=A2*B2", "=SUM(C2:C9)", "=1/0", '=IF(A1>1,"a","b")'])),
            call("fill", cells=f"{cell}:{col}{row + r.randint(1, 5)}", direction="down"),
            call("clear_range", cells=cell),
            call("sort_range", cells=f"{sheet}!A2:G9", keys=[col_letter(r.randint(1, 7))]),
            call("insert_rows", sheet=sheet, before_row=row), call("delete_columns", sheet=sheet, first_column=col),
            call("add_sheet", name=r.choice(["Summary", "Notes"])), call("finish"),
        ]
        return r.choice(choices)


def episode(env, policy, task_seed, split="train", seed=None):
    obs, info = env.reset(seed=task_seed if seed is None else seed, options={"task_seed": task_seed, "split": split})
    observations = [obs]
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(env, obs))
        observations.append(obs)
        if terminated or truncated:
            return reward, info, observations


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_reference_policy_solves_500_tasks_without_faults(split):
    env, policy = SpreadsheetEnv(), ReferencePolicy()
    failed = [(k, info["reasons"]) for k in range(N_TASKS)
              for reward, info, _ in [episode(env, policy, k, split)] if not info["success"]]
    assert not failed, failed[:3]


@pytest.mark.parametrize("split", ["train", "heldout"])
@pytest.mark.parametrize("kind", KINDS)
def test_reference_policy_solves_500_tasks_with_each_fault_kind(kind, split):
    faults = FaultConfig.only(kind, 0.3)
    if kind == "stale_read":  # a stale read needs a read whose answer changed; the reference reads the table first,
        faults = FaultConfig(stale_read=0.5, seeded_error=1.0)  # and an earlier mistake changed it
    env, policy = SpreadsheetEnv(faults=faults), ReferencePolicy()
    fired, failed = 0, []
    for k in range(N_TASKS):
        _, info, _ = episode(env, policy, k, split)
        fired += any(f["kind"] == kind for f in info["faults"])
        if not info["success"]:
            failed.append((k, info["faults"], info["reasons"]))
    assert not failed, failed[:3]
    assert fired > N_TASKS // 5, f"{kind} fired in only {fired} episodes"  # a conflict can fire once per episode


@pytest.mark.parametrize("kind", KINDS)
def test_every_fault_kind_at_rate_one_fires_and_is_recorded(kind):
    env = SpreadsheetEnv(faults=FaultConfig.only(kind, 1.0))
    policy = CheckingReference() if kind == "stale_read" else ReferencePolicy()
    fired = 0
    for k in range(20):
        _, info, _ = episode(env, policy, k)
        assert info["success"], (k, info["faults"], info["reasons"])
        kinds = {f["kind"] for f in info["faults"]}
        assert kinds <= {kind}
        fired += kind in kinds
    assert fired >= 15


def test_stale_read_shows_the_cell_before_the_latest_write_once():
    env = SpreadsheetEnv(faults=FaultConfig.only("stale_read", 1.0))
    env.reset(seed=0, options={"task_seed": 0})
    sheet = env.unwrapped.task.layout.sheet
    read = call("read_range", cells=f"{sheet}!Z1")
    before, *_, info = env.step(read)
    assert info["faults"] == []  # nothing written yet: nothing to be stale about
    env.step(call("write_values", cells=f"{sheet}!Z1", values=[["note"]]))
    stale, *_, info = env.step(read)
    assert stale == before and "note" not in stale
    assert [f["kind"] for f in info["faults"]] == ["stale_read"] and info["faults"][0]["tool"] == "read_range"
    fresh, *_, info = env.step(read)
    assert "note" in fresh and len(info["faults"]) == 1


@pytest.mark.parametrize("faults", [FaultConfig.only("concurrent_edit", 0.3), FaultConfig.all(0.3)],
                         ids=["concurrent_edit", "all"])  # at 0.3 a conflict often comes after some writes
def test_replanning_after_a_fault_redoes_no_write_already_done(faults):
    """After a conflict or a timeout the reference re-plans from the state; a write that already went through is
    not made again (the turn limit is 3 * required_steps + 10, so redone work could run out of turns)."""
    env = SpreadsheetEnv(faults=faults)
    replans = 0
    for k in range(100):
        env.reset(seed=k, options={"task_seed": k, "split": ("train", "heldout")[k % 2]})
        done = set()
        while True:
            action = env.reference_call()
            n_faults = len(env.fault_log)
            obs, _, terminated, truncated, info = env.step(action.to_json())
            spec = env.tool_specs()[action.name]
            # every failure, a fault's or the tool's, starts with "error"; a timed-out write may still be applied
            applied = not obs.startswith("error") or any(f.get("applied") for f in env.fault_log[n_faults:])
            if spec.write and not spec.finish and applied:
                assert action.key() not in done, (k, str(action), info["faults"])
                done.add(action.key())
            if terminated or truncated:
                break
        assert info["success"], (k, info["faults"], info["reasons"])
        replans += any(f["kind"] in ("concurrent_edit", "write_timeout") for f in info["faults"])
    assert replans > 30


def test_seeded_error_start_shows_the_earlier_work_and_is_repaired():
    env = SpreadsheetEnv(faults=FaultConfig.only("seeded_error", 1.0))
    seen = 0
    for k in range(40):
        obs, info = env.reset(seed=k, options={"task_seed": k})
        if any(f["kind"] == "seeded_error" for f in info["faults"]):
            seen += 1
            assert "Earlier work on this request" in obs
            assert not env.unwrapped.check().success
    assert seen >= 30


def test_coworker_edit_changes_the_truth_the_checker_uses():
    env = SpreadsheetEnv(faults=FaultConfig.only("concurrent_edit", 1.0))
    _, info, _ = episode(env, ReferencePolicy(), 3)
    assert info["success"] and env.unwrapped.state.others
    edited = env.unwrapped.state.records != [dict(r) for r in env.unwrapped.task.records]
    assert edited


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_do_nothing_and_random_policies_score_zero(split):
    env = SpreadsheetEnv()
    for k in range(100):
        assert episode(env, DoNothingPolicy(), k, split)[0] == 0.0
        assert episode(env, RandomPolicy(k), k, split)[0] == 0.0


def test_same_seeds_same_episode():
    runs = []
    for _ in range(2):
        env = SpreadsheetEnv(faults=FaultConfig.all(0.2))
        runs.append([episode(env, RandomPolicy(k), k, seed=7)[2] for k in range(5)])
    assert runs[0] == runs[1]
    env = SpreadsheetEnv()
    first, _ = env.reset(seed=1, options={"task_seed": 9})
    again, _ = env.reset(seed=2, options={"task_seed": 9})
    assert first == again  # the task depends on task_seed only


def test_pickled_env_continues_identically():
    env = SpreadsheetEnv(faults=FaultConfig.all(0.2))
    env.reset(seed=3, options={"task_seed": 3})
    policy = ReferencePolicy()
    for _ in range(2):
        env.step(policy.act(env, ""))
    twin = pickle.loads(pickle.dumps(env))
    for _ in range(30):
        a, b = policy.act(env, ""), policy.act(twin, "")
        assert a == b
        out_a, out_b = env.step(a), twin.step(b)
        assert out_a[:4] == out_b[:4]
        if out_a[2] or out_a[3]:
            break


def _reference_to_the_end(env) -> list:
    steps = []
    while True:
        out = env.step(env.reference_action())
        steps.append(out)
        if out[2] or out[3]:
            return steps


@pytest.mark.parametrize("faults", [None, FaultConfig.all(0.2)], ids=["no faults", "every fault at 0.2"])
def test_deepcopied_and_pickled_envs_continue_exactly_as_the_original(faults):
    """After an off-plan write the reference re-plans; a copy made then must too (the workbook's version survives
    copying), so the reference gives the same observations, rewards and infos on the original and on both copies."""
    solved = 0
    for k in range(12):
        env = SpreadsheetEnv(faults=faults)
        env.reset(seed=k, options={"task_seed": k})
        layout = env.task.layout
        env.step(env.reference_action())  # the first look at the table
        env.step(call("write_values", cells=f"{layout.sheet}!B{layout.first}", values=[[999]]))  # off the plan
        twins = [copy.deepcopy(env), pickle.loads(pickle.dumps(env))]
        runs = [_reference_to_the_end(e) for e in (env, *twins)]
        assert runs[0] == runs[1] == runs[2], k
        solved += runs[0][-1][1] == 1.0
    assert solved == 12 or faults is not None


def _table_mistakes(env):
    """Wrong writes into a task's data table, one call each, by name: what a slipped row or cell number does."""
    task, book = env.unwrapped.task, env.unwrapped.state.book
    layout = task.layout
    ids = [book.cell_value(layout.sheet, r, 1) for r in range(layout.first, book.extent(layout.sheet)[0] + 1)]
    unique = next(i for i, v in enumerate(ids) if ids.count(v) == 1 and i > 0)
    mistakes = {
        "deletes a record's only row": call("delete_rows", sheet=layout.sheet, first_row=layout.first + unique),
        "deletes two rows": call("delete_rows", sheet=layout.sheet, first_row=layout.first + unique, count=2),
        "inserts empty rows in the table": call("insert_rows", sheet=layout.sheet, before_row=layout.first + 1,
                                                count=2),
        "overwrites a data cell": call("write_values", cells=f"{layout.sheet}!B{layout.first + unique}",
                                       values=[[999]]),
        "overwrites a record's id": call("write_values", cells=f"{layout.sheet}!A{layout.first + unique}",
                                         values=[["Z-0000"]]),
    }
    repeated = [i for i, v in enumerate(ids) if ids.count(v) > 1]
    if repeated:
        mistakes["deletes the first of a repeated record's rows"] = call(
            "delete_rows", sheet=layout.sheet, first_row=layout.first + repeated[0])
    return mistakes


def test_rows_that_stay_are_the_longest_in_order_subsequence():
    from envs.spreadsheet.goals import _consecutive, _in_order

    assert _in_order([(2, 0), (3, 1), (4, 3)]) == [(2, 0), (3, 1), (4, 3)]  # record 2 lost: nothing moves
    assert _in_order([(2, 0), (3, 2), (4, 1), (5, 3)]) == [(2, 0), (3, 2), (5, 3)]  # record 1 out of place
    assert _in_order([(2, 3), (3, 0), (4, 1), (5, 2)]) == [(3, 0), (4, 1), (5, 2)]
    assert _in_order([]) == []
    assert _consecutive([1, 2, 5, 7, 8]) == [[1, 2], [5], [7, 8]]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_reference_repairs_a_wrong_row_deletion_insertion_or_cell_write(split):
    """The reference puts lost records back from what it read (in their order, or before a sort), removes empty
    rows it finds inside the table, and retypes a damaged record cell or id: each such wrong first write, then the
    reference to the end, solves the task, for every template."""
    env, policy, templates, dedupes = SpreadsheetEnv(), ReferencePolicy(), set(), 0
    for k in range(40):
        env.reset(seed=k, options={"task_seed": k, "split": split})
        templates.add(env.unwrapped.task.template)
        mistakes = _table_mistakes(env)
        dedupes += "deletes the first of a repeated record's rows" in mistakes
        for name, mistake in mistakes.items():
            env.reset(seed=k, options={"task_seed": k, "split": split})
            env.step(mistake)
            while True:
                *_, terminated, truncated, info = env.step(policy.act(env, ""))
                if terminated or truncated:
                    break
            assert info["success"], (k, env.unwrapped.task.template, name, info["reasons"][:3])
    assert len(templates) == (16 if split == "train" else 4) and dedupes >= 3


def call(name, /, **arguments) -> str:
    return json.dumps({"name": name, "arguments": arguments})


HOSTILE = [
    ("not json at all", "tool call"),
    ('{"name": "set_formula", "arguments": {"cell": "H2"}}', "missing required argument"),
    (call("set_formula", cell="H2", formula="=" + "(" * 10_000 + "1" + ")" * 10_000), "characters"),
    (call("set_formula", cell="H2", formula="=" + "ABS(" * 100 + "1" + ")" * 100), "nests deeper than 64"),
    (call("set_formula", cell="H2", formula="=SUM(A1:XFD1048576)"), "circular"),
    (call("set_formula", cell="H2", formula="=H2+1"), "circular"),
    (call("set_formula", cell="H2", formula='=REPT("x",1000000000)'), "32767"),
    (call("set_formula", cell="H2", formula="=__import__('os').system('x')"), "unexpected character"),
    (call("read_range", cells="A1:XFD1048576"), "| A"),
    (call("read_range", cells="'; DROP TABLE x; --!A1"), "no sheet named"),
    (call("write_values", cells="H2", values=[["x" * 40_000]]), "at most 32767"),
    (call("write_values", cells="H2", values=[[10**400]]), "too large"),
    (call("write_values", cells="H2", values=[[1e308], [10**308]]), "wrote 2 value(s)"),
    (call("write_values", cells="H2", values="oops"), "must be a list"),
    (call("fill", cells="H2:H1048576", direction="down"), "more than 5000"),
    (call("fill", cells="H2:H5", direction="up"), "must be one of"),
    (call("sort_range", cells="A1:XFD1048576", keys=["A"]), "sorted"),
    (call("insert_rows", sheet="Nope", before_row=2), "no sheet named"),
]


@pytest.mark.parametrize(("action", "expect"), HOSTILE, ids=[h[1] for h in HOSTILE])
def test_malformed_and_hostile_actions_are_observations(action, expect):
    env = SpreadsheetEnv()
    env.reset(seed=0, options={"task_seed": 0})
    obs, reward, terminated, _, _ = env.step(action)
    assert expect in obs
    assert reward == 0.0 and not terminated
    obs, *_ = env.step(call("list_sheets"))  # the env still works
    assert "A1:" in obs
    for formula in ("=H2*10", "=H3*H3", "=H3&\"\""):  # what a cell holds never overflows later
        env.step(call("set_formula", cell="I2", formula=formula))
        env.step(call("read_range", cells="H1:I3"))
    assert env.step(call("finish"))[1] == 0.0


def test_episode_workbook_saves_as_xlsx_and_loads_back():
    env = SpreadsheetEnv()
    episode(env, ReferencePolicy(), 5)
    book = env.unwrapped.state.book
    again = from_xlsx(io.BytesIO(to_xlsx(book)))
    assert again.evaluate_all() == book.evaluate_all()
