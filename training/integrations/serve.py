"""``recoverygym serve ENV_ID``: run an OpenEnv environment server for one environment (needs the openenv extra).

The options are parsed before ``openenv`` is imported, so ``--help`` and usage errors are instant and work without
the extra installed.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Sequence


def parse_fault_list(text: str) -> dict[str, float]:
    """``kind=rate,kind=rate`` (the ``--faults`` syntax) as a dict; the environment validates kinds and rates."""
    faults: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, rate = item.partition("=")
        if not sep or not kind.strip():
            raise argparse.ArgumentTypeError(f"fault {item!r} is not kind=rate, e.g. transient_error=0.2")
        try:
            faults[kind.strip()] = float(rate)
        except ValueError:
            raise argparse.ArgumentTypeError(f"fault rate {rate!r} of {kind.strip()!r} is not a number") from None
    return faults


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recoverygym serve",
        description="Serve a recoverygym environment to OpenEnv clients (TRL, torchforge, SkyRL, ...): its tools as "
                    "MCP tools, one environment instance per session. Needs: pip install 'recoverygym[openenv]'.",
        epilog="Example: recoverygym serve recoverygym/SupportDesk-v0 --port 8000 --faults write_timeout=0.2 "
               "--max-sessions 16   (docs/integrations.md)",
    )
    parser.add_argument("env_id", help="a registered id (recoverygym envs lists them), or module:id")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (printed at start)")
    parser.add_argument("--faults", type=parse_fault_list, default={}, metavar="KIND=RATE,...",
                        help="default fault rates of every session, e.g. transient_error=0.2,rate_limit=0.1; "
                             "a client's reset(faults=...) overrides them")
    parser.add_argument("--max-sessions", type=int, default=8, metavar="N",
                        help="concurrent sessions (one per client connection); one more is refused (default 8)")
    parser.add_argument("--max-turns", type=int, default=None, metavar="N",
                        help="turn limit of every episode (default: the environment's own)")
    parser.add_argument("--session-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="reap a session no connection is attached to after this long, e.g. from an MCP client "
                             "that died without closing it (default 300; 0 never reaps)")
    return parser


def serve_main(argv: Sequence[str] = ()) -> int:
    """Parse the options, build the app, listen, and serve until SIGINT/SIGTERM; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_sessions < 1:
        parser.error(f"--max-sessions must be at least 1, got {args.max_sessions}")
    from training.adapter import make_env

    try:  # a wrong id or fault setting is reported before the (slow) server imports
        make_env(args.env_id, faults=args.faults, max_turns=args.max_turns).close()
    except (ValueError, TypeError) as err:
        print(f"recoverygym serve: {err}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from training.integrations.openenv_server import create_server_app
    except ImportError as err:
        print(f"recoverygym serve: {err}. Install the OpenEnv extra: pip install 'recoverygym[openenv]'",
              file=sys.stderr)
        return 2
    try:
        app = create_server_app(args.env_id, faults=args.faults, max_turns=args.max_turns,
                                max_sessions=args.max_sessions, session_timeout=args.session_timeout or None)
    except (ValueError, TypeError) as err:
        print(f"recoverygym serve: {err}", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        print(f"recoverygym serve: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    faults = ",".join(f"{k}={v:g}" for k, v in args.faults.items()) or "none"
    print(f"recoverygym serve: {args.env_id} on http://{host}:{port} (WebSocket /ws, MCP /mcp; faults {faults}; "
          f"at most {args.max_sessions} sessions). Ctrl-C stops it.", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, ws_max_size=16 << 20))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (open sessions closed, environments closed), then re-raises
    # the signal to the previous handler: these make that the end of a clean run, exit status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    print("recoverygym serve: stopped", flush=True)
    return 0
