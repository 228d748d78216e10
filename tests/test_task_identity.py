"""Task identity: every task of both shipped environments stays byte-identical.

The digests below were taken from the environments as they were before they moved to the core's services (the
class name seeding the tasks, each env storing and showing its own seeded mistake, planning its own start and
counting its own required steps): prompts, start states and tasks of 100 seeds per split (40 with a seeded mistake),
each env and split hashed in order. A change that
alters any task of the benchmark fails here; if the change is meant, it is a new benchmark version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the environments)


def canonical(x, depth: int = 0):
    """A JSON-able form of a state or task that does not depend on hash seeds, caches or object identity: sets
    sorted, dicts as sorted pairs, objects by their pickled state (a workbook drops its caches there), dataclasses
    by field, floats by repr. Fields that are derived, not part of the task (``plan``, ``required_steps``), are
    left out."""
    if depth > 60:
        raise RecursionError("canonical: nested too deeply")
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, np.generic):
        return canonical(x.item(), depth + 1)
    if isinstance(x, list | tuple):
        return [canonical(v, depth + 1) for v in x]
    if isinstance(x, set | frozenset):
        return sorted((canonical(v, depth + 1) for v in x), key=repr)
    if isinstance(x, dict):
        return sorted(([canonical(k, depth + 1), canonical(v, depth + 1)] for k, v in x.items()), key=repr)
    if dataclasses.is_dataclass(x):
        return [type(x).__name__, {f.name: canonical(getattr(x, f.name), depth + 1) for f in dataclasses.fields(x)
                                   if f.name not in ("plan", "required_steps")}]
    if type(x).__getstate__ is not object.__getstate__:
        return [type(x).__name__, canonical(x.__getstate__(), depth + 1)]
    if hasattr(x, "__dict__"):
        return [type(x).__name__, canonical(vars(x), depth + 1)]
    if hasattr(type(x), "__slots__"):
        return [type(x).__name__, {s: canonical(getattr(x, s), depth + 1) for s in type(x).__slots__
                                   if hasattr(x, s)}]
    raise TypeError(f"canonical: no form for {type(x).__name__}")


def start_digest(env_id: str, split: str, seeds: range, faults=None, env=None) -> str:
    """One digest over each seed's prompt, start state, task, template, required steps, turn limit and faults."""
    env = env or gymnasium.make(env_id, faults=faults).unwrapped
    digest = hashlib.sha256()
    for k in seeds:
        obs, info = env.reset(seed=k, options={"task_seed": k, "split": split})
        start = [obs, canonical(env.state), canonical(env.task), info["template"], info["required_steps"],
                 info["max_turns"], info["faults"]]
        digest.update(json.dumps(start, sort_keys=True).encode())
    return digest.hexdigest()[:24]


MODES = {"plain": (None, range(100)), "seeded": ({"seeded_error": 1.0}, range(40))}
DIGESTS = {
    "recoverygym/SupportDesk-v0|plain|train": "527dba17da595710af29ce46",
    "recoverygym/SupportDesk-v0|plain|heldout": "52a1bafe0fe89ea586fa8084",
    "recoverygym/SupportDesk-v0|seeded|train": "6eddd0ad290da7e8091dbc8b",
    "recoverygym/SupportDesk-v0|seeded|heldout": "4074d34f2632c20748774811",
    "recoverygym/Spreadsheet-v0|plain|train": "e60343fe2e53905941ccb076",
    "recoverygym/Spreadsheet-v0|plain|heldout": "e888b84657b711506b4a0180",
    "recoverygym/Spreadsheet-v0|seeded|train": "2e66b959e78c4f2f2aab67e1",
    "recoverygym/Spreadsheet-v0|seeded|heldout": "95b9699daeabd3f25dd86661",
}


@pytest.mark.parametrize("key", sorted(DIGESTS))
def test_every_task_is_as_it_was(key):
    env_id, mode, split = key.split("|")
    faults, seeds = MODES[mode]
    assert start_digest(env_id, split, seeds, faults) == DIGESTS[key], f"{key}: tasks changed"


def test_the_digests_cover_both_envs_both_splits_and_seeded_starts():
    assert {tuple(k.split("|")) for k in DIGESTS} == {
        (e, m, s) for e in ("recoverygym/SupportDesk-v0", "recoverygym/Spreadsheet-v0") for m in MODES
        for s in ("train", "heldout")}
