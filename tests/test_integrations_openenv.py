"""``recoverygym serve``: real server processes on localhost, driven through the OpenEnv client and raw sockets.

Two servers (one per environment, faults on) start once for the module, in parallel; each test closes its sessions.
Every remote episode is compared with the same episode run in-process with ``gymnasium.make``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import gymnasium
import pytest

import envs  # noqa: F401  (registers the recoverygym ids)

if importlib.util.find_spec("openenv") is None:
    pytest.skip("the openenv extra is not installed: pip install -e '.[openenv]'", allow_module_level=True)

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

# Importing openenv takes seconds (it imports gradio): the fixture does it while the servers start, not collection.
CallToolAction = RecoveryGymClient = None

ROOT = Path(__file__).resolve().parents[1]
SUPPORT, SHEET = "recoverygym/SupportDesk-v0", "recoverygym/Spreadsheet-v0"
MAX_SESSIONS = 3


def all_faults(env_id: str, rate: float = 0.2) -> dict[str, float]:
    return {kind: rate for kind in gymnasium.spec(env_id).make().unwrapped.fault_kinds}


class Server:
    def __init__(self, env_id: str, *args: str):
        self.env_id = env_id
        self.stderr = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve", env_id, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
        self.url = ""

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if " on http://" in line:
                    self.url = line.split(" on ")[1].split()[0]
                    return
            if self.proc.poll() is not None:
                break
        self.stop()
        self.stderr.seek(0)
        raise RuntimeError(f"server for {self.env_id} did not start: {self.stderr.read()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def servers():
    started = {
        SUPPORT: Server(SUPPORT, "--faults", ",".join(f"{k}={v}" for k, v in all_faults(SUPPORT).items()),
                        "--max-sessions", str(MAX_SESSIONS)),
        SHEET: Server(SHEET, "--faults", ",".join(f"{k}={v}" for k, v in all_faults(SHEET).items()),
                      "--max-sessions", str(MAX_SESSIONS)),
    }
    global CallToolAction, RecoveryGymClient
    from openenv.core.env_server.mcp_types import CallToolAction

    from training.integrations.openenv_client import RecoveryGymClient

    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


def plain(value):
    return json.loads(json.dumps(value))


def bad_calls(env_id: str) -> list[dict]:
    """Calls the environment rejects: they must cost a turn and get the environment's own message remotely too."""
    first_tool = gymnasium.make(env_id).unwrapped.tool_schemas()[0]["function"]["name"]
    return [{"name": "no_such_tool", "arguments": {}}, {"name": first_tool, "arguments": {"bogus_argument": 1}}]


def remote_step(client, call: dict):
    result = client.step(CallToolAction(tool_name=call["name"], arguments=call["arguments"]))
    assert result.observation.error is None, result.observation.error
    return result.observation.result["data"], result.reward, result.done, result.observation.metadata["info"]


class LocalEpisode:
    """The in-process episode a remote one must equal; its reference policy picks the calls."""

    def __init__(self, env_id: str, faults: dict[str, float], task_seed: int, split: str, seed: int):
        self.env = gymnasium.make(env_id, faults=faults)
        self.prompt, self.info = self.env.reset(seed=seed, options={"task_seed": task_seed, "split": split})

    def next_call(self) -> dict:
        return json.loads(self.env.unwrapped.reference_action())

    def step(self, call: dict):
        observation, reward, terminated, truncated, info = self.env.step(json.dumps(call))
        return observation, reward, terminated or truncated, plain(info)


def play_in_lockstep(client, local: LocalEpisode, prefix: list[dict] = (), limit: int = 200) -> float:
    """Step the remote and the local episode with the same calls; every reply must be equal. Returns the reward."""
    calls = list(prefix)
    for _ in range(limit):
        call = calls.pop(0) if calls else local.next_call()
        expected = local.step(call)
        assert remote_step(client, call) == expected, call
        if expected[2]:
            return expected[1]
    raise AssertionError("episode did not end")


@pytest.mark.parametrize("env_id", [SUPPORT, SHEET])
def test_episode_through_the_client_equals_the_local_episode(servers, env_id):
    faults = all_faults(env_id)
    with RecoveryGymClient(servers[env_id].url).sync() as client:
        assert [t.input_schema for t in client.list_tools()] == [
            s["function"]["parameters"] for s in gymnasium.make(env_id).unwrapped.tool_schemas()]
        for task_seed, split, seed in [(0, "train", 0), (3, "heldout", 5), (11, "heldout", 2)]:
            local = LocalEpisode(env_id, faults, task_seed, split, seed)
            first = client.reset(task_seed=task_seed, split=split, seed=seed)
            assert first.observation.prompt == local.prompt
            assert first.observation.metadata["info"] == plain(local.info)
            reward = play_in_lockstep(client, local, prefix=bad_calls(env_id))
            assert reward == 1.0  # the reference recovers from the faults and from the rejected calls
            state = client.state()
            assert (state.task_seed, state.split, state.done, state.score) == (task_seed, split, True, reward)
        # a reset's faults override the server's for that episode
        local = LocalEpisode(env_id, {}, 4, "train", 1)
        assert client.reset(task_seed=4, split="train", seed=1, faults={}).observation.prompt == local.prompt
        play_in_lockstep(client, local)


def test_the_end_of_an_episode_carries_the_checkers_verdict(servers):
    with RecoveryGymClient(servers[SUPPORT].url).sync() as client:
        client.reset(task_seed=2, split="heldout", seed=0, faults={})
        finish = [s["function"]["name"] for s in gymnasium.make(SUPPORT).unwrapped.tool_schemas()][-1]
        result = client.step(CallToolAction(tool_name=finish, arguments={}))  # closes at once: a no-op scores 0
        info = result.observation.metadata["info"]
        assert result.done and result.reward == 0.0 and result.observation.metadata["terminated"]
        assert info["success"] is False and info["reasons"] and not all(info["components"].values())
        assert client.step(CallToolAction(tool_name=finish, arguments={})).observation.error.message.startswith(
            "the episode has ended")


def test_concurrent_sessions_stay_isolated(servers):
    faults = all_faults(SUPPORT)
    tasks = [(k, "heldout", 10 + k) for k in range(MAX_SESSIONS)]
    clients = [RecoveryGymClient(servers[SUPPORT].url).sync() for _ in tasks]
    try:
        locals_ = [LocalEpisode(SUPPORT, faults, *task) for task in tasks]
        for client, (task_seed, split, seed), local in zip(clients, tasks, locals_, strict=True):
            assert client.reset(task_seed=task_seed, split=split, seed=seed).observation.prompt == local.prompt
        running = list(range(len(clients)))
        while running:  # one call per session in turn: every session's replies equal its own local episode
            for i in list(running):
                call = locals_[i].next_call()
                expected = locals_[i].step(call)
                assert remote_step(clients[i], call) == expected
                if expected[2]:
                    running.remove(i)
                    assert expected[1] == 1.0
    finally:
        for client in clients:
            client.close()


def test_the_trl_factory_runs_the_episode_on_the_server(servers):
    from transformers.utils import get_json_schema

    from training.datasets import prompt_row
    from training.integrations.openenv_client import remote_environment_factory

    cls = remote_environment_factory(servers[SUPPORT].url, SUPPORT)
    schemas = gymnasium.make(SUPPORT).unwrapped.tool_schemas()
    assert [get_json_schema(getattr(cls, s["function"]["name"])) for s in schemas] == schemas  # what TRL shows
    env = cls()
    try:
        row = prompt_row(5, split="train", seed=2, faults=all_faults(SUPPORT))
        local = LocalEpisode(SUPPORT, all_faults(SUPPORT), 5, "train", 2)
        assert env.reset(**row) == local.prompt
        assert env.get_reward() == 0.0  # the checker's verdict on the untouched state, through state()
        while True:
            call = local.next_call()
            observation, reward, done, _ = local.step(call)
            assert getattr(env, call["name"])(**call["arguments"]) == observation
            if done:
                break
        assert env.get_reward() == reward == 1.0
        assert "episode is over" in env.view_ticket()  # no call runs after the end
    finally:
        env._client.close()


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


def ws_ask(ws, message) -> dict:
    try:
        ws.send(message if isinstance(message, str) else json.dumps(message))
    except ConnectionClosed:  # a refused connection: the server sent its error frame and closed
        pass
    return json.loads(ws.recv(timeout=30))


def test_malformed_requests_get_clear_errors_and_the_session_goes_on(servers):
    with connect(ws_url(servers[SUPPORT])) as ws, RecoveryGymClient(servers[SUPPORT].url).sync() as other:
        local = LocalEpisode(SUPPORT, all_faults(SUPPORT), 1, "heldout", 0)
        other.reset(task_seed=1, split="heldout", seed=0)
        other_call = local.next_call()
        assert remote_step(other, other_call) == local.step(other_call)

        assert ws_ask(ws, "{not json")["data"]["code"] == "INVALID_JSON"
        assert ws_ask(ws, {"type": "launch"})["data"]["code"] == "UNKNOWN_TYPE"
        reply = ws_ask(ws, {"type": "step", "data": {"type": "call_tool", "arguments": {}}})  # no tool_name
        assert reply["data"]["code"] == "VALIDATION_ERROR"
        reply = ws_ask(ws, {"type": "step", "data": {"type": "call_tool", "tool_name": "view_ticket"}})
        assert "reset() first" in reply["data"]["observation"]["error"]["message"]
        reply = ws_ask(ws, {"type": "reset", "data": {"task_sed": 3}})
        assert reply["type"] == "error" and "unknown reset option(s) ['task_sed']" in reply["data"]["message"]
        reply = ws_ask(ws, {"type": "reset", "data": {"task_seed": 3, "split": "test"}})
        assert reply["type"] == "error" and "split must be one of" in reply["data"]["message"]
        # the same socket still works, and the other session never noticed
        reply = ws_ask(ws, {"type": "reset", "data": {"task_seed": 3, "split": "heldout", "seed": 0}})
        assert reply["data"]["observation"]["prompt"] == LocalEpisode(SUPPORT, all_faults(SUPPORT), 3, "heldout",
                                                                      0).prompt
        assert play_in_lockstep(other, local) == 1.0


def test_unknown_sessions_are_refused_by_name(servers):
    with connect(ws_url(servers[SUPPORT]) + "?session_id=no-such-session") as ws:
        reply = json.loads(ws.recv(timeout=30))
    assert reply["data"]["code"] == "SESSION_ERROR"
    assert "Unknown session_id: no-such-session" in reply["data"]["message"]
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "view_ticket", "arguments": {}, "session_id": "no-such-session"}})
    request = urllib.request.Request(servers[SUPPORT].url + "/mcp", body.encode(), {"Content-Type": "application/json"})
    reply = json.loads(urllib.request.urlopen(request, timeout=30).read())
    assert "Unknown session_id: no-such-session" in reply["error"]["message"]


def open_raw_session(server):
    ws = connect(ws_url(server))
    first = ws_ask(ws, {"type": "reset", "data": {"task_seed": 0, "split": "train", "seed": 0}})
    return ws, first


def wait_for_a_free_slot(server, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        ws = connect(ws_url(server))
        reply = ws_ask(ws, {"type": "reset", "data": {"task_seed": 0}})
        if reply["type"] != "error":
            return ws
        ws.close()
        assert reply["data"]["code"] == "CAPACITY_REACHED" and time.monotonic() < deadline, reply
        time.sleep(0.2)


def test_session_limit_and_a_client_gone_mid_episode(servers):
    server = servers[SUPPORT]
    local = LocalEpisode(SUPPORT, all_faults(SUPPORT), 6, "heldout", 3)
    with RecoveryGymClient(server.url).sync() as keeper:
        keeper.reset(task_seed=6, split="heldout", seed=3)
        for _ in range(2):
            call = local.next_call()
            assert remote_step(keeper, call) == local.step(call)
        raw = [open_raw_session(server) for _ in range(MAX_SESSIONS - 1)]
        assert all(first["type"] == "observation" for _, first in raw)

        with connect(ws_url(server)) as refused:  # one session too many: OpenEnv's capacity error, with the counts
            reply = ws_ask(refused, {"type": "reset", "data": {}})
        assert reply["data"]["code"] == "CAPACITY_REACHED"
        assert (reply["data"]["active_sessions"], reply["data"]["max_sessions"]) == (MAX_SESSIONS, MAX_SESSIONS)
        with pytest.raises(RuntimeError, match="(?i)capacity"):
            RecoveryGymClient(server.url).sync().connect()

        gone, _ = raw.pop()  # a client vanishes mid-episode: its socket drops without a close frame
        ws_ask(gone, {"type": "step", "data": {"type": "call_tool", "tool_name": "view_ticket", "arguments": {}}})
        gone.socket.shutdown(socket.SHUT_RDWR)
        gone.socket.close()
        replacement = wait_for_a_free_slot(server)  # its slot is freed ...

        keeper.disconnect()  # ... and a client that drops its connection mid-episode resumes its own session
        assert play_in_lockstep(keeper, local) == 1.0
        for ws, _ in raw:
            ws.close()
        replacement.close()


def test_serve_refuses_a_wrong_id_or_fault_before_starting():
    run = subprocess.run([sys.executable, "-m", "training.cli", "serve", "recoverygym/SupportDsk-v0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and "did you mean 'recoverygym/SupportDesk-v0'" in run.stderr
    run = subprocess.run([sys.executable, "-m", "training.cli", "serve", SUPPORT, "--faults", "bogus=0.2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and "unknown fault kind 'bogus'" in run.stderr


def test_the_server_shuts_down_cleanly_with_a_session_open(servers):
    server = servers[SHEET]
    ws, first = open_raw_session(server)
    assert first["type"] == "observation"
    assert server.stop() == 0
    assert server.proc.stdout.read().strip().endswith("recoverygym serve: stopped")
    server.stderr.seek(0)
    assert "Traceback" not in server.stderr.read()
    ws.close()
