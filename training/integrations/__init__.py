"""recoverygym environments in other trainers' libraries, each behind an optional extra.

- :mod:`training.integrations.openenv_server`: an OpenEnv environment server (``recoverygym serve ENV_ID``) built on
  ``openenv``'s own ``HTTPEnvServer`` and ``MCPEnvironment``: the environment's tools are MCP tools, called with
  OpenEnv's ``CallToolAction`` (``pip install 'recoverygym[openenv]'``).
- :mod:`training.integrations.openenv_client`: the client for it (OpenEnv's ``MCPToolClient`` with typed ``reset``)
  and a TRL ``environment_factory`` whose rollouts run on a server.
- :mod:`training.integrations.verifiers_env`: ``load_environment(env_id, split, faults, ...)``, a verifiers multi-turn
  tool environment (``pip install 'recoverygym[verifiers]'``).

Nothing here changes an environment: every call goes to ``env.step`` as it does locally, and the reward is the
environment's own (the checker's score of the final state). Importing this package imports neither library.
"""

from __future__ import annotations

__all__: list[str] = []
