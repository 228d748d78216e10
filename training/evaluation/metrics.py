"""Evaluation metrics: pure functions of episode records, no environment, no torch.

Every definition here is written out in ``docs/evaluation.md``; the tests check each against hand-computed cases.

An *episode record* is the dict the runner appends to its JSONL file (``runner._record``). The metrics
read only these keys: ``env_id``, ``split``, ``fault_kind``, ``task_seed``, ``sample``, ``success``, ``score``,
``required_steps``, ``turns``, ``invalid_actions``, ``generated_tokens``, ``faults``, ``steps`` and
``tool_kinds``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CHECK_FIRST_KINDS",
    "Z_95",
    "group_episodes",
    "paired_comparison",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_hat_k",
    "pass_hat_k_curve",
    "read_tools",
    "recovery_behaviour",
    "recovery_stats",
    "recovery_turns",
    "repeated_rejections",
    "sign_test_p",
    "success_by_required_steps",
    "summarize",
    "summarize_group",
    "task_counts",
    "wilson_interval",
]

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not degenerate at 0 or n successes, which is
    where small evaluations usually sit. Returns ``(nan, nan)`` for ``n == 0``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue past p
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (min(lo, p), max(hi, p))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of the chance that k i.i.d. samples of one task *all* succeed: C(c, k) / C(n, k).

    This is tau-bench's pass^k for one task with ``c`` successes among ``n`` samples; it needs ``k <= n``.
    """
    _check_nck(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of the chance that *at least one* of k samples succeeds: 1 - C(n - c, k) / C(n, k)."""
    _check_nck(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _check_nck(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n (k samples out of the n drawn per task), got k={k}, n={n}")


def task_counts(episodes: Iterable[Mapping[str, Any]]) -> dict[tuple, tuple[int, int]]:
    """Map each task ``(env_id, split, fault_kind, task_seed)`` to ``(n samples, c successes)``."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for ep in episodes:
        key = (ep["env_id"], ep["split"], ep["fault_kind"], ep["task_seed"])
        counts[key][0] += 1
        counts[key][1] += bool(ep["success"])
    return {key: (n, c) for key, (n, c) in counts.items()}


def _curve(counts: Sequence[tuple[int, int]], estimator) -> dict[int, float]:
    """Average a per-task estimator over tasks for k = 1..min(n).

    Tasks are weighted equally. When tasks were sampled a different number of times (an interrupted run), k goes
    only up to the smallest n so that every task contributes to every point of the curve.
    """
    if not counts:
        return {}
    k_max = min(n for n, _ in counts)
    return {k: sum(estimator(n, c, k) for n, c in counts) / len(counts) for k in range(1, k_max + 1)}


def pass_hat_k_curve(counts: Sequence[tuple[int, int]]) -> dict[int, float]:
    """tau-bench's pass^k for k = 1..n: the mean over tasks of C(c, k) / C(n, k)."""
    return _curve(counts, pass_hat_k)


def pass_at_k_curve(counts: Sequence[tuple[int, int]]) -> dict[int, float]:
    """pass@k for k = 1..n: the mean over tasks of 1 - C(n - c, k) / C(n, k)."""
    return _curve(counts, pass_at_k)


def sign_test_p(better: int, worse: int) -> float:
    """Exact two-sided sign test: the chance, if neither run were better, of a split of the ``better + worse``
    tasks that differ at least as uneven as this one (ties dropped). With one sample per task this is the exact
    McNemar test on the discordant tasks."""
    if better < 0 or worse < 0:
        raise ValueError(f"need non-negative counts, got better={better}, worse={worse}")
    n = better + worse
    if n <= 1000:  # exact
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(better, worse) + 1)) / 2**n)
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
                 for i in range(min(better, worse) + 1)]
    return min(1.0, 2 * math.fsum(math.exp(t) for t in log_terms))


def paired_comparison(base: Iterable[Mapping[str, Any]], other: Iterable[Mapping[str, Any]], *,
                      resamples: int = 10_000, seed: int = 0) -> dict[str, Any] | None:
    """``other`` against ``base`` on the tasks both ran: is the difference more than the luck of the draw?

    Tasks ``(env_id, split, fault_kind, task_seed)`` are the unit. Each run's per-task success rate and mean score
    are averaged over its samples of that task; ``better``/``worse``/``same`` count tasks on which ``other``'s
    success rate is above, below or equal to ``base``'s, ``sign_test_p`` is the exact sign test on those counts
    (``score_better``/``score_worse``/``score_sign_test_p`` the same for the mean score), and the two differences
    (``other - base``, means over tasks) get percentile intervals from a bootstrap that resamples tasks
    (``resamples`` draws from ``numpy.random.default_rng(seed)``; with 0 the intervals are None).
    Returns None when no task is shared.
    """
    def per_task(episodes):
        return {key: (_mean([float(bool(ep["success"])) for ep in eps]), _mean([float(ep["score"]) for ep in eps]))
                for key, eps in group_episodes(episodes, (*GROUP_KEYS, "task_seed")).items()}

    a, b = per_task(base), per_task(other)
    shared = sorted(set(a) & set(b), key=lambda key: tuple(map(str, key)))
    if not shared:
        return None
    success = np.array([b[key][0] - a[key][0] for key in shared])
    score = np.array([b[key][1] - a[key][1] for key in shared])
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, 2))
    for start in range(0, resamples, 1000):  # in blocks: a resamples x tasks index array can be large
        draws = rng.integers(0, len(shared), size=(min(1000, resamples - start), len(shared)))
        means[start : start + len(draws)] = np.stack([success[draws].mean(axis=1), score[draws].mean(axis=1)], 1)

    def interval(column):
        if not resamples:
            return None
        lo, hi = np.quantile(means[:, column], [0.025, 0.975])
        return [float(lo), float(hi)]

    better, worse = int((success > 0).sum()), int((success < 0).sum())
    score_better, score_worse = int((score > 0).sum()), int((score < 0).sum())
    return {
        "tasks": len(shared),
        "better": better,
        "worse": worse,
        "same": len(shared) - better - worse,
        "sign_test_p": sign_test_p(better, worse),
        "success_diff": float(success.mean()),
        "success_diff_ci95": interval(0),
        "score_better": score_better,
        "score_worse": score_worse,
        "score_sign_test_p": sign_test_p(score_better, score_worse),
        "score_diff": float(score.mean()),
        "score_diff_ci95": interval(1),
    }


#: Fault kinds after which the state is uncertain (a write timed out, or someone else changed the records): the
#: recovery step is a successful read that checks the state, or the write going through.
CHECK_FIRST_KINDS = ("write_timeout", "concurrent_edit")


def recovery_turns(steps: Sequence[Mapping[str, Any]], fault: Mapping[str, Any], *,
                   read_tools: Collection[str] = (), success: bool = False) -> int | None:
    """Turns the agent needed to recover from one fault, or None if it never recovered.

    A fault fires at turn ``t`` on tool ``T`` (``fault["turn"]``, ``fault["tool"]``). A *successful call* is a
    step with a valid action, no error in its observation and no fault firing (``step["ok"]``). The agent has
    recovered at the first later turn ``t' > t`` with a successful call

    - of ``T`` itself after a failed call (``transient_error``, ``rate_limit``, ``stale_read`` and any other kind
      that names a tool): the retry or re-read that goes through;
    - of ``T`` or of any read tool (``read_tools``) after ``write_timeout`` or ``concurrent_edit``: the read that
      checks what happened, which the error message asks for (or the write going through).

    The answer is ``t' - t``: an immediate successful retry counts 1; a rate-limited tool retried before its wait
    is over counts the turns spent waiting. A fault that names no tool (``seeded_error``: an earlier mistake
    present before turn 1) is repaired only by the episode as a whole: it counts as recovered when the episode
    succeeds (``success``), after all of its turns.
    """
    if fault.get("tool") is None:
        return (steps[-1]["turn"] if steps else 0) if success else None
    start = fault.get("turn") or 0
    targets = {fault["tool"]}
    if fault.get("kind") in CHECK_FIRST_KINDS:
        targets |= set(read_tools)
    for step in steps:
        if step["turn"] > start and step.get("ok") and step.get("tool") in targets:
            return step["turn"] - start
    return None


def repeated_rejections(steps: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """``(repeats, rejections)``: calls the environment rejected on its own account, and how many of them the agent
    followed with the very same call (the action text, whitespace aside).

    A *rejection* is a step that did not go through (``not step["ok"]``: an unparsable action, an unknown tool or
    argument, or an error such as a missing order) that no fault explains: none fired on it, and its tool has no
    fault still pending (one that fired on that tool with no successful call of it since, such as the wait a
    ``rate_limit`` imposes). Retrying a fault's error unchanged is the right recovery. Repeating a rejected call
    unchanged is not: nothing has changed, so it is rejected again; it is the agent not noticing its own mistake.
    """
    repeats = rejections = 0
    pending: set[str] = set()
    for i, step in enumerate(steps):
        pending |= {f["tool"] for f in step.get("faults") or () if f.get("tool")}
        if step.get("ok"):
            pending.discard(step.get("tool"))
            continue
        if step.get("faults") or step.get("tool") in pending:
            continue
        rejections += 1
        action, after = step.get("action"), steps[i + 1] if i + 1 < len(steps) else None
        repeats += after is not None and action is not None and (after.get("action") or "").strip() == action.strip()
    return repeats, rejections


def read_tools(episode: Mapping[str, Any]) -> set[str]:
    """The read tools of an episode record (``tool_kinds``: tool name -> read / write / finish)."""
    return {name for name, kind in (episode.get("tool_kinds") or {}).items() if kind == "read"}


def recovery_stats(episodes: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per fault kind: how many episodes it fired in, how many of them succeeded, and turns to recover.

    The recovery rate of a kind is success among the episodes in which at least one fault of that kind fired, with
    a Wilson interval. ``mean_turns_to_recover`` averages :func:`recovery_turns` over the faults of that kind that
    were recovered from; ``unrecovered_faults`` counts the ones that were not.
    """
    by_kind: dict[str, dict[str, Any]] = defaultdict(lambda: {"episodes": 0, "successes": 0, "turns": [], "lost": 0})
    for ep in episodes:
        kinds = set()
        reads = read_tools(ep)
        for fault in ep.get("faults") or ():
            kinds.add(fault["kind"])
            turns = recovery_turns(ep.get("steps") or (), fault, read_tools=reads, success=bool(ep["success"]))
            if turns is None:
                by_kind[fault["kind"]]["lost"] += 1
            else:
                by_kind[fault["kind"]]["turns"].append(turns)
        for kind in kinds:
            by_kind[kind]["episodes"] += 1
            by_kind[kind]["successes"] += bool(ep["success"])
    out = {}
    for kind, s in sorted(by_kind.items()):
        lo, hi = wilson_interval(s["successes"], s["episodes"])
        out[kind] = {
            "episodes_with_fault": s["episodes"],
            "recovered_episodes": s["successes"],
            "recovery_rate": s["successes"] / s["episodes"],
            "recovery_rate_ci95": [lo, hi],
            "faults_fired": len(s["turns"]) + s["lost"],
            "unrecovered_faults": s["lost"],
            "mean_turns_to_recover": _mean(s["turns"]),
        }
    return out


def recovery_behaviour(episodes: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Recovery as behaviour, from the environment's own records (``episode["recovery"]``, ``envs/core/recovery.py``):
    per event kind (a fault kind, or ``rejected_call``) and over all kinds (``"all"``), how many events happened,
    how many the agent handled (with a Wilson interval), the mean turns from the event to its handling, and how many
    episodes had at least one. No text heuristic: whether a timed-out write was read back before it was made again,
    a rejected call changed, a seeded error undone, is what the environment recorded. ``{}`` when no event happened.
    """
    by_kind: dict[str, dict[str, Any]] = defaultdict(lambda: {"events": 0, "handled": 0, "turns": [], "episodes": 0})
    for ep in episodes:
        records = ep.get("recovery") or ()
        for kind in {r["kind"] for r in records} | ({"all"} if records else set()):
            by_kind[kind]["episodes"] += 1
        for record in records:
            for kind in (record["kind"], "all"):
                s = by_kind[kind]
                s["events"] += 1
                if record.get("handled"):
                    s["handled"] += 1
                    if record.get("turns") is not None:
                        s["turns"].append(record["turns"])
    out = {}
    for kind in sorted(by_kind, key=lambda k: (k == "all", k)):
        s = by_kind[kind]
        lo, hi = wilson_interval(s["handled"], s["events"])
        out[kind] = {"events": s["events"], "handled": s["handled"], "handled_rate": s["handled"] / s["events"],
                     "handled_ci95": [lo, hi], "mean_turns_to_handle": _mean(s["turns"]),
                     "episodes_with_event": s["episodes"]}
    return out


def success_by_required_steps(episodes: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The compounding-error curve: success rate (with Wilson interval) for each number of required steps."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for ep in episodes:
        groups[int(ep["required_steps"])].append(bool(ep["success"]))
    out = {}
    for steps, results in sorted(groups.items()):
        lo, hi = wilson_interval(sum(results), len(results))
        out[steps] = {"n": len(results), "success_rate": sum(results) / len(results), "ci95": [lo, hi]}
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_group(episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """All metrics of one group of episodes (one env, split and fault kind, or any other slice)."""
    n = len(episodes)
    if n == 0:
        raise ValueError("cannot summarize an empty group of episodes")
    successes = sum(bool(ep["success"]) for ep in episodes)
    lo, hi = wilson_interval(successes, n)
    counts = list(task_counts(episodes).values())
    turns = sum(ep["turns"] for ep in episodes)
    tokens = sum(ep.get("generated_tokens") or 0 for ep in episodes)
    pairs = [repeated_rejections(ep.get("steps") or ()) for ep in episodes]
    repeats, rejections = sum(r for r, _ in pairs), sum(n for _, n in pairs)
    return {
        "episodes": n,
        "tasks": len(counts),
        "successes": successes,
        "success_rate": successes / n,
        "success_ci95": [lo, hi],
        "mean_score": sum(float(ep["score"]) for ep in episodes) / n,
        "pass_hat_k": pass_hat_k_curve(counts),
        "pass_at_k": pass_at_k_curve(counts),
        "episodes_with_fault": sum(bool(ep.get("faults")) for ep in episodes),
        "recovery": recovery_stats(episodes),
        "recovery_behaviour": recovery_behaviour(episodes),
        "success_by_required_steps": success_by_required_steps(episodes),
        "invalid_action_rate": sum(ep["invalid_actions"] for ep in episodes) / turns if turns else 0.0,
        "repeated_rejection_rate": repeats / rejections if rejections else None,
        "mean_turns": turns / n,
        "tokens_per_episode": tokens / n,
        "tokens_per_success": tokens / successes if successes else None,
    }


GROUP_KEYS = ("env_id", "split", "fault_kind")


def group_episodes(
    episodes: Iterable[Mapping[str, Any]], keys: Sequence[str] = GROUP_KEYS
) -> dict[tuple, list[Mapping[str, Any]]]:
    """Group episode records by the values of ``keys``, in sorted key order."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for ep in episodes:
        groups[tuple(ep[k] for k in keys)].append(ep)
    return dict(sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))))


def summarize(episodes: Iterable[Mapping[str, Any]], keys: Sequence[str] = GROUP_KEYS) -> list[dict[str, Any]]:
    """One summary per group (by default per env, split and fault kind), each with its group key values."""
    return [
        {**dict(zip(keys, key, strict=True)), **summarize_group(group)}
        for key, group in group_episodes(episodes, keys).items()
    ]
