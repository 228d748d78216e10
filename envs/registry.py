"""Environment ids from outside ``envs/``: gymnasium's ``module:id`` form and installed packages' entry points.

Every command that takes an environment id (``recoverygym eval``, ``recoverygym train``'s ``env.id``,
``scripts/bench_envs.py --env``, the TRL adapter) resolves it here, so an environment written anywhere works with
all of them:

- ``"mylab.pantry:mylab/Pantry-v0"``: imports ``mylab.pantry`` (which calls ``gymnasium.register``), then names
  ``mylab/Pantry-v0``, exactly as ``gymnasium.make`` reads the same string;
- ``"mylab/Pantry-v0"`` from an installed package that declares an entry point in the ``recoverygym.envs`` group::

      [project.entry-points."recoverygym.envs"]
      pantry = "mylab.pantry"            # a module whose import registers its environments
      # or: pantry = "mylab:register"    # a function that registers them when called

  ``recoverygym envs`` lists such environments beside the shipped ones, with no edit to ``envs/__init__.py``.

Installed packages are looked up only when an id is not registered yet or when every environment is listed, never
at ``import envs``, which stays fast.
"""

from __future__ import annotations

import importlib
import warnings

import gymnasium

#: The entry-point group an installed package declares its environments in.
ENTRY_POINT_GROUP = "recoverygym.envs"

_installed: dict[str, str] | None = None  # id -> the entry point that registered it, once looked up


def shipped() -> list[str]:
    """The ids recoverygym itself ships (``envs.ENVIRONMENTS``), in their order."""
    import envs

    return list(envs.ENVIRONMENTS)


def installed(*, refresh: bool = False) -> dict[str, str]:
    """Environments of installed packages: ``{id: "name = value (distribution)"}`` of the entry point registering it.

    Each entry point of the ``recoverygym.envs`` group is loaded once per process: a module is imported, a function
    is called with no arguments. Its ids are those it added to Gymnasium's registry, and, for a module imported
    earlier (by a ``module:id``), the registered ids whose entry point lies in its top-level package. An entry point
    that fails to load is skipped with a ``RuntimeWarning`` naming it, so one broken package does not hide the rest.
    """
    global _installed
    if _installed is not None and not refresh:
        return dict(_installed)
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    own = set(shipped())
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        label = f"{ep.name} = {ep.value}" + (f" ({ep.dist.name})" if getattr(ep, "dist", None) else "")
        before = set(gymnasium.registry)
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as err:  # a broken plugin must not break listing the others
            warnings.warn(f"{ENTRY_POINT_GROUP} entry point {label} failed to load: {type(err).__name__}: {err}",
                          RuntimeWarning, stacklevel=2)
            continue
        package = ep.module.partition(".")[0]
        added = [i for i in gymnasium.registry if i not in before or _defined_in(i, package)]
        for env_id in added:
            if env_id not in own:
                found.setdefault(env_id, label)
    _installed = found
    return dict(found)


def _defined_in(env_id: str, package: str) -> bool:
    entry_point = gymnasium.registry[env_id].entry_point
    module = entry_point.partition(":")[0] if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return module == package or module.startswith(package + ".")


def environments() -> list[str]:
    """Every environment ``recoverygym envs`` lists: the shipped ones, then those of installed packages."""
    own = shipped()
    return own + [i for i in installed() if i not in own]


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"pkg.mod:ns/Name-v0"`` -> ``("pkg.mod", "ns/Name-v0")``; an id without ``:`` -> ``(None, env_id)``."""
    module, sep, name = env_id.partition(":")
    return (module, name) if sep else (None, env_id)


def resolve_env_id(env_id: str) -> str:
    """The registered id ``env_id`` names, after importing whatever registers it.

    ``"module:ns/Name-v0"`` imports ``module`` first (as ``gymnasium.make`` does) and returns ``"ns/Name-v0"``; an id
    not registered yet is looked up among installed packages' entry points. Both spellings name one environment,
    so records keyed by the returned id (evaluation episodes, their seeds) do not depend on how it was written.

    Raises:
        ValueError: the module cannot be found, or no environment has the id; the message lists the known ids,
            suggests a close one and says how to make an outside environment known.
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise ValueError(f"an environment id must be a non-empty string like 'recoverygym/SupportDesk-v0', "
                         f"got {env_id!r}")
    module, name = split_env_id(env_id)
    if module is not None:
        _import_registering_module(module, env_id)
    if name not in gymnasium.registry:
        installed()
    if name not in gymnasium.registry:
        from envs.core.tools import suggest

        known = environments()
        close = suggest(name, known)
        if module:
            how = f"importing {module!r} did not register it (does it call gymnasium.register(id={name!r}, ...)?)"
        elif close:
            how = "it is not registered"
        else:
            how = (f"it is not registered; for an environment outside recoverygym give 'yourmodule:{name}' (imports "
                   f"yourmodule, which calls gymnasium.register) or install a package that declares it in the "
                   f"{ENTRY_POINT_GROUP!r} entry-point group (docs/adding-an-environment.md)")
        raise ValueError(f"unknown environment id {name!r}{close}: {how}. Known: {', '.join(known)}")
    return name


def _import_registering_module(module: str, env_id: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
            raise  # the module exists but something it imports does not: its own bug, shown as is
        raise ValueError(
            f"cannot import module {module!r} named before ':' in {env_id!r}: {err}. Put its folder on PYTHONPATH "
            f"(or install its package), or drop 'module:' if the id is registered already") from err
