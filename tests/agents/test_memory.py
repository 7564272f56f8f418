"""remember / recall on a real SQLite file (across a restart), and `openclaw memory` as a
subprocess against the same kind of file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.agents.memory import MAX_KEYS, MAX_VALUE_CHARS, Memory
from core.agents.tools.base import ToolContext, ToolFailure
from core.agents.tools.memory import KEYS_LISTED, Recall, Remember
from core.app import App
from core.config.settings import Settings
from core.store.base import Store
from core.store.open import open_store
from core.store.path import DbLocation
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, FakeToolCall, Reply
from tests.procs import run_cli as openclaw
from tests.stores import location_env

T0 = datetime(2026, 3, 1, 7, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def ctx(agent: str, run_id: int) -> ToolContext:
    return ToolContext(agent=agent, run_id=run_id)


async def test_a_fact_stored_in_one_run_is_recalled_after_a_restart(
    store_location: DbLocation,
) -> None:
    db = store_location
    clock = Clock()
    first = await open_store(db)
    remember = Remember(Memory(first, clock))
    stored = await remember({"key": "last_status", "value": "green"}, ctx("watch", 7))
    assert stored.content == "Stored under 'last_status' (5 B)."
    assert stored.summary == "stored 5 B"
    assert remember.target({"key": "last_status", "value": "x"}) == "last_status"
    await first.close()  # the process ends

    second = await open_store(db)
    try:
        recall = Recall(Memory(second, clock))
        found = await recall({"key": "last_status"}, ctx("watch", 8))
        assert found.content == "'last_status', stored 2026-03-01T07:00:00.000000Z by run 7:\ngreen"
        assert found.summary == "found, 5 B"
        # a second remember replaces the value and its run
        clock.now = T0 + timedelta(hours=1)
        await Remember(Memory(second, clock))(
            {"key": "last_status", "value": "red"}, ctx("watch", 8)
        )
        found = await recall({"key": "last_status"}, ctx("watch", 9))
        assert found.content.endswith("by run 8:\nred") and "08:00:00" in found.content
    finally:
        await second.close()


async def test_agents_do_not_see_each_others_keys(store: Store) -> None:
    memory = Memory(store, Clock())
    await Remember(memory)({"key": "secret", "value": "a's"}, ctx("a", 1))
    recall = Recall(memory)
    missed = await recall({"key": "secret"}, ctx("b", 2))
    assert missed.summary == "not found"
    assert missed.content == (
        "Nothing is stored under 'secret'. You have not stored anything yet (use remember)."
    )
    await Remember(memory)({"key": "mine", "value": "b's"}, ctx("b", 2))
    missed = await recall({"key": "secret"}, ctx("b", 3))
    assert missed.content == "Nothing is stored under 'secret'. Your keys, newest first: 'mine'."
    assert (await recall({"key": "secret"}, ctx("a", 4))).content.endswith("\na's")


async def test_a_missed_recall_lists_at_most_fifty_keys_newest_first(store: Store) -> None:
    clock = Clock()
    memory = Memory(store, clock)
    for i in range(KEYS_LISTED + 3):
        clock.now = T0 + timedelta(seconds=i)
        await memory.put("a", f"k{i:02}", "v")
    missed = await Recall(memory)({"key": "nope"}, ctx("a", 1))
    assert "'k52', 'k51'" in missed.content and "'k03'" in missed.content
    assert "'k02'" not in missed.content and missed.content.endswith("(and 3 more).")


async def test_a_long_value_is_cut_and_the_model_told(store: Store) -> None:
    memory = Memory(store, Clock())
    result = await Remember(memory)(
        {"key": "page", "value": "x" * (MAX_VALUE_CHARS + 5)}, ctx("a", 1)
    )
    assert f"cut to its first {MAX_VALUE_CHARS} of {MAX_VALUE_CHARS + 5} characters" in (
        result.content
    )
    assert result.summary == "stored 16.0 KB, cut"
    entry = await memory.get("a", "page")
    assert entry is not None and len(entry.value) == MAX_VALUE_CHARS


async def test_a_new_key_past_max_keys_is_refused_but_an_old_one_is_replaced(
    store: Store,
) -> None:
    async with store.transaction() as tx:  # one transaction: 500 puts would be 500 commits
        for i in range(MAX_KEYS):
            await tx.execute(
                "INSERT INTO agent_memory (agent, key, value, run_id, updated_at)"
                " VALUES ('a', ?, 'v', NULL, '2026-03-01T07:00:00.000000Z')",
                (f"k{i}",),
            )
    remember = Remember(Memory(store, Clock()))
    with pytest.raises(ToolFailure, match=r"already have 500 keys.*Reuse one of your existing"):
        await remember({"key": "one-more", "value": "v"}, ctx("a", 1))
    assert (await remember({"key": "k3", "value": "new"}, ctx("a", 1))).summary == "stored 3 B"
    # the cap is per agent
    assert (await remember({"key": "one-more", "value": "v"}, ctx("b", 1))).summary == "stored 1 B"


def test_the_specs_are_what_the_model_is_offered() -> None:
    remember, recall = Remember.spec, Recall.spec
    assert (remember.name, recall.name) == ("remember", "recall")
    assert remember.parameters["required"] == ["key", "value"]
    assert remember.parameters["additionalProperties"] is False
    assert remember.parameters["properties"]["key"]["maxLength"] == 200
    assert recall.parameters["required"] == ["key"]
    assert "later runs" in remember.description and "remember" in recall.description
    assert Remember.timeout_s == 5 and Remember.approval is False and Recall.approval is False


# ---------------------------------------------------------------- `openclaw memory`

CONFIG = """
[routing]
default_task = "chat"

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 1

[models."local/qwen3:14b"]

[[tiers]]
level = 0
models = ["local/qwen3:14b"]

[tasks]
chat = 0

[[agents]]
name = "watch"
message = "check"

[[agents]]
name = "digest"
message = "digest"
"""


@pytest.fixture
def env(fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation) -> dict[str, str]:
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CONFIG.format(ollama=fake_llm.base_url("ollama")), encoding="utf-8")
    out = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    return out | {"OPENCLAW_CONFIG": str(cfg), "OPENCLAW_DB": location_env(store_location)}


async def _seed(db: DbLocation) -> None:
    store = await open_store(db)
    try:
        clock = Clock()
        memory = Memory(store, clock)
        await memory.put("watch", "last_status", "green\nall 12 checks passed", 3)
        clock.now = T0 + timedelta(minutes=5)
        await memory.put("watch", "page", "word " * 100, 4)
        await memory.put("digest", "seen", "x", None)
    finally:
        await store.close()


async def test_memory_lists_prints_json_forgets_and_clears(
    env: dict[str, str], store_location: DbLocation
) -> None:
    await _seed(store_location)
    code, out, err = await openclaw(env, "memory", "watch")
    assert code == 0, err
    assert out.splitlines() == [
        "page  2026-03-01T07:05:00.000000Z  run 4  " + ("word " * 20)[:99] + "…",
        "last_status  2026-03-01T07:00:00.000000Z  run 3  green all 12 checks passed",
    ]
    code, out, err = await openclaw(env, "memory", "watch", "--json")
    assert code == 0, err
    entries = json.loads(out)
    assert [e["key"] for e in entries] == ["page", "last_status"]
    assert entries[0]["value"] == "word " * 100 and entries[1]["run_id"] == 3

    code, out, err = await openclaw(env, "memory", "watch", "--forget", "page")
    assert (code, out) == (0, "forgot 'page' of watch\n"), err
    code, _, err = await openclaw(env, "memory", "watch", "--forget", "page")
    assert code == 2 and "watch has no key 'page'" in err
    code, out, _ = await openclaw(env, "memory", "watch", "--clear")
    assert (code, out) == (0, "forgot 1 key of watch\n")
    code, out, _ = await openclaw(env, "memory", "watch")
    assert (code, out) == (0, "watch remembers nothing yet\n")
    code, out, _ = await openclaw(env, "memory", "digest", "--json")  # another agent's stays
    assert code == 0 and [e["key"] for e in json.loads(out)] == ["seen"]


async def test_memory_of_an_unknown_agent_is_an_error_with_the_closest_names(
    env: dict[str, str],
) -> None:
    code, out, err = await openclaw(env, "memory", "wacth")
    assert (code, out) == (2, "")
    assert "no agent named 'wacth'; did you mean watch?" in err
    code, _, err = await openclaw(env, "memory", "watch", "--clear", "--forget", "k")
    assert code == 2 and "not allowed with argument" in err


# ---------------------------------------------------------------- through the tool loop


async def test_an_agent_recalls_in_its_next_run_what_it_remembered_before_a_restart(
    fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation
) -> None:
    cfg = make_config(
        pyramid_urls(fake_llm.base_url),
        agents=[
            {
                "name": "watch",
                "message": "check the status",
                "task": "chat",
                "deliver": ["log"],
                "tools": ["remember", "recall"],
            }
        ],
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    db = store_location
    fake_llm.script(
        "qwen3:14b",
        Reply(text="", tool_calls=[FakeToolCall("remember", {"key": "last", "value": "green"})]),
        Reply(text="Green, noted."),
        Reply(text="", tool_calls=[FakeToolCall("recall", {"key": "last"})]),
        Reply(text="Still green."),
    )
    for expected in ("Green, noted.", "Still green."):
        app = await App.open(cfg, settings, db, base_dir=tmp_path)  # a process per run
        try:
            run = await app.runner.run("watch", "cli")
            assert (run.status, run.output) == ("ok", expected), run.error
        finally:
            await app.runner.shutdown(5)
            await app.close()
    # the second run's second turn carried the recalled value, stamped with run 1
    recalled = json.dumps(fake_llm.requests[3].body)
    assert "green" in recalled and "by run 1" in recalled
