"""Environment throughput on one core: reference-policy episodes/s and steps/s for every registered environment.

An episode is ``reset`` + every step of the reference policy (computing its actions included) + the checker, which
runs at the end of every episode. Steps/s counts ``env.step`` calls over the same wall time, so it includes resets
and the policy; "step() only" divides by the time spent inside ``env.step``. The replay columns play the same
episodes again from the recorded actions (same seeds, so the same faults fire and the same reward must come out):
reset + every step + checker with the policy's own work left out, the way other suites replay gold actions.
``--read-only`` also measures bare read-tool steps (no reset, no policy) for comparison with other suites'
read-only figures.

    python scripts/bench_envs.py                # all environments, faults off and all kinds at 0.2
    python scripts/bench_envs.py --seconds 5 --env recoverygym/SupportDesk-v0
    python scripts/bench_envs.py --env pantry:mylab/Pantry-v0   # one outside envs/ (module:id, as gymnasium.make)

"All kinds" is every kind the environment supports (``EnvClass.all_faults(0.2)``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import gymnasium

import envs
from envs.core import FaultConfig


def bench_episodes(env_id: str, faults: FaultConfig | None, seconds: float, split: str) -> dict[str, float]:
    env = gymnasium.make(env_id, faults=faults, disable_env_checker=True).unwrapped  # the bare env, as TRL uses it
    episodes = steps = successes = 0
    in_step = 0.0
    played: list[tuple[list[str], float]] = []  # each episode's actions and reward, for the replay
    clock = time.perf_counter
    start = clock()
    while clock() - start < seconds:
        env.reset(seed=episodes, options={"task_seed": episodes, "split": split})
        actions = []
        while True:
            actions.append(action := env.reference_action())
            t = clock()
            _, reward, terminated, truncated, _ = env.step(action)
            in_step += clock() - t
            steps += 1
            if terminated or truncated:
                break
        played.append((actions, reward))
        successes += reward == 1.0
        episodes += 1
    elapsed = time.perf_counter() - start

    start = clock()
    for episode, (actions, reward) in enumerate(played):
        env.reset(seed=episode, options={"task_seed": episode, "split": split})
        for action in actions:
            replayed = env.step(action)[1]
        assert replayed == reward, f"episode {episode} replayed to reward {replayed}, not {reward}: not deterministic"
    replay = clock() - start
    return {"episodes_per_s": episodes / elapsed, "steps_per_s": steps / elapsed, "step_only_per_s": steps / in_step,
            "replay_episodes_per_s": episodes / replay, "replay_steps_per_s": steps / replay, "episodes": episodes,
            "steps_per_episode": steps / episodes, "success": successes / episodes}


def bench_read_only(env_id: str, seconds: float) -> float:
    """Bare read steps/s: the reads of task 0's reference episode, and the reads that check its writes, in a loop."""
    env = gymnasium.make(env_id, disable_env_checker=True).unwrapped
    env.reset(seed=0, options={"task_seed": 0})
    calls = []
    while True:
        calls.append(call := env.reference_call())
        *_, terminated, truncated, _ = env.step(call.to_json())
        if terminated or truncated:
            break
    specs = env.tool_specs()
    reads = [c for c in calls if not specs[c.name].write]
    reads += [r for c in calls if specs[c.name].write and not specs[c.name].finish and (r := env.read_back(c))]
    env.reset(seed=0, options={"task_seed": 0})
    env.max_turns = 10**12
    actions = [c.to_json() for c in reads]
    assert all(env.step(a)[4]["outcome"] == "ok" for a in actions), "a benchmark read failed"
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            env.step(action)
        n += len(actions)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append",
                        help="environment id: registered, module:id, or an installed package's (repeatable; "
                             "default: every environment `recoverygym envs` lists)")
    parser.add_argument("--seconds", type=float, default=3.0, help="wall time per measurement (default 3)")
    parser.add_argument("--split", default="train", choices=["train", "heldout"])
    parser.add_argument("--read-only", action="store_true", help="also measure bare read-tool steps/s")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:  # the module of a module:id is imported and installed packages are looked up here, before any timing
        env_ids = [envs.resolve_env_id(e) for e in args.env] if args.env else envs.environments()
    except ValueError as err:
        parser.error(str(err))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the issue asks
    print(f"python {platform.python_version()} on {platform.machine()}, one core, {args.seconds:g} s per row, "
          f"{args.split} split")
    print(f"{'environment':<30}{'faults':<10}{'episodes/s':>12}{'steps/s':>10}{'step() only':>13}{'replay ep/s':>13}"
          f"{'replay steps/s':>16}{'steps/ep':>10}{'success':>9}")
    results = []
    for env_id in env_ids:
        every_kind = gymnasium.make(env_id, disable_env_checker=True).unwrapped.all_faults(0.2)
        for label, faults in (("off", None), ("all 0.2", every_kind)):
            r = bench_episodes(env_id, faults, args.seconds, args.split)
            results.append({"env": env_id, "faults": label, **r})
            print(f"{env_id:<30}{label:<10}{r['episodes_per_s']:>12,.0f}{r['steps_per_s']:>10,.0f}"
                  f"{r['step_only_per_s']:>13,.0f}{r['replay_episodes_per_s']:>13,.0f}{r['replay_steps_per_s']:>16,.0f}"
                  f"{r['steps_per_episode']:>10.1f}{r['success']:>9.0%}", flush=True)
        if args.read_only:
            rate = bench_read_only(env_id, args.seconds)
            results.append({"env": env_id, "faults": "read-only steps", "steps_per_s": rate})
            print(f"{env_id:<30}{'reads':<10}{'':>12}{'':>10}{rate:>13,.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
