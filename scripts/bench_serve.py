"""Bounded load test of ``recoverygym serve`` on loopback: sessions x steps, throughput, step latency, overhead.

Starts a server process on 127.0.0.1 (a free port), records reference-policy episodes in-process, then replays
their calls through ``RecoveryGymClient``: first one session alone (round-trip latency), then ``--sessions``
concurrent sessions (throughput). The same calls replayed on an in-process environment give the local step time;
the server's overhead per step is the remote median minus the local median. Each phase stops after its fixed
number of steps or after ``--max-seconds``, whichever comes first, and the server is stopped at the end.

    python scripts/bench_serve.py                                  # SupportDesk, 8 sessions x 200 steps
    python scripts/bench_serve.py --env recoverygym/Spreadsheet-v0 --sessions 4 --steps 100

Client and server share the machine's cores, so the figures include the client's own work (one event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium

import envs  # noqa: F401  (registers the recoverygym ids)

ROOT = Path(__file__).resolve().parents[1]


def record_episodes(env_id: str, faults: dict[str, float], steps: int, first_task: int) -> list[dict]:
    """Reference episodes (task, seed, calls) with at least ``steps`` calls in all."""
    env = gymnasium.make(env_id, faults=faults)
    episodes, total, task = [], 0, first_task
    while total < steps:
        env.reset(seed=task, options={"task_seed": task, "split": "heldout"})
        calls = []
        while True:
            call = json.loads(env.unwrapped.reference_action())
            calls.append(call)
            _, _, terminated, truncated, _ = env.step(json.dumps(call))
            if terminated or truncated:
                break
        episodes.append({"task_seed": task, "seed": task, "calls": calls})
        total += len(calls)
        task += 1
    return episodes


def local_step_times(env_id: str, faults: dict[str, float], episodes: list[dict]) -> list[float]:
    env = gymnasium.make(env_id, faults=faults)
    times = []
    for episode in episodes:
        env.reset(seed=episode["seed"], options={"task_seed": episode["task_seed"], "split": "heldout"})
        for call in episode["calls"]:
            action = json.dumps(call)
            start = time.perf_counter()
            env.step(action)
            times.append(time.perf_counter() - start)
    return times


async def run_session(client, episodes: list[dict], steps: int, deadline: float, latencies: list[float]) -> int:
    from openenv.core.env_server.mcp_types import CallToolAction

    done = 0
    for episode in episodes:
        await client.reset(task_seed=episode["task_seed"], split="heldout", seed=episode["seed"])
        for call in episode["calls"]:
            if done >= steps or time.monotonic() > deadline:
                return done
            start = time.perf_counter()
            result = await client.step(CallToolAction(tool_name=call["name"], arguments=call["arguments"]))
            latencies.append(time.perf_counter() - start)
            if result.observation.error is not None:
                raise RuntimeError(result.observation.error.message)
            done += 1
    return done


async def load(url: str, per_session: list[list[dict]], steps: int, max_seconds: float):
    """Connect every session first (not timed), then run them all at once."""
    from training.integrations.openenv_client import RecoveryGymClient

    clients = [RecoveryGymClient(url, message_timeout_s=max_seconds) for _ in per_session]
    try:
        await asyncio.gather(*(client.connect() for client in clients))
        latencies: list[float] = []
        deadline = time.monotonic() + max_seconds
        start = time.perf_counter()
        counts = await asyncio.gather(*(run_session(client, eps, steps, deadline, latencies)
                                        for client, eps in zip(clients, per_session, strict=True)))
        return sum(counts), time.perf_counter() - start, latencies
    finally:
        await asyncio.gather(*(client.close() for client in clients))


def start_server(env_id: str, faults: dict[str, float], sessions: int) -> tuple[subprocess.Popen, str]:
    fault_text = ",".join(f"{k}={v}" for k, v in faults.items())
    args = [sys.executable, "-m", "training.cli", "serve", env_id, "--port", "0", "--max-sessions", str(sessions)]
    proc = subprocess.Popen(args + (["--faults", fault_text] if fault_text else []), stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            if " on http://" in line:
                return proc, line.split(" on ")[1].split()[0]
    proc.kill()
    raise SystemExit("the server did not start")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="recoverygym/SupportDesk-v0")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent sessions of the load phase")
    parser.add_argument("--steps", type=int, default=200, help="tool calls per session")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap of each phase")
    parser.add_argument("--faults", default="transient_error=0.1,rate_limit=0.1",
                        help="kind=rate,...; the same rates in the server and the local baseline")
    args = parser.parse_args(argv)
    faults = {k: float(v) for k, v in (item.split("=") for item in args.faults.split(",") if item)}

    per_session = [record_episodes(args.env, faults, args.steps, first_task=1000 * i) for i in range(args.sessions)]
    local = [t for eps in per_session for t in local_step_times(args.env, faults, eps)]
    proc, url = start_server(args.env, faults, args.sessions)
    import training.integrations.openenv_client  # noqa: F401  (openenv's imports take seconds: not in the timing)

    try:
        single_steps, single_wall, single = asyncio.run(load(url, per_session[:1], args.steps, args.max_seconds))
        steps, wall, latencies = asyncio.run(load(url, per_session, args.steps, args.max_seconds))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

    print(f"{args.env}, faults {args.faults}, server on loopback, {os.cpu_count()} CPUs shared by client and server")
    print(f"local env.step:        p50 {ms(statistics.median(local))}  p99 {ms(quantile(local, 0.99))}  "
          f"({len(local)} steps)")
    print(f"1 session:             p50 {ms(statistics.median(single))}  p99 {ms(quantile(single, 0.99))}  "
          f"{single_steps / single_wall:,.0f} steps/s  ({single_steps} steps, {single_wall:.1f} s)")
    print(f"{args.sessions} sessions:            p50 {ms(statistics.median(latencies))}  "
          f"p99 {ms(quantile(latencies, 0.99))}  {steps / wall:,.0f} steps/s  ({steps} steps, {wall:.1f} s)")
    overhead = statistics.median(single) - statistics.median(local)
    print(f"server overhead/step:  {ms(overhead)} (1-session p50 minus local p50; "
          f"{statistics.median(single) / statistics.median(local):,.0f}x a local step)")
    if steps < args.sessions * args.steps:
        print(f"stopped at the {args.max_seconds:g} s cap: {steps} of {args.sessions * args.steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
