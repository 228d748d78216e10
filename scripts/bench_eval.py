"""Benchmark: batched generation across episodes vs one episode at a time, same model, same tasks.

    python scripts/bench_eval.py --model tiny --episodes 32 --batch-size 16
    python scripts/bench_eval.py --model tiny --episodes 16 --batch-size 8 --max-turns 8 --episode-cache --uncached
    python scripts/bench_eval.py --model smollm2 --episodes 8 --batch-size 8 --max-turns 3 --threads 2 --uncached

All runs use greedy decoding on the same episode keys, so they play the same games; the script prints wall time,
episodes/s, generated tokens/s, prompt tokens computed and reused from a cache, how many episodes had identical
transcripts to the batched run, and the speed-up ratios. ``--uncached`` adds a run one episode at a time without
the shared tool-schema prefix cache or the per-episode cache (what a plain ``generate`` loop does);
``--episode-cache`` adds a batched run without the per-episode cache, to measure what keeping each episode's
key/value cache between turns saves. Timings exclude model loading. Threads are pinned (``--threads``) because on a
small shared CPU torch's default thread count can make either side much slower for reasons unrelated to batching.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (built here), smollm2, or a path / hub name")
    parser.add_argument("--env", default="recoverygym/SupportDesk-v0", help="environment id")
    parser.add_argument("--episodes", type=int, default=32, help="episodes per run (one per heldout task)")
    parser.add_argument("--batch-size", type=int, default=16, help="episodes in flight in the batched run")
    parser.add_argument("--max-turns", type=int, default=4, help="turn limit per episode")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="generation budget per turn")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both runs (default: 1)")
    parser.add_argument("--uncached", action="store_true",
                        help="add a sequential run without the shared-prefix cache (the naive baseline)")
    parser.add_argument("--episode-cache", action="store_true",
                        help="add a batched run without the per-episode key/value cache (recomputes every prompt)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from training.evaluation.model_policy import TransformersPolicy

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model == "tiny":
            source, name = _tiny_model(args.env, tmp / "tiny"), "tiny-qwen2 (random init)"
        elif args.model == "smollm2":
            from training.models import smollm2_path

            source, name = smollm2_path(), "SmolLM2-135M-Instruct"
        else:
            source, name = args.model, args.model
        policy = TransformersPolicy(source, max_new_tokens=args.max_new_tokens, max_batch_size=args.batch_size)
        _run(policy, args.env, 2, 2, 1, tmp / "warmup")  # first-call overheads out of the timings
        runs = [("batched", args.batch_size, policy), ("sequential", 1, policy)]
        if args.episode_cache:
            fresh = TransformersPolicy(policy.model, policy.tokenizer, max_new_tokens=args.max_new_tokens,
                                       max_batch_size=args.batch_size, episode_cache=False)
            runs.append(("batched, no episode cache", args.batch_size, fresh))
        if args.uncached:
            plain = TransformersPolicy(policy.model, policy.tokenizer, max_new_tokens=args.max_new_tokens,
                                       prefix_cache=False, episode_cache=False)
            runs.append(("sequential, no caches", 1, plain))
        rows = {}
        for label, bs, pol in runs:
            pol._prefix_kv.clear()  # each run pays for computing the shared prefix once
            pol.prompt_tokens = [0, 0]
            wall, eps = _run(pol, args.env, args.episodes, bs, args.max_turns, tmp / label.replace(" ", "_"))
            tokens = sum(e["generated_tokens"] for e in eps)
            rows[label] = {"batch_size": bs, "prefix_cache": pol.prefix_cache, "episode_cache": pol.episode_cache,
                           "wall_s": wall, "episodes": len(eps), "turns": sum(e["turns"] for e in eps),
                           "tokens": tokens, "episodes_per_s": len(eps) / wall, "tokens_per_s": tokens / wall,
                           "prompt_tokens_computed": pol.prompt_tokens[0], "prompt_tokens_reused": pol.prompt_tokens[1],
                           "steps": [e["steps"] for e in eps]}
    transcripts = {label: [[(s["action"], s["observation"]) for s in steps] for steps in r.pop("steps")]
                   for label, r in rows.items()}
    same = {label: sum(a == b for a, b in zip(transcripts["batched"], t, strict=True))
            for label, t in transcripts.items() if label != "batched"}
    print(f"model {name} · env {args.env} · {args.episodes} episodes x <= {args.max_turns} turns · "
          f"{args.max_new_tokens} new tokens/turn · torch {torch.__version__} · {args.threads} thread(s)")
    for label, r in rows.items():
        print(f"  {label:>28} (batch {r['batch_size']:>3}): {r['wall_s']:7.2f} s  {r['episodes_per_s']:6.3f} ep/s  "
              f"{r['tokens_per_s']:8.1f} tok/s  ({r['turns']} turns, {r['tokens']} tokens; prompt tokens computed "
              f"{r['prompt_tokens_computed']:,}, reused {r['prompt_tokens_reused']:,})")
    for label, n in same.items():
        print(f"  transcripts identical to batched: {label}: {n}/{args.episodes}")
    ratios = {label: r["wall_s"] / rows["batched"]["wall_s"] for label, r in rows.items() if label != "batched"}
    for label, ratio in ratios.items():
        print(f"  speed-up of batched over {label}: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"model": name, "torch": torch.__version__,
                                         "args": vars(args) | {"json": str(args.json)}, "runs": rows,
                                         "identical_to_batched": same, "speedup_of_batched": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
