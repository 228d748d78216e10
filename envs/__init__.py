"""recoverygym environments: multi-step tool-using tasks with deterministic checkers and fault injection.

``import envs`` registers every environment with Gymnasium under the ``recoverygym/`` namespace::

    import gymnasium, envs
    env = gymnasium.make("recoverygym/SupportDesk-v0", faults={"write_timeout": 0.2})

Registration is lazy (an entry-point string), so importing ``envs`` does not import any environment's code.

Environments outside this package need no line here: every command that takes an id also accepts gymnasium's
``module:id`` form, and an installed package can declare its environments in the ``recoverygym.envs`` entry-point
group (``envs/registry.py``; looked up only when needed, not at import).
"""

from gymnasium.envs.registration import register, registry

#: id -> entry point of every environment recoverygym ships.
ENVIRONMENTS = {
    "recoverygym/SupportDesk-v0": "envs.support.env:SupportDeskEnv",
    "recoverygym/Spreadsheet-v0": "envs.spreadsheet.env:SpreadsheetEnv",
}

for _id, _entry_point in ENVIRONMENTS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry_point, disable_env_checker=False)

from envs.registry import ENTRY_POINT_GROUP, environments, resolve_env_id  # noqa: E402  (after the registry)

__all__ = ["ENTRY_POINT_GROUP", "ENVIRONMENTS", "environments", "resolve_env_id"]
