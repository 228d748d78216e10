"""Branch starts: rows cut where an episode went wrong, replayed exactly, and played on from."""

import json

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.policies import NoisyReferencePolicy
from training.branches import (
    REJECTED,
    BranchConfig,
    branch_dataset,
    branch_events,
    branch_outcome,
    episode_branches,
    evaluate_branches,
    paired_branches,
    replay,
    scripted_branches,
)
from training.evaluation.episode import Action, Turn, chat_messages
from training.evaluation.policies import RandomPolicy, ReferencePolicy
from training.evaluation.runner import EvalConfig, load_episodes, run_eval

ENV_IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))
SUPPORT = "recoverygym/SupportDesk-v0"
FAULTS = {"transient_error": 0.15, "rate_limit": 0.1, "write_timeout": 0.2, "stale_read": 0.3,
          "concurrent_edit": 0.3, "seeded_error": 0.3}


class ModelLike:
    """Stands in for a model in an evaluation: noisy-reference calls written the way a model writes them (in
    ``<tool_call>`` tags, some near misses, now and then malformed or a reply without a tool call), with tokens."""

    name = "model-like"

    def act(self, episodes):
        actions = []
        for ep in episodes:
            u = ep.rng.random()
            if u < 0.03 and ep.history:
                actions.append(Action("I have resolved the ticket.", tokens=6))
                continue
            if u < 0.08:
                actions.append(Action('<tool_call>{"name": "lookup_order", "arguments": {</tool_call>', tokens=9))
                continue
            text = NoisyReferencePolicy(0.25, near_miss=0.6).act(ep.env, ep.last_observation, rng=ep.rng)
            actions.append(Action(f"<tool_call>\n{text}\n</tool_call>", tokens=len(text) // 4))
        return actions

    def config(self):
        return {"policy": "model-like"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Evaluation folders of the model-like policy under every fault kind, one per environment."""
    folders = {}
    for env_id in ENV_IDS:
        out = tmp_path_factory.mktemp("eval") / env_id.split("/")[1]
        config = EvalConfig(env_ids=(env_id,), splits=("heldout",), fault_kinds=("all",), fault_rate=0.25, tasks=10,
                            samples=2, seed=3, max_turns=30)
        run_eval(ModelLike(), config, out, progress=False)
        folders[env_id] = out
    return folders


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_branch_from_recorded_episodes_reproduces_state_faults_and_transcript(env_id, recorded):
    """A row cut from a recorded episode replays to exactly what the model saw at that turn: the same observations,
    the same faults fired, the same chat prompt; and playing the recorded rest of the episode from it gives the
    recorded observations and final score, so the state and the fault RNG are the episode's too."""
    records = {(r["task_seed"], r["sample"]): r for r in load_episodes(recorded[env_id] / "episodes.jsonl")}
    rows = episode_branches(recorded[env_id], BranchConfig(per_task=3))
    assert rows, "the model-like policy met no fault or rejection and failed nowhere"
    kinds = {row["branch_kind"] for row in rows}
    assert REJECTED in kinds and len(kinds - {REJECTED}) >= 3, kinds
    for row in rows:
        record = next(r for r in records.values() if r["seed"] == row["seed"] and r["task_seed"] == row["task_seed"])
        assert not record["success"]
        cut = row["branch_turn"]
        observation, info = replay(row, max_turns=30)
        steps = record["steps"]
        assert [h["observation"] for h in info["history"]] == [s["observation"] for s in steps[:cut]]
        assert info["prompt"] == record["prompt"]
        assert observation == (steps[cut - 1]["observation"] if cut else record["prompt"])
        assert info["faults"] == [f for f in record["faults"] if (f.get("turn") or 0) <= cut]
        turns = [Turn(**{k: s[k] for k in ("turn", "action", "observation", "tool", "invalid_action", "ok")},
                      message=s.get("message")) for s in steps[:cut]]
        assert row["prompt"] == chat_messages(record["prompt"], turns)
        # the event the row is cut at happened at that turn, as the environment recorded it
        event = next(e for e in info["recovery"] if e["turn"] == cut and e["kind"] == row["branch_kind"])
        assert event["tool"] == (row["branch_tool"] or None)
        _play_rest_matches(row, record)


def _play_rest_matches(row, record):
    env = gymnasium.make(row["env_id"], faults=json.loads(row["faults"]), max_turns=30)
    replay(row, env=env)
    rest = [s for s in record["steps"][row["branch_turn"] :] if record["ended"] != "no tool call"
            or s is not record["steps"][-1]]
    for step in rest:
        observation, reward, terminated, truncated, info = env.step(step["action"])
        assert observation == step["observation"], step["turn"]
    if terminated or truncated:
        assert reward == record["score"]
    else:
        assert env.unwrapped.check().score == record["score"]


def test_recorded_branches_prefer_the_events_the_model_did_not_handle(recorded):
    rows = episode_branches(recorded[SUPPORT], BranchConfig(per_task=1))
    assert rows and all(row["source"] == "episodes:model-like" for row in rows)
    assert any(row["handled_in_episode"] is False for row in rows)
    every = episode_branches(recorded[SUPPORT], BranchConfig(per_task=50))
    for row in rows:  # a row cut at a handled event only when its episode has no unhandled one
        if row["handled_in_episode"]:
            same = [r for r in every if r["seed"] == row["seed"] and r["task_seed"] == row["task_seed"]]
            assert all(r["handled_in_episode"] is not False for r in same)


def test_only_chosen_kinds_and_at_most_per_task(recorded):
    rows = episode_branches(recorded[SUPPORT], BranchConfig(kinds=("transient_error",), per_task=1))
    assert rows and {r["branch_kind"] for r in rows} == {"transient_error"}
    per_episode = {}
    for r in rows:
        per_episode[r["seed"]] = per_episode.get(r["seed"], 0) + 1
    assert max(per_episode.values()) == 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_scripted_rows_are_cut_right_after_the_event(env_id):
    rows = scripted_branches(env_id, range(6), faults=FAULTS, config=BranchConfig(per_task=3), seed=11)
    assert {r["source"] for r in rows} == {"reference", "noisy", "near_miss"}
    assert len({r["branch_id"] for r in rows}) == len(rows)
    for row in rows:
        observation, info = replay(row)
        cut = row["branch_turn"]
        assert len(info["history"]) == cut == len(row["actions"])
        last = row["prompt"][-1]
        assert last["content"] == observation and (cut == 0 or last["role"] == "tool")
        if cut == 0:
            assert row["branch_kind"] == "seeded_error" and row["prompt"] == [{"role": "user",
                                                                               "content": info["prompt"]}]
            continue
        step = info["history"][-1]
        if row["branch_kind"] == REJECTED:
            assert step["outcome"] == "rejected" and not step["faults"]
        else:
            assert [f["kind"] for f in step["faults"]] == [row["branch_kind"]]
        # scripted actions are shown as structured tool calls, as the SFT demonstrations show them
        assert row["prompt"][-2]["tool_calls"][0]["function"]["name"] == last["name"]


def test_scripted_rows_are_deterministic_and_keep_turns_trims_the_prompt_only():
    a = scripted_branches(SUPPORT, range(3), faults=FAULTS, seed=5)
    b = scripted_branches(SUPPORT, range(3), faults=FAULTS, seed=5)
    assert a == b
    short = scripted_branches(SUPPORT, range(3), faults=FAULTS, seed=5, config=BranchConfig(keep_turns=1))
    for full, trimmed in zip(a, short, strict=True):
        assert trimmed["actions"] == full["actions"] and trimmed["branch_id"] == full["branch_id"]
        assert trimmed["prompt"] == full["prompt"][:1] + full["prompt"][1:][-2:]


def test_branch_events_from_outcomes_not_text():
    steps = [
        {"action": "a", "observation": "fine", "outcome": "ok", "faults": []},
        {"action": "b", "observation": "no such order", "outcome": "rejected", "faults": []},  # no 'error' in it
        {"action": "c", "observation": "error: looks like an error", "outcome": "ok", "faults": []},
        {"action": "d", "observation": "x", "outcome": "invalid", "faults": []},
        {"action": "e", "observation": "error 503", "outcome": "fault", "faults": [{"kind": "transient_error",
                                                                                     "turn": 5, "tool": "t"}]},
        {"action": "f", "observation": "error 429", "outcome": "fault", "faults": [{"kind": "rate_limit",
                                                                                     "turn": 6, "tool": "t"}],
         "mistake": True},
        {"action": "g", "observation": "last", "outcome": "rejected", "faults": []},
    ]
    events = branch_events(steps, initial_faults=[{"kind": "seeded_error", "turn": 0}])
    assert [(e["turn"], e["kind"]) for e in events] == [(0, "seeded_error"), (2, REJECTED), (5, "transient_error")]
    assert branch_events(steps, kinds=("transient_error",)) == [{"turn": 5, "kind": "transient_error", "tool": "t"}]


def test_config_errors_name_the_valid_values():
    with pytest.raises(ValueError, match="did you mean 'near_miss'"):
        BranchConfig(sources=("near_mis",))
    with pytest.raises(ValueError, match="did you mean 'rejected_call'"):
        BranchConfig(kinds=("rejected_cal",))
    with pytest.raises(ValueError, match="per_task"):
        BranchConfig(per_task=0)


def test_dataset_keeps_tool_call_arguments_apart():
    rows = scripted_branches(SUPPORT, range(4), faults=FAULTS, seed=2)
    data = branch_dataset(rows)
    for i, row in enumerate(rows):
        assert data[i]["prompt"] == row["prompt"] and data[i]["actions"] == row["actions"]


def test_evaluation_from_branch_starts_reads_the_environments_records(tmp_path):
    """The reference handles the event it starts from (the faults its own calls met, the rejections of the scripted
    mistakes), random calls mostly do not; the paired comparison is on the same branch starts."""
    rows = scripted_branches(SUPPORT, range(8), faults=FAULTS, seed=1)
    ref = evaluate_branches(ReferencePolicy(), rows, tmp_path / "ref", progress=False)
    rand = evaluate_branches(RandomPolicy(), rows, tmp_path / "rand", progress=False)
    assert ref["episodes"] == len(rows) and ref["branches"]["all"]["success_rate"] == 1.0
    assert ref["branches"]["all"]["handled_rate"] == 1.0
    assert rand["branches"]["all"]["handled_rate"] < 0.8
    a, b = load_episodes(tmp_path / "ref" / "episodes.jsonl"), load_episodes(tmp_path / "rand" / "episodes.jsonl")
    assert all(r["steps"][: r["branch"]["turn"]] and all(s["scripted"] for s in r["steps"][: r["branch"]["turn"]])
               for r in a if r["branch"]["turn"])
    paired = paired_branches(a, b)
    assert paired["branches"] == len(rows) and paired["handled"]["better"] == 0 and paired["handled"]["worse"] > 0
    # resuming runs nothing new and gives the same records
    again = evaluate_branches(ReferencePolicy(), rows, tmp_path / "ref", progress=False)
    assert again["branches"] == ref["branches"]
    assert len(load_episodes(tmp_path / "ref" / "episodes.jsonl")) == len(rows)


def test_branch_outcome_and_pairing_on_hand_built_records():
    def record(bid, handled, success):
        return {"branch": {"id": bid, "turn": 3, "kind": "write_timeout"}, "success": success,
                "recovery": [{"kind": "transient_error", "turn": 1, "handled": True},
                             {"kind": "write_timeout", "turn": 3, "handled": handled}]}

    base = [record("a", False, False), record("b", False, False), record("c", True, True), record("d", True, False)]
    other = [record("a", True, True), record("b", True, False), record("c", True, True), record("d", False, False)]
    assert [branch_outcome(r) for r in base] == [False, False, True, True]
    assert branch_outcome({"branch": {"id": "x", "turn": 2, "kind": "rate_limit"}, "recovery": []}) is None
    paired = paired_branches(base, other)
    assert paired["handled"] == {"pairs": 4, "better": 2, "worse": 1, "p": 1.0}
    assert paired["success"] == {"pairs": 4, "better": 1, "worse": 0, "p": 1.0}
    assert np.isclose(paired_branches(base * 1, base)["handled"]["p"], 1.0)


def test_training_refuses_branch_starts_it_must_not_train_on(recorded, tmp_path):
    """GRPO on branch starts: no source, a folder that is no evaluation, a held-out folder (the held-out split is
    never trained on) and another environment's episodes are refused before any training; so is a model episode
    that does not replay under the run's turn limit."""
    from training.config import ConfigError, load_config
    from training.train import grpo_branch_dataset

    grpo = ["run.stages=[grpo]", f"env.id={SUPPORT}", "data.grpo_starts=branches", "data.grpo_tasks=2"]
    with pytest.raises(ConfigError, match="names no source"):
        load_config(None, [*grpo, "branches.sources=[]"])
    with pytest.raises(ConfigError, match="no evaluation folder"):
        load_config(None, [*grpo, f"branches.episodes=[{tmp_path / 'nowhere'}]"])
    heldout = load_config(None, [*grpo, "branches.sources=[]", f"branches.episodes=[{recorded[SUPPORT]}]"])
    with pytest.raises(ConfigError, match="held-out split is never trained on"):
        grpo_branch_dataset(heldout)
    other = [e for e in ENV_IDS if e != SUPPORT][0]
    with pytest.raises(ConfigError, match="held-out split is never trained on"):
        grpo_branch_dataset(load_config(None, [*grpo, "branches.sources=[]", f"branches.episodes=[{recorded[other]}]"]))

    train_folder = tmp_path / "train-episodes"
    config = EvalConfig(env_ids=(SUPPORT,), splits=("train",), fault_kinds=("all",), fault_rate=0.25, tasks=6,
                        samples=1, seed=3, max_turns=30)
    run_eval(ModelLike(), config, train_folder, progress=False)
    ok = load_config(None, [*grpo, "branches.sources=[]", f"branches.episodes=[{train_folder}]", "env.max_turns=30"])
    data = grpo_branch_dataset(ok)
    assert len(data) > 0 and all(s.startswith("episodes:") for s in data["source"])
    latest = max(row["branch_turn"] for row in data)
    short = load_config(None, [*grpo, "branches.sources=[]", f"branches.episodes=[{train_folder}]",
                               f"env.max_turns={latest}"])  # the last replayed action would end it
    with pytest.raises(ConfigError, match="does not replay under env.max_turns"):
        grpo_branch_dataset(short)


def test_dtype_settings_are_checked_when_the_config_loads():
    from training.config import ConfigError, load_config

    for key in ("model.dtype", "eval.dtype"):
        with pytest.raises(ConfigError, match=f"{key}='bf16': use fast, float32"):
            load_config(None, [f"{key}=bf16"])
    assert load_config(None, ["eval.dtype=fast"]).eval.dtype == "fast"
