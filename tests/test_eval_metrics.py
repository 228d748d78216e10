"""Metric maths against hand-computed cases (docs/evaluation.md has the definitions)."""

import math

import pytest

from training.evaluation import metrics as m


@pytest.mark.parametrize(
    ("successes", "n", "lo", "hi"),
    [
        (8, 10, 0.4902, 0.9433),  # textbook example: Wilson (1927), Newcombe (1998) table I
        (0, 10, 0.0, 0.2775),  # the Wald interval would collapse to [0, 0] here
        (10, 10, 0.7225, 1.0),
        (1, 2, 0.0945, 0.9055),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_matches_hand_computed(successes, n, lo, hi):
    got = m.wilson_interval(successes, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_edge_cases():
    assert all(math.isnan(x) for x in m.wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes <= n"):
        m.wilson_interval(3, 2)


def test_pass_hat_k_and_pass_at_k_one_task():
    # n=4 samples, c=2 successes.  pass^k = C(2,k)/C(4,k); pass@k = 1 - C(2,k)/C(4,k).
    assert m.pass_hat_k(4, 2, 1) == pytest.approx(0.5)
    assert m.pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)
    assert m.pass_hat_k(4, 2, 3) == 0.0
    assert m.pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert m.pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert m.pass_at_k(4, 2, 3) == 1.0
    # all succeed / none succeed
    assert m.pass_hat_k(5, 5, 5) == 1.0
    assert m.pass_at_k(5, 0, 5) == 0.0
    with pytest.raises(ValueError, match="k <= n"):
        m.pass_hat_k(3, 1, 4)


def test_pass_hat_k_is_unbiased_for_all_k_samples_succeeding():
    # Enumerate every k-subset of the 4 samples [1, 1, 0, 1]: pass^2 = fraction of pairs that both succeed.
    from itertools import combinations

    samples = [1, 1, 0, 1]
    pairs = list(combinations(samples, 2))
    assert m.pass_hat_k(4, 3, 2) == pytest.approx(sum(a and b for a, b in pairs) / len(pairs))
    assert m.pass_at_k(4, 3, 2) == pytest.approx(sum(a or b for a, b in pairs) / len(pairs))


def test_curves_average_over_tasks_and_stop_at_smallest_n():
    counts = [(4, 4), (4, 2)]
    assert m.pass_hat_k_curve(counts) == pytest.approx({1: 0.75, 2: 7 / 12, 3: 0.5, 4: 0.5})
    assert m.pass_at_k_curve(counts) == pytest.approx({1: 0.75, 2: 11 / 12, 3: 1.0, 4: 1.0})
    assert list(m.pass_hat_k_curve([(4, 1), (2, 1)])) == [1, 2]
    assert m.pass_hat_k_curve([]) == {}


def _step(turn, tool, ok=True):
    return {"turn": turn, "tool": tool, "ok": ok}


def test_recovery_turns_definition():
    steps = [_step(1, "read"), _step(2, "write", ok=False), _step(3, "read"), _step(4, "write", ok=False),
             _step(5, "write")]
    # a failed call is recovered by the first later successful call of the same tool: turn 5 -> 3 turns
    assert m.recovery_turns(steps, {"kind": "transient_error", "turn": 2, "tool": "write"}) == 3
    assert m.recovery_turns(steps, {"kind": "rate_limit", "turn": 2, "tool": "write"}, read_tools={"read"}) == 3
    # a write of unknown outcome, or a conflict, is recovered by the read that checks the state: turn 3 -> 1 turn
    for kind in ("write_timeout", "concurrent_edit"):
        assert m.recovery_turns(steps, {"kind": kind, "turn": 2, "tool": "write"}, read_tools={"read"}) == 1
        # no read afterwards: only the write going through counts
        assert m.recovery_turns(steps, {"kind": kind, "turn": 3, "tool": "write"}, read_tools={"read"}) == 2
    # never recovered
    assert m.recovery_turns(steps, {"kind": "rate_limit", "turn": 5, "tool": "write"}) is None
    assert m.recovery_turns(steps, {"kind": "stale_read", "turn": 1, "tool": "list"}, read_tools={"read"}) is None


def test_recovery_turns_of_a_seeded_error_is_the_whole_episode_when_it_succeeds():
    steps = [_step(1, "read"), _step(2, "write"), _step(3, "done")]
    seeded = {"kind": "seeded_error", "turn": 0, "tool": None}
    assert m.recovery_turns(steps, seeded, success=True) == 3
    assert m.recovery_turns(steps, seeded, success=False) is None


def _episode(success, faults=(), steps=(), task=0, required=2, turns=3, invalid=0, tokens=10, fault_kind="all"):
    return {"env_id": "e", "split": "heldout", "fault_kind": fault_kind, "task_seed": task, "sample": 0,
            "success": success, "score": 1.0 if success else 0.25, "required_steps": required, "turns": turns,
            "invalid_actions": invalid, "generated_tokens": tokens, "faults": list(faults), "steps": list(steps),
            "tool_kinds": {"w": "write", "r": "read", "d": "finish"}}


def test_recovery_stats_success_among_faulted_episodes_per_kind():
    steps = [_step(1, "w", ok=False), _step(2, "w")]
    t = {"kind": "transient_error", "turn": 1, "tool": "w"}
    r = {"kind": "rate_limit", "turn": 1, "tool": "w"}
    w = {"kind": "write_timeout", "turn": 1, "tool": "w"}
    s = {"kind": "seeded_error", "turn": 0, "tool": None}
    eps = [
        _episode(True, [t], steps),
        _episode(False, [t, t], [_step(1, "w", ok=False)]),  # two faults of one kind: one episode, two faults
        _episode(True, [r], steps),
        _episode(True),  # no fault: not part of any recovery rate
        _episode(True, [w, s], [_step(1, "w", ok=False), _step(2, "w", ok=False), _step(3, "r"), _step(4, "d")]),
        _episode(False, [s], steps),
    ]
    stats = m.recovery_stats(eps)
    assert set(stats) == {"transient_error", "rate_limit", "write_timeout", "seeded_error"}
    te = stats["transient_error"]
    assert (te["episodes_with_fault"], te["recovered_episodes"], te["recovery_rate"]) == (2, 1, 0.5)
    assert te["faults_fired"] == 3 and te["unrecovered_faults"] == 2 and te["mean_turns_to_recover"] == 1.0
    assert te["recovery_rate_ci95"] == pytest.approx(m.wilson_interval(1, 2))
    assert stats["rate_limit"]["recovery_rate"] == 1.0
    # the read tool comes from the episode's tool_kinds: the read at turn 3 recovers the timeout at turn 1
    assert stats["write_timeout"]["mean_turns_to_recover"] == 2.0 and stats["write_timeout"]["unrecovered_faults"] == 0
    se = stats["seeded_error"]
    assert (se["episodes_with_fault"], se["recovery_rate"], se["unrecovered_faults"]) == (2, 0.5, 1)
    assert se["mean_turns_to_recover"] == 4.0


def test_summarize_group_counts_tokens_turns_and_invalid_actions():
    eps = [
        _episode(True, task=0, turns=4, invalid=1, tokens=40, required=2),
        _episode(False, task=0, turns=6, invalid=3, tokens=60, required=2),
        _episode(True, task=1, turns=2, invalid=0, tokens=20, required=5),
        _episode(True, task=1, turns=4, invalid=0, tokens=40, required=5),
    ]
    s = m.summarize_group(eps)
    assert (s["episodes"], s["tasks"], s["successes"]) == (4, 2, 3)
    assert s["success_rate"] == 0.75
    assert s["mean_score"] == pytest.approx((3 + 0.25) / 4)
    assert s["pass_hat_k"] == pytest.approx({1: 0.75, 2: 0.5})
    assert s["invalid_action_rate"] == pytest.approx(4 / 16)
    assert s["mean_turns"] == 4.0
    assert s["tokens_per_episode"] == 40.0
    assert s["tokens_per_success"] == pytest.approx(160 / 3)
    curve = s["success_by_required_steps"]
    assert curve[2]["success_rate"] == 0.5 and curve[5]["success_rate"] == 1.0 and curve[5]["n"] == 2


def test_summarize_groups_by_env_split_fault_kind():
    eps = [_episode(True, fault_kind="none"), _episode(False, fault_kind="all"), _episode(True, fault_kind="all")]
    rows = m.summarize(eps)
    assert [(r["fault_kind"], r["episodes"]) for r in rows] == [("all", 2), ("none", 1)]
    assert rows[1]["tokens_per_success"] == 10.0
    with pytest.raises(ValueError, match="empty"):
        m.summarize_group([])


def test_repeated_rejections_count_unchanged_retries_of_calls_the_env_rejected_not_of_faults():
    def step(turn, action, ok=False, faults=()):
        return {"turn": turn, "action": action, "tool": "w", "ok": ok, "faults": list(faults)}

    limit = {"kind": "rate_limit", "turn": 3, "tool": "w"}
    steps = [
        step(1, "A"),
        step(2, " A\n"),  # the same call again (whitespace aside): a repeat of turn 1's rejection
        step(3, "B", faults=[limit]),  # a fault's error: retrying it unchanged is right, not counted
        step(4, "B"),  # still inside the rate limit's wait (no successful call of w since): not counted
        step(5, "B", ok=True),  # the wait is over
        step(6, "C"),  # rejected; followed by another call
        step(7, "D", ok=True),
        step(8, "E"),  # rejected on the last turn: nothing follows
    ]
    assert m.repeated_rejections(steps) == (1, 4)
    assert m.repeated_rejections([step(1, "A", ok=True), step(2, "A", ok=True)]) == (0, 0)
    s = m.summarize_group([_episode(False, steps=steps), _episode(True)])
    assert s["repeated_rejection_rate"] == pytest.approx(1 / 4)
    assert m.summarize_group([_episode(True)])["repeated_rejection_rate"] is None


@pytest.mark.parametrize(
    ("better", "worse", "p"),
    [
        (4, 0, 0.125),  # 2 * (1/2)^4
        (0, 4, 0.125),
        (1, 5, 2 * 7 / 64),  # 2 * (C(6,0) + C(6,1)) / 2^6
        (3, 3, 1.0),
        (0, 0, 1.0),  # nothing differs: no evidence either way
        (10, 0, 2 / 1024),
    ],
)
def test_sign_test_matches_hand_computed(better, worse, p):
    assert m.sign_test_p(better, worse) == pytest.approx(p)


def test_paired_comparison_pairs_tasks_and_averages_samples():
    def ep(task, success, score=None, sample=0, fault_kind="none"):
        return {"env_id": "e", "split": "heldout", "fault_kind": fault_kind, "task_seed": task, "sample": sample,
                "success": success, "score": 1.0 if success else (score or 0.0)}

    base = [ep(0, False), ep(0, False, sample=1), ep(1, True), ep(1, True, sample=1), ep(2, False, 0.5),
            ep(2, False, 0.5, sample=1), ep(3, True), ep(3, True, sample=1),
            ep(9, True)]  # task 9 only in base: not paired
    other = [ep(0, True), ep(0, False, sample=1), ep(1, True), ep(1, False, sample=1), ep(2, True),
             ep(2, True, sample=1), ep(3, True), ep(3, True, sample=1),
             ep(3, False, fault_kind="all")]  # another fault setting: another task
    paired = m.paired_comparison(base, other, resamples=2000)
    assert (paired["tasks"], paired["better"], paired["worse"], paired["same"]) == (4, 2, 1, 1)
    assert paired["sign_test_p"] == pytest.approx(1.0)  # 2 vs 1 of 3
    # per-task success differences: +0.5, -0.5, +1, 0; score differences: +0.5, -0.5, +0.5, 0
    assert paired["success_diff"] == pytest.approx(1.0 / 4)
    assert paired["score_diff"] == pytest.approx(0.5 / 4)
    assert (paired["score_better"], paired["score_worse"], paired["score_sign_test_p"]) == (2, 1, 1.0)
    # the 2.5% and 97.5% quantiles of the mean over all 4^4 equally likely resamples of the 4 tasks (each far from
    # a jump of that distribution, so 2,000 draws land on them); resampling episodes would give other ends
    assert paired["success_diff_ci95"] == [-0.25, 0.75]
    assert paired["score_diff_ci95"] == [-0.25, 0.5]
    assert m.paired_comparison(base, other, resamples=2000) == paired  # seeded bootstrap
    assert m.paired_comparison(base, [ep(7, True)]) is None
    counts_only = m.paired_comparison(base, other, resamples=0)
    assert counts_only["success_diff_ci95"] is None and counts_only["better"] == paired["better"]


def test_paired_comparison_of_identical_runs_is_zero_with_a_zero_interval():
    eps = [{"env_id": "e", "split": "train", "fault_kind": "none", "task_seed": k, "sample": 0,
            "success": k % 2 == 0, "score": float(k % 2 == 0)} for k in range(6)]
    paired = m.paired_comparison(eps, eps)
    assert (paired["better"], paired["worse"], paired["same"], paired["sign_test_p"]) == (0, 0, 6, 1.0)
    assert paired["success_diff_ci95"] == [0.0, 0.0] and paired["score_diff_ci95"] == [0.0, 0.0]


def test_sign_test_stays_exact_enough_for_large_counts():
    exact = 2 * sum(math.comb(1001, i) for i in range(451)) / 2**1001
    assert m.sign_test_p(450, 551) == pytest.approx(exact, rel=1e-9)
    assert m.sign_test_p(2000, 2000) == 1.0
