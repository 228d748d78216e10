"""An environment written outside ``envs/`` works with every tool, by gymnasium's ``module:id`` or an entry point.

The environment is the guide's Pantry example (``docs/adding-an-environment.md``), written into a temporary package
that registers it the way a researcher's own package would. It goes through ``gymnasium.make``, the contract suite,
``recoverygym eval``, ``scripts/bench_envs.py``, the TRL adapter and a ``recoverygym train`` stage; then a package
that declares it in the ``recoverygym.envs`` entry-point group is installed (into a temporary folder, not the
project's environment) and ``recoverygym envs`` lists it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import pytest

import envs
from envs.registry import ENTRY_POINT_GROUP, resolve_env_id

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mylab_outside"
ENV_ID = "outside/Pantry-v0"  # not the guide's mylab/Pantry-v0, which tests/test_docs.py registers elsewhere
TWIN_ID = "outside/PantryTwin-v0"
QUALIFIED = f"{PACKAGE}.pantry:{ENV_ID}"  # gymnasium's module:id form
# Strict: remove once training/evaluation/cli.py and training/config.py resolve ids with envs.resolve_env_id.
REGISTER = f"""

import gymnasium

if {ENV_ID!r} not in gymnasium.registry:
    gymnasium.register(id={ENV_ID!r}, entry_point="{PACKAGE}.pantry:PantryEnv")
"""


def guide_example() -> str:
    """The guide's smallest complete environment: its first Python block, as ``tests/test_docs.py`` reads it."""
    guide = (ROOT / "docs" / "adding-an-environment.md").read_text()
    return re.findall(r"```python\n(.*?)```", guide, re.DOTALL)[0]


def write_package(root: Path) -> Path:
    """``root/mylab_outside/pantry.py``: the guide's example, registering itself when imported."""
    package = root / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(f'''\
        """A researcher's own package: nothing of it is in recoverygym."""

        import gymnasium


        def register() -> None:
            """What a ``{ENTRY_POINT_GROUP}`` entry point may name instead of a module: registers lazily."""
            if {TWIN_ID!r} not in gymnasium.registry:
                gymnasium.register(id={TWIN_ID!r}, entry_point="{PACKAGE}.pantry:PantryEnv")
        '''))
    (package / "pantry.py").write_text(guide_example() + REGISTER)
    return root


def child_env(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees ``paths`` (and the project) on its ``sys.path``."""
    pythonpath = os.pathsep.join([*map(str, paths), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return os.environ | {"PYTHONPATH": pythonpath} | extra


def run(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """The package on this process's ``sys.path``; gone again afterwards (path, modules, registry entries)."""
    root = write_package(tmp_path_factory.mktemp("outside"))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    for env_id in (ENV_ID, TWIN_ID):
        gymnasium.registry.pop(env_id, None)


def play_reference(env) -> tuple[float, dict]:
    env.reset(seed=3, options={"task_seed": 3, "split": "heldout"})
    while True:
        _, reward, terminated, truncated, info = env.step(env.unwrapped.reference_action())
        if terminated or truncated:
            return reward, info


def test_gymnasium_make_loads_it_by_module_and_id(outside):
    assert ENV_ID not in gymnasium.registry  # nothing registered it: only the module:id form can
    env = gymnasium.make(QUALIFIED, faults={"write_timeout": 0.5, "seeded_error": 1.0})
    assert type(env.unwrapped).__module__ == f"{PACKAGE}.pantry"
    reward, info = play_reference(env)
    assert reward == 1.0 and any(f["kind"] == "seeded_error" for f in info["faults"])
    assert resolve_env_id(QUALIFIED) == resolve_env_id(ENV_ID) == ENV_ID  # both spellings name one environment


@pytest.mark.parametrize(("env_id", "message"), [
    ("no_such_module:outside/Pantry-v0", "cannot import module 'no_such_module'"),
    (f"{PACKAGE}.pantry:outside/Pantry-v9", "did not register it"),
    ("outside/Nothing-v0", "'yourmodule:outside/Nothing-v0'"),
    ("recoverygym/SupportDsk-v0", "did you mean 'recoverygym/SupportDesk-v0'"),
])
def test_an_id_nothing_registers_says_how_to_make_it_known(outside, env_id, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_env_id(env_id)


def test_the_contract_suite_holds_it_to_the_same_contract(outside):
    contract = run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_contract.py"), "-q", "-k", "Pantry",
         "-p", "no:cacheprovider"],
        child_env(outside, RECOVERYGYM_CONTRACT_ENVS=f"{ENV_ID}={PACKAGE}.pantry:PantryEnv"),
    )
    assert int(re.search(r"(\d+) passed", contract.stdout).group(1)) >= 10, contract.stdout[-2000:]


def test_recoverygym_eval_runs_a_scripted_policy_on_it(outside, tmp_path):
    from training.cli import main

    out = tmp_path / "eval"
    status = main(["eval", "--env", QUALIFIED, "--policy", "reference", "--tasks", "2", "--samples", "1",
                   "--faults", "none,all", "--out", str(out), "--no-progress"])
    assert status == 0
    episodes = [json.loads(line) for line in (out / "reference" / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 4  # 2 tasks x (no faults, all faults)
    assert {ep["env_id"] for ep in episodes} == {ENV_ID} and all(ep["success"] for ep in episodes)


def test_bench_envs_measures_it(outside):
    bench = run([sys.executable, str(ROOT / "scripts" / "bench_envs.py"), "--env", QUALIFIED, "--seconds", "0.05"],
                child_env(outside))
    rows = [line for line in bench.stdout.splitlines() if line.startswith(ENV_ID)]
    assert len(rows) == 2 and all(row.rstrip().endswith("100%") for row in rows), bench.stdout


def test_the_trl_adapter_rolls_it_out(outside):
    from training.adapter import make_environment_factory
    from training.datasets import grpo_dataset

    instance = make_environment_factory(QUALIFIED)()
    prompt = instance.reset(**grpo_dataset([4], split="train")[0])
    assert "pantry" in prompt and instance.get_reward() == 0.0
    for _ in range(50):
        if instance._episode.done is not None:
            break
        action = json.loads(instance._env.unwrapped.reference_action())
        getattr(instance, action["name"])(**action["arguments"])  # the tools TRL calls, by their names
    assert instance.get_reward() == 1.0


def test_recoverygym_train_runs_a_quick_stage_on_it(outside, tmp_path):
    from training.cli import main

    settings = [
        f"run.output_dir={tmp_path / 'run'}", f"env.id={QUALIFIED}", "run.stages=[sft]", "eval.points=[]",
        "model.name_or_path=tiny", "model.tiny.architecture=llama", "model.tiny.hidden_size=32",
        "model.tiny.vocab_size=1024", "model.tiny.tokenizer_episodes=8", "data.sft_tasks=8", "sft.max_steps=2",
        "sft.per_device_train_batch_size=4", "sft.max_length=4096", "sft.activation_checkpointing=false",
        "sft.report_to=[]",
    ]
    status = main(["train", str(ROOT / "configs" / "quickstart.yaml"), *(a for s in settings for a in ("--set", s))])
    assert status == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert ENV_ID in json.dumps(results) and (tmp_path / "run" / "sft" / "final").is_dir()


def test_an_installed_package_is_listed_by_recoverygym_envs(tmp_path):
    """pip installs a package that declares the Pantry in the entry-point group; nothing in envs/ names it."""
    source = write_package(tmp_path / "source")
    (source / "pyproject.toml").write_text(textwrap.dedent(f'''\
        [build-system]
        requires = ["setuptools>=69"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "mylab-outside"
        version = "0.1"

        [project.entry-points."{ENTRY_POINT_GROUP}"]
        pantry = "{PACKAGE}.pantry"
        twin = "{PACKAGE}:register"
        broken = "mylab_not_installed"

        [tool.setuptools]
        packages = ["{PACKAGE}"]
        '''))
    site = tmp_path / "site"  # a --target folder: the project's shared virtual environment is left as it was
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(site), str(source)], os.environ | {"PIP_NO_INPUT": "1"})
    listed = run([sys.executable, "-m", "training.cli", "envs"], child_env(site))
    ids = re.findall(r"^(\S+/\S+-v\d+)  ", listed.stdout, re.MULTILINE)
    assert ids == [*envs.ENVIRONMENTS, ENV_ID, TWIN_ID], listed.stdout
    assert "pantry stock: add and remove items to match a note" in listed.stdout
    assert "broken = mylab_not_installed" in listed.stderr and "RuntimeWarning" in listed.stderr  # named, not hidden
    one = run([sys.executable, "-m", "training.cli", "envs", ENV_ID], child_env(site))  # the plain id now resolves
    assert one.stdout.startswith(f"{ENV_ID}  pantry stock") and "5 tools" in one.stdout
