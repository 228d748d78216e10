"""``info["recovery"]``: whether the agent handled each fault and each rejected call, on hand-built episodes.

The toy ledger (``test_core.LedgerEnv``) appends amounts; ``count`` is a second read that shows a write, ``hello``
a read that shows nothing. Each test drives a fault to fire with rate 1.0, or a rejection, then makes the calls a
careful or a careless agent would.
"""

from __future__ import annotations

import json

import gymnasium
import pytest
from test_core import LedgerEnv, call
from test_task_identity import canonical

import envs  # noqa: F401  (registers the environments)
from envs.core import RECOVERY_KINDS, FaultConfig, tool
from envs.policies import DoNothingPolicy, ReferencePolicy


class Ledger(LedgerEnv):
    @tool
    def count(self) -> str:
        """How many entries the ledger has."""
        return f"{len(self.state.entries)} entries"

    @tool
    def hello(self) -> str:
        """Say hello."""
        return "hello"


def start(**faults) -> Ledger:
    env = Ledger(faults=faults, max_turns=50)
    env.reset(seed=0, options={"task_seed": 0})
    return env


def play(env: Ledger, *actions: str) -> dict:
    info = {}
    for action in actions:
        *_, info = env.step(action)
    return info


def only(records: list[dict], kind: str) -> dict:
    found = [r for r in records if r["kind"] == kind]
    assert len(found) == 1, records
    return found[0]


def timeout_episode(applied: bool) -> tuple[Ledger, str]:
    """A ledger whose first append timed out, applied or not (the draw is the seed's)."""
    for seed in range(40):
        env = Ledger(faults={"write_timeout": 1.0}, max_turns=50)
        env.reset(seed=seed, options={"task_seed": 0})
        first = call("append", amount=env.task.amounts[0])
        _, _, _, _, info = env.step(first)
        if info["faults"][0]["applied"] == applied:
            return env, first
    raise AssertionError("no seed gave that outcome")


@pytest.mark.parametrize("applied", [True, False])
def test_timeout_then_read_back_is_handled(applied):
    env, first = timeout_episode(applied)
    info = play(env, call("read"))
    record = only(info["recovery"], "write_timeout")
    assert record["handled"] and record["turns"] == 1 and record["tool"] == "append" and record["turn"] == 1
    assert "read back with read()" in record["detail"]
    if not applied:  # the write did not go through: making it again after reading is right
        info = play(env, first, call("finish"))
        assert only(info["recovery"], "write_timeout")["handled"]


@pytest.mark.parametrize("applied", [True, False])
def test_timeout_then_blind_retry_is_not_handled(applied):
    env, first = timeout_episode(applied)
    info = play(env, first)
    record = only(info["recovery"], "write_timeout")
    assert not record["handled"] and record["turns"] is None and "without reading back" in record["detail"]
    assert ("applied twice" in record["detail"]) == applied
    info = play(env, call("read"), call("finish"))  # a read after the retry is too late
    assert not only(info["recovery"], "write_timeout")["handled"]


def test_timeout_read_back_then_the_write_again_applies_twice_and_is_not_handled():
    env, first = timeout_episode(applied=True)
    info = play(env, call("read"))
    assert only(info["recovery"], "write_timeout")["handled"]
    info = play(env, first)
    record = only(info["recovery"], "write_timeout")
    assert not record["handled"] and "applied twice" in record["detail"]


@pytest.mark.parametrize(("read", "shows"), [("count", True), ("hello", False)])
def test_any_read_that_shows_the_write_counts_as_the_read_back(read, shows):
    env, _ = timeout_episode(applied=True)
    info = play(env, call(read), call("finish"))
    record = only(info["recovery"], "write_timeout")
    assert record["handled"] == shows, record


def test_transient_error_is_handled_by_making_the_same_call_again():
    env = start(transient_error=1.0)
    first = call("append", amount=env.task.amounts[0])
    info = play(env, first)
    assert only(info["recovery"], "transient_error") == {
        "kind": "transient_error", "turn": 1, "tool": "append", "handled": False, "turns": None,
        "detail": "not handled yet"}
    info = play(env, call("hello"), first)  # hello meets its own 503; the append is then made again
    records = info["recovery"]
    assert records[0]["handled"] and records[0]["turns"] == 2 and records[1]["tool"] == "hello"
    assert not records[1]["handled"]


def test_transient_error_never_retried_is_not_handled_at_the_end():
    env = start(transient_error=1.0)
    info = play(env, call("append", amount=env.task.amounts[0]), call("finish"), call("finish"))
    first = info["recovery"][0]
    assert info["recovery"][1]["handled"]  # the finish was made again
    assert not first["handled"] and first["detail"] == "not handled by the end of the episode"


def test_rate_limit_is_handled_only_by_a_retry_after_the_limit_ended():
    env = start(rate_limit=1.0)
    first = call("append", amount=env.task.amounts[0])
    _, _, _, _, info = env.step(first)
    wait = info["faults"][0]["retry_after"]
    for _ in range(wait - 1):  # still limited: the retries are not handled yet
        info = play(env, first)
        assert not info["recovery"][0]["handled"] and len(info["recovery"]) == 1
    info = play(env, first)
    record = info["recovery"][0]
    assert record["handled"] and record["turns"] == wait and "after the limit ended" in record["detail"]


def test_stale_read_is_handled_by_reading_again():
    env = start(stale_read=1.0)
    info = play(env, call("append", amount=5), call("read"))
    assert not only(info["recovery"], "stale_read")["handled"]
    info = play(env, call("read"))
    record = only(info["recovery"], "stale_read")
    assert record["handled"] and record["turns"] == 1


@pytest.mark.parametrize(("next_call", "handled"), [("read", True), ("hello", True), ("append", False),
                                                     ("finish", False)])
def test_concurrent_edit_is_handled_by_reading_before_writing_again(next_call, handled):
    env = start(concurrent_edit=1.0)
    info = play(env, call("append", amount=env.task.amounts[0]))
    assert info["fault"] == "concurrent_edit"
    action = call("append", amount=env.task.amounts[1]) if next_call == "append" else call(next_call)
    info = play(env, "not a tool call", action)  # an invalid action is no call: skipped
    record = only(info["recovery"], "concurrent_edit")
    assert record["handled"] == handled and record["turns"] == (2 if handled else None), record


def test_a_repeated_rejected_call_is_not_handled_and_a_different_next_call_is():
    env = start()
    bad = call("append", amount=-1)
    info = play(env, bad, bad, "{not json", call("append", amount=4))
    first, second = info["recovery"]
    assert first["kind"] == second["kind"] == "rejected_call" and info["outcome"] == "ok"
    assert not first["handled"] and first["detail"] == "the same call again at turn 2"
    assert second["handled"] and second["turns"] == 2  # the invalid action in between is skipped


def test_a_seeded_error_is_handled_when_it_is_undone_in_the_final_state():
    env = start(seeded_error=1.0)
    _, info = env.reset(seed=0, options={"task_seed": 0})
    assert info["recovery"] == [{"kind": "seeded_error", "turn": 0, "tool": None, "handled": False, "turns": None,
                                 "detail": "extra_entry: not undone yet"}]
    info = play(env, call("pop"), *(call("append", amount=a) for a in env.task.amounts), call("finish"))
    assert info["recovery"][0]["handled"] and info["recovery"][0]["turns"] == 5  # the default hook: at the end
    env.reset(seed=0, options={"task_seed": 0})
    info = play(env, *(call("append", amount=a) for a in env.task.amounts), call("finish"))
    assert not info["recovery"][0]["handled"] and info["recovery"][0]["detail"] == "extra_entry: not undone in the " \
                                                                                   "final state"


def test_a_cheap_domain_hook_times_the_undoing():
    class Judged(Ledger):
        def _seeded_error_undone(self):
            return 1000 not in self.state.entries

    env = Judged(faults={"seeded_error": 1.0})
    env.reset(seed=0, options={"task_seed": 0})
    info = play(env, call("read"), call("pop"), call("finish"))
    record = info["recovery"][0]
    assert record["handled"] and record["turns"] == 2  # undone by the pop at turn 2, and still at the end


def test_records_are_in_every_info_cumulative_and_copies():
    env = start(transient_error=1.0)
    _, info = env.reset(seed=0, options={"task_seed": 0})
    assert info["recovery"] == []
    seen = []
    for action in (call("read"), call("read"), call("finish"), call("finish")):
        *_, info = env.step(action)
        seen.append(info["recovery"])
    assert [len(r) for r in seen] == [1, 1, 2, 2]  # 503, retried; 503 on finish, retried (the episode ends)
    assert seen[0][0]["handled"] is False and seen[1][0]["handled"] is True  # earlier infos keep their copy
    assert all(r["kind"] in RECOVERY_KINDS and r["handled"] for r in seen[-1])


# -- the shipped environments ---------------------------------------------------------------------------------


def episode(env, policy, k):
    obs, info = env.reset(seed=k, options={"task_seed": k})
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(env, obs))
        if terminated or truncated:
            return info


@pytest.mark.parametrize("env_id", ["recoverygym/SupportDesk-v0", "recoverygym/Spreadsheet-v0"])
@pytest.mark.parametrize("kind", ["transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit",
                                  "seeded_error"])
def test_the_reference_handles_every_event_and_doing_nothing_handles_none(env_id, kind):
    # A stale read needs a change to lag behind: the seeded mistake gives the reference's first read one.
    faults = FaultConfig(stale_read=1.0, seeded_error=1.0) if kind == "stale_read" else FaultConfig.only(kind, 1.0)
    env = gymnasium.make(env_id, faults=faults)
    events = 0
    for k in range(6):
        info = episode(env, ReferencePolicy(), k)
        assert info["success"]
        assert all(r["handled"] for r in info["recovery"]), info["recovery"]
        events += sum(r["kind"] == kind for r in info["recovery"])
    assert events >= 3, f"{kind}: only {events} events in 6 episodes"
    if kind == "seeded_error":  # doing nothing undoes no mistake (one whose call was refused left nothing to undo)
        plain = gymnasium.make(env_id)
        for k in range(12):
            plain.reset(seed=k, options={"task_seed": k})
            env.reset(seed=k, options={"task_seed": k})
            changed = canonical(env.unwrapped.state) != canonical(plain.unwrapped.state)
            info = episode(env, DoNothingPolicy(), k)
            assert all(r["handled"] != changed for r in info["recovery"]), info["recovery"]


def test_a_failed_identity_verification_is_an_answered_check_on_record():
    # A rejection changes nothing; a failed verification records the attempt (the checker needs it before a reply
    # may say it could not verify), so it is an answered call, not a rejected one.
    env = gymnasium.make("recoverygym/SupportDesk-v0")
    for k in range(200):
        env.reset(seed=k, options={"task_seed": k})
        if env.unwrapped.task.template == "identity_mismatch":
            break
    task = env.unwrapped.task
    verify = json.dumps({"name": "verify_identity", "arguments": {"customer_id": task.customer_id,
                                                                  "email": task.email,
                                                                  "postal_code": task.postal_code}})
    obs, *_, info = env.step(verify)
    assert obs.startswith("verification failed") and info["outcome"] == "ok"
    assert env.unwrapped.state.failed_verifications == [task.customer_id] and not env.unwrapped.state.verified
    assert not [r for r in info["recovery"] if r["kind"] == "rejected_call"]


def test_stopping_without_a_call_closes_the_records_and_ends_the_episode():
    """An agent that stops calling tools (a TRL rollout's end, ``recoverygym eval``'s too): what is still open was
    not handled, the final info is a last step's, and the episode is over."""
    env = start(transient_error=1.0)
    *_, info = env.step(call("append", amount=env.task.amounts[0]))
    assert info["recovery"][0]["detail"] == "not handled yet"  # open: the agent may still retry
    final = env.stop()
    assert set(final) == {"success", "score", "components", "reasons", "faults", "recovery"}
    assert final["recovery"][0]["handled"] is False
    assert final["recovery"][0]["detail"] == "not handled by the end of the episode"
    assert final["score"] == env.check().score and final["faults"] == info["faults"]
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(call("count"))
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.stop()


def test_an_evaluation_episode_ended_by_a_reply_keeps_the_closed_records(tmp_path):
    """The runner's records carry the environment's recovery records and each step's outcome, closed by ``stop`` when
    the policy answers without a tool call."""
    from training.evaluation.episode import Action
    from training.evaluation.runner import EvalConfig, load_episodes, run_eval

    class FailsOnceThenReplies:
        name = "replies"

        def config(self):
            return {"policy": "replies"}

        def act(self, episodes):
            return [Action(ep.env.unwrapped.reference_action() if not ep.history else "I am done.", scripted=True)
                    for ep in episodes]

    config = EvalConfig(env_ids=("recoverygym/SupportDesk-v0",), splits=("heldout",), fault_kinds=("transient_error",),
                        fault_rate=1.0, tasks=2, samples=1)
    run_eval(FailsOnceThenReplies(), config, tmp_path, progress=False)
    episodes = load_episodes(tmp_path / "episodes.jsonl")
    assert len(episodes) == 2
    for episode in episodes:
        assert episode["ended"] == "no tool call"
        assert episode["steps"][0]["outcome"] == "fault" and "outcome" not in episode["steps"][-1]
        assert [(r["kind"], r["handled"], r["detail"]) for r in episode["recovery"]] == [
            ("transient_error", False, "not handled by the end of the episode")]
