"""The ``recoverygym`` command: ``envs``, ``train``, ``eval``, ``report`` and ``serve`` subcommands.

Each subcommand's module is imported only when it runs, so ``recoverygym envs`` and ``--help`` are instant and do
not need torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "envs": ("training.cli:envs_main", "list the registered environments"),
    "train": ("training.train:main", "supervised warm start then GRPO, from a YAML config (see configs/)"),
    "eval": ("training.evaluation.cli:eval_main", "evaluate policies on held-out tasks, with or without faults"),
    "report": ("training.evaluation.cli:report_main", "Markdown report, plots and trajectory viewer from eval runs"),
    "serve": ("training.integrations.serve:serve_main", "serve an environment to OpenEnv clients (the openenv extra)"),
}

USAGE = "usage: recoverygym {" + ",".join(COMMANDS) + "} ...\n\n" + "\n".join(
    f"  {name:<8}{help_}" for name, (_, help_) in COMMANDS.items()
) + "\n\nrecoverygym COMMAND --help shows a command's options."


def envs_main(argv: Sequence[str] = ()) -> int:
    """``recoverygym envs``: every registered environment with its tools, fault kinds and one-line description."""
    import argparse

    import gymnasium

    import envs

    parser = argparse.ArgumentParser(prog="recoverygym envs", description="List the registered environments.")
    parser.parse_args(argv)
    for env_id in envs.ENVIRONMENTS:
        spec = gymnasium.spec(env_id)
        cls = spec.entry_point if not isinstance(spec.entry_point, str) else _load(spec.entry_point)
        print(f"{env_id}  {cls.description}\n    {len(cls.tool_specs())} tools; faults: {', '.join(cls.fault_kinds)}")
    return 0


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        from envs.core.tools import suggest

        print(f"recoverygym: unknown command {argv[0]!r}{suggest(argv[0], list(COMMANDS))}\n\n{USAGE}", file=sys.stderr)
        return 2
    return int(_load(COMMANDS[argv[0]][0])(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
