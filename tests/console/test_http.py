"""The console over plain HTTP, on both stores: the login, the refusals, every page, the
live stream of a finished run. (The browser walks it in test_console_browser.py.)"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx

from core.agents.runs import Trigger
from core.engine.approvals import ApprovalRecord, CopyShown
from tests.fakes.llm import FakeToolCall, RecordedRequest, Reply, echo
from tests.gateway.conftest import TOKEN, GatewayFactory, Running
from tests.gateway.conftest import start_gateway as start_gateway  # the gateway's fixture
from tests.tune_seed import seed

PAGES = (
    "/ui/",
    "/ui/agents",
    "/ui/agents/echo",
    "/ui/runs",
    "/ui/runs?agent=echo&status=ok",
    "/ui/approvals",
    "/ui/usage",
    "/ui/usage?since=30d",
    "/ui/budgets",
    "/ui/schedule",
    "/ui/schedule?since=7d",
    "/ui/deliveries",
)
AGENTS = [
    {"name": "echo", "task": "chat", "message": "say <hi>", "schedule": "0 * * * *"},
]


def _client(gw: Running) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.url, timeout=10)


async def _login(c: httpx.AsyncClient) -> None:
    resp = await c.post("/ui/login", data={"token": TOKEN, "next": "/ui/runs"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/runs"
    set_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Path=/ui/" in set_cookie and TOKEN not in set_cookie


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def test_every_page_needs_the_cookie_and_has_the_headers(
    start_gateway: GatewayFactory, store_engine: str
) -> None:
    gw = await start_gateway(agents=AGENTS, budgets={"total": {"day": 2.0}})
    gw.fake.default = echo
    async with gw.http() as api:  # a run, so that pages have rows and charts have data
        started = (await api.post("/api/agents/echo/run")).json()
    await gw.app.runner.wait(started["run_id"])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as anon:
        for page in PAGES:
            resp = await anon.get(page)
            assert resp.status_code == 303, page
            assert resp.headers["Location"].startswith("/ui/login?next=/ui/")
    async with _client(gw) as c:
        await _login(c)
        for page in PAGES:
            resp = await c.get(page)
            assert resp.status_code == 200, (page, resp.text[:500])
            assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["Server-Timing"].startswith("app;dur=")
            assert "<script>" not in resp.text  # no inline script on any page
        await gw.app.cluster.campaign()  # as serve does at start: take the lead
        overview = (await c.get("/ui/")).text
        # on PostgreSQL the instances sharing the database are listed, this one the leader
        assert ('id="instances"' in overview) == (store_engine == "postgres")
        assert (gw.app.owner in overview) == (store_engine == "postgres")
        usage = (await c.get("/ui/usage")).text
        assert usage.count("<rect") >= 2
        run = (await c.get(f"/ui/runs/{started['run_id']}")).text
        assert "say &lt;hi&gt;" in run  # the fake echoes the prompt: escaped
        odd = [
            "/ui/runs/99999999999999999999999",
            "/ui/runs/abc",
            "/ui/runs/0",
            "/ui/runs/12345",
            "/ui/runs/12345/events",
            "/ui/agents/nobody",
            "/ui/agents/%00%FF",
            "/ui/usage?since=1y",
            "/ui/schedule?since=%FF",
            "/ui/runs?agent=%FF&status=%00",
            "/ui/nothing-here",
        ]
        for url in odd:
            resp = await c.get(url)
            assert resp.status_code in (200, 404), (url, resp.status_code, resp.text[:300])
        # the cookie opens the console, never the API
        assert (await c.get("/api/status")).status_code == 401


async def test_the_run_stream_of_a_finished_run_sends_it_once_and_ends(
    start_gateway: GatewayFactory,
) -> None:
    gw = await start_gateway(agents=AGENTS)
    async with gw.http() as api:
        started = (await api.post("/api/agents/echo/run")).json()
    await gw.app.runner.wait(started["run_id"])
    async with _client(gw) as c:
        await _login(c)
        resp = await c.get(f"/ui/runs/{started['run_id']}/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in resp.text.splitlines() if line.startswith("data: ")]
    assert len(events) == 1 and '"done": true' in events[0] and '"status": "ok"' in events[0]


async def test_posts_need_the_csrf_token(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(agents=AGENTS)
    async with _client(gw) as c:
        await _login(c)
        csrf = _csrf((await c.get("/ui/agents")).text)
        refused = await c.post("/ui/agents/echo/run", data={"csrf": "nope"})
        assert refused.status_code == 403
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        not_utf8 = await c.post("/ui/agents/echo/run", content=b"csrf=\xff", headers=form)
        assert not_utf8.status_code == 403
        assert await gw.app.facade.runs.recent("echo") == []
        by_header = await c.post("/ui/agents/echo/run", headers={"X-CSRF-Token": csrf})
        assert by_header.status_code == 303 and by_header.headers["Location"].startswith(
            "/ui/runs/"
        )
        by_form = await c.post("/ui/agents/echo/enabled", data={"csrf": csrf, "enabled": "0"})
        assert by_form.status_code == 303
    assert (await gw.app.facade.states.get("echo")).disabled


async def test_login_refuses_a_wrong_token_and_goes_nowhere_else(
    start_gateway: GatewayFactory,
) -> None:
    gw = await start_gateway()
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        wrong = await c.post("/ui/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
        away = await c.post("/ui/login", data={"token": TOKEN, "next": "//evil.example/ui/"})
        assert away.headers["Location"] == "/ui/"
        bare = await c.get("/ui")
        assert bare.status_code == 308 and bare.headers["Location"] == "/ui/"


def _keeper(request: RecordedRequest) -> Reply:
    """Remember one thing (a tool call), then answer once the tool's result is back."""
    body = request.body if isinstance(request.body, dict) else {}
    if any(m.get("role") == "tool" for m in body.get("messages", [])):
        return Reply(text="kept it")
    call = FakeToolCall("remember", {"key": "topic", "value": "<i>q4</i>"})
    return Reply(text="", tool_calls=[call])


async def test_a_run_page_lists_its_tool_steps_and_the_agent_page_its_memory(
    start_gateway: GatewayFactory,
) -> None:
    keeper = {"name": "keeper", "task": "chat", "message": "keep this", "tools": ["remember"]}
    gw = await start_gateway(agents=[keeper])
    gw.fake.default = _keeper
    async with gw.http() as api:
        started = (await api.post("/api/agents/keeper/run")).json()
    run = await gw.app.runner.wait(started["run_id"])
    assert run.output == "kept it", run.error
    async with _client(gw) as c:
        await _login(c)
        page = (await c.get(f"/ui/runs/{run.id}")).text
        agent = (await c.get("/ui/agents/keeper")).text
    steps = page[page.index('id="steps"') :]
    assert "remember" in steps and "topic" in steps
    assert "<i>" not in steps and "&lt;i&gt;q4&lt;/i&gt;" in steps  # the arguments, escaped
    memory = agent[agent.index('id="memory"') :]
    assert "topic" in memory and "&lt;i&gt;q4&lt;/i&gt;" in memory


async def test_a_live_stream_follows_a_running_run_and_ends_when_the_gateway_stops(
    start_gateway: GatewayFactory,
) -> None:
    gw = await start_gateway(agents=AGENTS)
    gw.fake.default = Reply(hang=True)  # every tier waits out its timeout: the run goes on
    async with gw.http() as api:
        started = (await api.post("/api/agents/echo/run")).json()
    events: list[str] = []
    async with _client(gw) as c:
        await _login(c)
        async with c.stream("GET", f"/ui/runs/{started['run_id']}/events") as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    if len(events) == 1:
                        # a stream open must not hold up the shutdown: it ends at once
                        stopping = asyncio.create_task(gw.gateway.stop())
    await stopping
    assert '"done": false' in events[0]
    assert all('"done": true' not in e for e in events)  # cut off, not finished


async def test_an_agents_config_shows_with_its_secrets_masked(
    start_gateway: GatewayFactory,
) -> None:
    feed = {
        "http": "https://reader:pa55word@feeds.example.com/rss?token=abc123&lang=en",
        "headers": {"Authorization": "Bearer s3cr3t-header", "Accept": "text/xml"},
    }
    agent = {"name": "feeds", "task": "chat", "message": "read", "inputs": {"feed": feed}}
    gw = await start_gateway(agents=[agent])
    async with _client(gw) as c:
        await _login(c)
        page = (await c.get("/ui/agents/feeds")).text
    config = page[page.index('id="agent-config"') :]
    for secret in ("pa55word", "abc123", "s3cr3t-header", TOKEN):
        assert secret not in page, secret
    assert "reader:***@feeds.example.com/rss?token=***&amp;lang=en" in config
    assert "text/xml" in config and "***" in config


async def test_deny_and_the_first_decision_wins(start_gateway: GatewayFactory) -> None:
    boss = {"name": "boss", "task": "strategy", "message": "plan", "deliver": ["log"]}
    gw = await start_gateway(agents=[boss], approvals={"default": "approve", "timeout_s": 60})
    shown = asyncio.Event()

    async def notify(record: ApprovalRecord, copy_shown: CopyShown) -> list[str]:
        await copy_shown(1, record.id)  # one admin saw it, as in Telegram
        shown.set()
        return []

    async def close(record: ApprovalRecord, copies: object = None) -> None:
        return None

    gw.app.facade.set_approval_notifier(notify, close)
    run_id = await gw.app.facade.runner.start("boss", Trigger.API)
    await asyncio.wait_for(shown.wait(), 10)
    (pending,) = await gw.app.facade.approvals.pending()
    async with _client(gw) as c:
        await _login(c)
        page = (await c.get("/ui/approvals")).text
        assert f'id="approval-{pending.id}"' in page
        csrf = _csrf(page)
        denied = await c.post(f"/ui/approvals/{pending.id}/deny", data={"csrf": csrf})
        assert denied.status_code == 303 and "denied" in denied.headers["Location"]
        late = await c.post(f"/ui/approvals/{pending.id}/approve", data={"csrf": csrf})
        assert "already+denied+by+console" in late.headers["Location"]
        note = (await c.get(late.headers["Location"])).text
        assert "already denied by console" in note
    run = await gw.app.runner.wait(run_id)
    assert run.status == "failed"  # tier 3 denied: nothing else may answer a strategy task
    assert (await gw.app.facade.approvals.get(pending.id)).status == "denied"  # type: ignore[union-attr]


async def test_the_runs_page_and_the_api_filter_by_status_alike(
    start_gateway: GatewayFactory,
) -> None:
    gw = await start_gateway(agents=AGENTS)
    gw.fake.script("qwen3:14b", Reply(text="fine"))
    ok = await gw.app.facade.runner.run("echo", Trigger.API)
    gw.fake.default = Reply(status=500)  # every tier fails: the next run fails
    failed = await gw.app.facade.runner.run("echo", Trigger.API)
    assert (ok.status, failed.status) == ("ok", "failed")
    async with gw.http() as api:
        only_failed = (await api.get("/api/runs?status=failed")).json()["runs"]
        bad = await api.get("/api/runs?status=sideways")
    assert [r["id"] for r in only_failed] == [failed.id]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    async with _client(gw) as c:
        await _login(c)
        page = (await c.get("/ui/runs?status=failed")).text
        every = (await c.get("/ui/runs?status=sideways")).text  # an unknown status: all
    listed = page[page.index('id="runs"') :]
    assert f">#{failed.id}<" in listed and f">#{ok.id}<" not in listed
    assert f">#{ok.id}<" in every and f">#{failed.id}<" in every


async def test_login_takes_any_bytes_as_a_wrong_token(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        for body in (b"token=%FF%FE", b"token=\xff\xfe", b"token=%00", b"\xff", b""):
            resp = await c.post("/ui/login", content=body, headers=form)
            assert resp.status_code == 401, (body, resp.status_code, resp.text[:200])


async def test_the_usage_page_shows_the_routing_advisors_suggestions(
    start_gateway: GatewayFactory,
) -> None:
    tasks = {"chat": 0, "analysis": 1, "summarize": {"tier": 1, "min_chars": 20, "trial": 0.2}}
    gw = await start_gateway(tasks=tasks)
    async with _client(gw) as c:
        await _login(c)
        empty = (await c.get("/ui/usage")).text
        ledger = gw.app.ledger
        await seed(ledger, gw.app.config, ledger.clock() - timedelta(hours=2))
        usage = (await c.get("/ui/usage")).text
    assert "No suggestions" in empty
    # the same suggestions as GET /api/tune, with their evidence and what-if line
    assert "raise chat: tier 0 → 1" in usage
    assert "try lower summarize: tier 1 → 0" in usage
    assert "20 of 25 attempts at tier 0 (80%) were unusable" in usage
    assert "80% answered there" in usage and "what-if:" in usage
