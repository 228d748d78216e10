"""Benchmark the transformers evaluation policy: new settings against old in one run, same model, same episodes.

    python scripts/bench_eval.py                                   # tiny model, ~1 min
    python scripts/bench_eval.py --model smollm2 --episodes 8 --batch-size 8 --max-turns 2 --threads 2
    python scripts/bench_eval.py --model smollm2 --episodes 8 --max-turns 2 --threads 2 --grid --repeats 2
    python scripts/bench_eval.py --model tiny --episodes 16 --batch-size 8 --sequential --uncached --episode-cache

Every run is batched (``--batch-size`` episodes in flight) and greedy on the same episode keys, so runs that compute
the same logits play the same games. ``old`` is float32 with transformers' growing ``DynamicCache`` (what evaluation
used before); ``new`` is ``--dtype`` (default ``fast``: bfloat16 where the CPU computes it natively, else float32)
with a preallocated ``StaticCache``. ``--grid`` adds float32 + static and new dtype + dynamic, to tell the two gains
apart; ``--regroup`` adds the new settings generating in rounds of ``--regroup-every`` tokens, after which the rows
that finished leave the batch. For each run the script prints wall time, episodes/s, generated tokens/s and prompt
tokens computed and reused from a cache, how many episodes have transcripts identical to ``old`` (float32 greedy:
what bf16 changes), and the speed-up of ``new`` over each other run. ``--sequential`` (one episode at a time),
``--uncached`` (one at a time, no shared-prefix or episode cache: a plain ``generate`` loop) and ``--episode-cache``
(batched without the per-episode cache) add runs with the new dtype and cache, to measure batching and the caches.
"decoded as padding" is the share of the rows x steps that ``generate`` computed for rows that had already finished
their turn.

On a shared machine wall times drift with the load: ``--repeats N`` runs every setting N times, interleaved, and
keeps each one's fastest; the load average is printed at the start and the end. Timings exclude model loading and
one warm-up. Threads are pinned (``--threads``) because on a small shared CPU torch's default thread count can make
either side much slower for reasons unrelated to the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _tiny_model(env_id: str, folder: Path) -> Path:
    """A random-init tiny Qwen2 whose tokenizer is trained on this env's prompts."""
    import gymnasium

    import envs  # noqa: F401
    from training.models import build_tiny_model

    env = gymnasium.make(env_id)
    texts = []
    for k in range(32):
        prompt, info = env.reset(seed=k, options={"task_seed": k, "split": "train"})
        texts += [prompt, json.dumps(info["tools"])]
    return build_tiny_model(folder, texts=texts, seed=0)


def _run(policy, env_id: str, episodes: int, batch_size: int, max_turns: int, out: Path) -> tuple[float, list]:
    from training.evaluation.runner import EvalConfig, load_episodes, run_eval

    config = EvalConfig(env_ids=(env_id,), splits=("heldout",), fault_kinds=("none",), tasks=episodes, samples=1,
                        seed=0, max_turns=max_turns, batch_size=batch_size)
    start = time.perf_counter()
    run_eval(policy, config, out, progress=False, overwrite=True)
    return time.perf_counter() - start, load_episodes(out / "episodes.jsonl")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (built here), smollm2, or a path / hub name")
    parser.add_argument("--env", default="recoverygym/SupportDesk-v0", help="environment id")
    parser.add_argument("--episodes", type=int, default=32, help="episodes per run (one per heldout task)")
    parser.add_argument("--batch-size", type=int, default=16, help="episodes in flight in the batched runs")
    parser.add_argument("--max-turns", type=int, default=4, help="turn limit per episode")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="generation budget per turn")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every run (default: 1)")
    parser.add_argument("--dtype", default="fast",
                        help="dtype of the new settings: fast (bfloat16 where native, else float32), bfloat16, ...")
    parser.add_argument("--kv-cache", default="static", choices=("static", "dynamic"),
                        help="key/value cache of the new settings (the old one is dynamic)")
    parser.add_argument("--regroup-every", type=int, default=32,
                        help="the --regroup run's rounds, in tokens (default: 32)")
    parser.add_argument("--regroup", action="store_true",
                        help="add the new settings in rounds after which finished rows leave the batch")
    parser.add_argument("--grid", action="store_true",
                        help="add float32 + new cache and new dtype + dynamic cache (which change does what)")
    parser.add_argument("--repeats", type=int, default=1, help="run every setting this many times, keep the fastest")
    parser.add_argument("--sequential", action="store_true", help="add a run one episode at a time (new settings)")
    parser.add_argument("--uncached", action="store_true",
                        help="add a run one episode at a time without the shared-prefix or episode cache")
    parser.add_argument("--episode-cache", action="store_true",
                        help="add a batched run without the per-episode key/value cache (recomputes every prompt)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from training.evaluation.model_policy import TransformersPolicy
    from training.models import load_model_and_tokenizer, resolve_dtype

    torch.set_num_threads(args.threads)
    load_start = _load()
    new_dtype = resolve_dtype(args.dtype, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model == "tiny":
            source, name = _tiny_model(args.env, tmp / "tiny"), "tiny-qwen2 (random init)"
        elif args.model == "smollm2":
            from training.models import smollm2_path

            source, name = smollm2_path(), "SmolLM2-135M-Instruct"
        else:
            source, name = args.model, args.model
        model, tokenizer = load_model_and_tokenizer(source, dtype="float32")
        common = dict(max_new_tokens=args.max_new_tokens, max_batch_size=args.batch_size)

        def policy(dtype, kv_cache, **kw):
            return TransformersPolicy(model, tokenizer, dtype=dtype, kv_cache=kv_cache, **(common | kw))

        old_label, new_label = "old: float32, dynamic", f"new: {str(new_dtype).removeprefix('torch.')}, {args.kv_cache}"
        runs = {old_label: (args.batch_size, policy(torch.float32, "dynamic")),
                new_label: (args.batch_size, policy(new_dtype, args.kv_cache))}
        if args.grid:
            other = "dynamic" if args.kv_cache == "static" else "static"
            runs[f"float32, {args.kv_cache}"] = (args.batch_size, policy(torch.float32, args.kv_cache))
            runs[f"{str(new_dtype).removeprefix('torch.')}, {other}"] = (args.batch_size, policy(new_dtype, other))
        fast = runs[new_label][1].model  # later runs with the new dtype share its converted copy
        if args.regroup:
            runs[f"new, rounds of {args.regroup_every}"] = (args.batch_size, TransformersPolicy(
                fast, tokenizer, kv_cache=args.kv_cache, regroup_every=args.regroup_every, **common))
        if args.sequential:
            runs["new, sequential"] = (1, TransformersPolicy(fast, tokenizer, kv_cache=args.kv_cache, **common))
        if args.episode_cache:
            runs["new, no episode cache"] = (args.batch_size, TransformersPolicy(
                fast, tokenizer, kv_cache=args.kv_cache, episode_cache=False, **common))
        if args.uncached:
            runs["new, sequential, no caches"] = (1, TransformersPolicy(
                fast, tokenizer, kv_cache=args.kv_cache, prefix_cache=False, episode_cache=False, **common))
        warm: set[int] = set()
        for _, pol in runs.values():  # first-call overheads out of the timings, once per model
            if id(pol.model) not in warm:
                warm.add(id(pol.model))
                _run(pol, args.env, 1, 1, 1, tmp / "warmup")
        rows: dict[str, dict] = {}
        for _ in range(args.repeats):
            for label, (bs, pol) in runs.items():
                pol._prefix_kv.clear()  # each run pays for computing the shared prefix once
                pol.prompt_tokens = [0, 0]
                pol.decode_rows = [0, 0]
                wall, eps = _run(pol, args.env, args.episodes, bs, args.max_turns, tmp / "run")
                if label in rows and rows[label]["wall_s"] <= wall:
                    continue
                tokens = sum(e["generated_tokens"] for e in eps)
                rows[label] = {"batch_size": bs, "dtype": str(pol.model.dtype), "kv_cache": pol.kv_cache,
                               "prefix_cache": pol.prefix_cache, "episode_cache": pol.episode_cache,
                               "wall_s": wall, "episodes": len(eps), "turns": sum(e["turns"] for e in eps),
                               "tokens": tokens, "episodes_per_s": len(eps) / wall, "tokens_per_s": tokens / wall,
                               "prompt_tokens_computed": pol.prompt_tokens[0],
                               "prompt_tokens_reused": pol.prompt_tokens[1],
                               "regroup_every": pol.regroup_every,
                               "decoded_as_padding": 1 - pol.decode_rows[0] / max(1, pol.decode_rows[1]),
                               "steps": [[(s["action"], s["observation"]) for s in e["steps"]] for e in eps]}
    transcripts = {label: r.pop("steps") for label, r in rows.items()}
    same = {label: sum(a == b for a, b in zip(transcripts[old_label], t, strict=True))
            for label, t in transcripts.items() if label != old_label}
    print(f"model {name} · env {args.env} · {args.episodes} episodes x <= {args.max_turns} turns · "
          f"{args.max_new_tokens} new tokens/turn · torch {torch.__version__} · {args.threads} thread(s) · "
          f"CPU {torch.backends.cpu.get_cpu_capability()} · {args.repeats} repeat(s), fastest kept · "
          f"load average {load_start} at the start, {_load()} at the end")
    for label, r in rows.items():
        print(f"  {label:>28} (batch {r['batch_size']:>3}): {r['wall_s']:7.2f} s  {r['episodes_per_s']:6.3f} ep/s  "
              f"{r['tokens_per_s']:8.1f} tok/s  ({r['turns']} turns, {r['tokens']} tokens; prompt tokens computed "
              f"{r['prompt_tokens_computed']:,}, reused {r['prompt_tokens_reused']:,}; decoded as padding "
              f"{r['decoded_as_padding']:.0%})")
    for label, n in same.items():
        print(f"  transcripts identical to float32 + dynamic (old): {label}: {n}/{args.episodes}")
    ratios = {label: r["wall_s"] / rows[new_label]["wall_s"] for label, r in rows.items() if label != new_label}
    for label, ratio in ratios.items():
        print(f"  speed-up of {new_label} over {label}: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"model": name, "torch": torch.__version__, "args": vars(args) | {
            "json": str(args.json)}, "runs": rows, "identical_to_old": same, "speedup_of_new": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
