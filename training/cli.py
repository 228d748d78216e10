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
    """``recoverygym envs``: every environment with its tools, fault kinds and one-line description.

    The shipped ones, then those installed packages declare in the ``recoverygym.envs`` entry-point group; with ids
    (``module:id`` accepted), only those.
    """
    import argparse

    import gymnasium

    import envs

    parser = argparse.ArgumentParser(
        prog="recoverygym envs",
        description="List the environments: recoverygym's own, then those of installed packages (entry-point group "
                    f"{envs.ENTRY_POINT_GROUP!r}).")
    parser.add_argument("ids", nargs="*", metavar="ENV_ID",
                        help="only these, e.g. recoverygym/SupportDesk-v0 or yourmodule:mylab/Pantry-v0")
    args = parser.parse_args(argv)
    try:
        ids = [envs.resolve_env_id(i) for i in args.ids] if args.ids else envs.environments()
    except ValueError as err:
        parser.error(str(err))
    for env_id in ids:
        spec = gymnasium.spec(env_id)
        cls = spec.entry_point if not isinstance(spec.entry_point, str) else _load(spec.entry_point)
        description = getattr(cls, "description", "") or (cls.__doc__ or "").strip().partition("\n")[0]
        if hasattr(cls, "tool_specs"):
            print(f"{env_id}  {description}\n    {len(cls.tool_specs())} tools; faults: {', '.join(cls.fault_kinds)}")
        else:  # a plain Gymnasium environment, not a ToolEnv
            print(f"{env_id}  {description}\n    not a recoverygym ToolEnv ({cls.__module__}.{cls.__qualname__})")
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
