"""No configured secret reaches a log, an answer or a command's output (issue 9).

First the scan itself is shown to work (it finds a planted secret, in a file, in a record,
in a traceback). Then every secret is configured at once and the paths most likely to
leak them are provoked: providers that echo the key in their 401 body, failed logins,
`/api/status`, debug logging, `serve`'s start-up lines, `openclaw status`, `doctor`,
`ask` and `config check`. Subprocess output is saved under ``log_dir`` for the session's
scan, and checked here too.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from core.app import App
from core.config.settings import Settings
from core.errors import ProviderError
from core.gateway import Gateway
from core.ops.logs import RedactFilter, TextFormatter
from core.providers.base import DETAIL_MAX_CHARS
from core.store.path import DbLocation, PostgresURL
from core.types import Message, ModelCall
from tests.configs import make_config
from tests.fakes.llm import FakeLLM, Reply
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.procs import clean_env, run_cli
from tests.reliability import secrets
from tests.reliability.conftest import LogCollector, find_leaks, scan_log_dir
from tests.reliability.sec_util import free_port, write_config
from tests.stores import location_env

KEYED = {  # provider in tests.configs.pyramid → (api, the variable of its key)
    "flash": ("google-generative-ai", "GEMINI_API_KEY"),
    "deep": ("openai-completions", "DEEPSEEK_API_KEY"),
    "deep2": ("openai-completions", "DEEPSEEK_API_KEY"),
    "opus": ("anthropic-messages", "ANTHROPIC_API_KEY"),
}
ECHO = "Incorrect API key provided: "


def quiet_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger that does not propagate: planted secrets must not reach the session scan."""
    logger = logging.getLogger(f"tests.reliability.planted.{name}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


# -- the scan can fail -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", secrets.ALL)
def test_find_leaks_finds_each_secret_as_is_and_url_encoded(secret: str) -> None:
    assert find_leaks(f"GET /bot{secret}/getMe -> 200", "sample") == [
        f"sample: contains {secret[:6]}…"
    ]
    encoded = secret.replace(":", "%3A")
    assert find_leaks(f"url=https://x/bot{encoded}/getMe", "sample") != []
    assert find_leaks(f"masked {secret[:6]}… and *** only", "sample") == []


def test_scan_log_dir_names_the_file_that_leaks(tmp_path: Path) -> None:
    (tmp_path / "clean.log").write_text("INFO all good ***\n")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "serve.err").write_bytes(
        b"\xff\xfe binary junk, then " + secrets.PROVIDER_KEYS["GEMINI_API_KEY"].encode()
    )
    assert scan_log_dir(tmp_path) == ["nested/serve.err: contains AIza-R…"]
    (tmp_path / "nested" / "serve.err").unlink()
    assert scan_log_dir(tmp_path) == []


def test_the_collector_finds_a_secret_in_a_message_and_in_a_traceback() -> None:
    collector = LogCollector()
    log = quiet_logger("collector", collector)
    log.debug("token is %s", secrets.GATEWAY_TOKEN)
    try:
        raise RuntimeError(f"bad key {secrets.PROVIDER_KEYS['DEEPSEEK_API_KEY']}")
    except RuntimeError:
        log.exception("a failure without the key in its message")
    log.info("nothing to see")
    assert collector.seen == 3
    assert len(collector.hits) == 2
    assert "oc-gw-" in collector.hits[0] and "sk-REL" in collector.hits[1]
    assert find_leaks(" ".join(collector.hits), "the report") == []  # it masks them


def test_the_session_collector_is_attached_and_counting(log_collector: LogCollector) -> None:
    assert log_collector in logging.getLogger().handlers
    before = log_collector.seen
    logging.getLogger("openclaw.test").debug("a harmless debug line")
    assert log_collector.seen == before + 1
    assert log_collector.hits == []  # nothing so far in this session leaked


def test_redaction_hides_every_secret_in_messages_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactFilter(secrets.ALL))
    log = quiet_logger("redacted", handler)
    for secret in secrets.ALL:
        log.warning("request to https://api/bot%s/x failed", secret)
        try:
            raise ValueError(f"echo {secret}")
        except ValueError:
            log.exception("failed")
    text = out.getvalue()
    assert find_leaks(text, "redacted") == []
    assert text.count("***") == 2 * len(secrets.ALL)


# -- provider errors that echo the key --------------------------------------------------------


@pytest.mark.parametrize(
    "api", ["openai-completions", "anthropic-messages", "google-generative-ai"]
)
async def test_a_key_echoed_in_an_error_body_never_shows(
    api: str, make_provider: Callable[..., Any], fake_llm: FakeLLM
) -> None:
    """Wherever the echo puts the key, even across the cut at DETAIL_MAX_CHARS, no part
    of it (ten characters or more) is in the error."""
    key = secrets.PROVIDER_KEYS["DEEPSEEK_API_KEY"]
    provider = make_provider(api, api_key=key)
    call = ModelCall((Message("user", "hi"),), 5)
    for pad in range(DETAIL_MAX_CHARS - len(key) - 40, DETAIL_MAX_CHARS + 2):
        fake_llm.script("m", Reply(status=401, error_message="x" * pad + key))
        with pytest.raises(ProviderError) as info:
            await provider.complete("m", call)
        text = str(info.value)
        assert not [key[:n] for n in range(10, len(key) + 1) if key[:n] in text], (pad, text)


@pytest.fixture
async def keyed_gateway(
    fake_llm: FakeLLM, store_location: DbLocation, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[App, Gateway]]:
    for var, value in secrets.PROVIDER_KEYS.items():
        monkeypatch.setenv(var, value)
    from tests.configs import pyramid

    base = {n: fake_llm.base_url(api) for n, (api, _) in KEYED.items()}
    base["local"] = fake_llm.base_url("ollama")
    providers = pyramid(base)["providers"]
    for name, (_, var) in KEYED.items():
        providers[name]["api_key_env"] = var
    agents = [{"name": "leaky", "message": "hi", "task": "chat", "deliver": ["log"]}]
    cfg = make_config(providers=providers, agents=agents)
    app = await App.open(
        cfg,
        Settings(_env_file=None),  # type: ignore[call-arg]
        store_location,
    )
    gateway = Gateway(app.facade, secrets.GATEWAY_TOKEN, "127.0.0.1", 0)
    await gateway.start()
    yield app, gateway
    await gateway.stop()
    await app.runner.shutdown(5)
    await app.close()


def echo_every_key(fake_llm: FakeLLM, times: int = 4) -> None:
    """Each keyed model answers 401 with its key in the message; the local one 500."""
    for model, var in (
        ("gemini-flash", "GEMINI_API_KEY"),
        ("deepseek-chat", "DEEPSEEK_API_KEY"),
        ("deepseek-backup", "DEEPSEEK_API_KEY"),
        ("claude-opus", "ANTHROPIC_API_KEY"),
    ):
        fake_llm.script(
            model, *[Reply(status=401, error_message=ECHO + secrets.PROVIDER_KEYS[var])] * times
        )
    fake_llm.script("qwen3:14b", *[Reply(status=500, error_message="down")] * times)


async def test_the_gateway_answers_and_records_no_secret(
    keyed_gateway: tuple[App, Gateway], fake_llm: FakeLLM, log_collector: LogCollector
) -> None:
    app, gateway = keyed_gateway
    echo_every_key(fake_llm)
    hits_before = len(log_collector.hits)
    auth = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    bodies: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as c:
        for wrong in (secrets.TELEGRAM_TOKEN, secrets.GATEWAY_TOKEN[:-2], "x"):
            r = await c.get("/api/status", headers={"Authorization": f"Bearer {wrong}"})
            assert r.status_code == 401
            bodies.append(r.text)
        chat = {"model": "task:chat", "messages": [{"role": "user", "content": "hi"}]}
        r = await c.post("/v1/chat/completions", json=chat, headers=auth)
        assert r.status_code == 503 and "***" in r.text  # the echoes, redacted
        bodies.append(r.text)
        chat["stream"] = True
        r = await c.post("/v1/chat/completions", json=chat, headers=auth)
        bodies.append(r.text)
        r = await c.post("/api/agents/leaky/run", headers=auth)
        assert r.status_code == 202
        rid = r.json()["run_id"]

        async def finished() -> bool:
            run = await app.runner.runs.get(rid)
            return run is not None and run.done

        await until(finished, what=f"run {rid} finished")  # its log lines are in
        for path in (
            "/api/status",
            "/api/runs",
            "/api/runs/1",
            "/api/agents",
            "/metrics",
            "/api/route?task=strategy",
            "/api/usage",
            "/readyz",
            "/health",
        ):
            r = await c.get(path, headers=auth)
            assert r.status_code == (503 if path == "/readyz" else 200), path  # all failed
            bodies.append(r.text)
    status = json.loads(bodies[-9])
    assert any(m["last_error"] for m in status["models"])  # the failures are there
    for i, body in enumerate(bodies):
        assert find_leaks(body, f"answer {i}") == [], body
    rows = [dict(r) for r in await app.store.fetchall("SELECT * FROM attempts")]
    rows += [dict(r) for r in await app.store.fetchall("SELECT * FROM runs")]
    assert rows and find_leaks(json.dumps(rows), "the store") == []
    assert log_collector.hits[hits_before:] == []


# -- the whole product as subprocesses, every secret set -------------------------------------


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """An upstream that answers every request 401, echoing whatever key it was sent."""

    async def handle(request: web.Request) -> web.Response:
        sent = (
            request.headers.get("Authorization", "").removeprefix("Bearer ")
            or request.headers.get("x-api-key")
            or request.headers.get("x-goog-api-key")
            or "(none)"
        )
        body = {"error": {"message": ECHO + sent, "type": "invalid_request_error"}}
        return web.json_response(body, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


async def test_serve_and_the_cli_leak_no_secret(
    tmp_path: Path, log_dir: Path, echo_server: str, store_location: DbLocation
) -> None:
    """On both engines; on PostgreSQL with a password in the OPENCLAW_DB URL."""
    from tests.configs import pyramid

    db = location_env(store_location)
    if isinstance(store_location, PostgresURL):
        user = db.removeprefix("postgresql://").split("@", 1)[0]
        db = db.replace(f"//{user}@", f"//{user}:{secrets.DB_PASSWORD}@", 1)
    out_dir = log_dir / f"secrets-e2e-{type(store_location).__name__}"
    out_dir.mkdir()
    urls = {
        "local": echo_server,
        "flash": echo_server + "/v1beta",
        "deep": echo_server + "/v1",
        "deep2": echo_server + "/v1",
        "opus": echo_server,
    }
    providers = pyramid(urls)["providers"]
    for name, (_, var) in KEYED.items():
        providers[name]["api_key_env"] = var
    port = free_port()
    config = write_config(
        tmp_path,
        providers=providers,
        gateway={"port": port},
        telegram={"admins": [1001], "polling_timeout_s": 1},
        routing={"default_task": "chat", "probe_interval_s": 1},
        approvals={"default": "deny", "timeout_s": 1},
    )
    async with FakeTelegram(token=secrets.TELEGRAM_TOKEN) as tg:
        env = clean_env(
            config,
            db,
            OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN,
            TELEGRAM_BOT_TOKEN=secrets.TELEGRAM_TOKEN,
            TELEGRAM_API_BASE=tg.url,
            TELEGRAM_WEBHOOK_SECRET=secrets.WEBHOOK_SECRET,
            **secrets.PROVIDER_KEYS,
        )
        outputs = await _drive_serve(env, tmp_path, out_dir, port, tg)
        tg_said = json.dumps(tg.sent() + tg.edits() + tg.answered_callbacks())
    for name, (code, out, err) in (await _cli_round(env, out_dir, tmp_path)).items():
        outputs[name] = out + err
        assert "Traceback" not in err, (name, err)
        if name == "config-error":
            assert code == 78 and "gateway.host" in err
        if name == "doctor":
            assert code == 1 and "API key was refused" in out  # the probes did fail
    outputs["telegram"] = tg_said
    for name, text in outputs.items():
        assert find_leaks(text, name) == [], (name, text[-2000:])
    assert scan_log_dir(out_dir) == []


async def _drive_serve(
    env: dict[str, str], cwd: Path, out_dir: Path, port: int, tg: FakeTelegram
) -> dict[str, str]:
    """serve --log-level DEBUG, poked from outside; returns what each answer said."""
    err_path = out_dir / "serve.err"
    with err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", "--log-level", "DEBUG", "serve",
            env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    said: dict[str, str] = {}
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not lines or not lines[-1].startswith("Telegram bot:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"serve exited: {''.join(lines)}"
            lines.append(line)
        auth = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as c:
            r = await c.get("/api/status", headers={"Authorization": "Bearer nope"})
            said["401"] = r.text
            chat = {"model": "task:analysis", "messages": [{"role": "user", "content": "hi"}]}
            r = await c.post("/v1/chat/completions", json=chat, headers=auth)
            assert r.status_code == 503, r.text
            said["503"] = r.text
            for path in ("/api/status", "/readyz", "/metrics"):
                said[path] = (await c.get(path, headers=auth)).text
        for args in (("status",), ("status", "--json")):
            code, out, err = await run_cli(env, *args, timeout_s=60)
            (out_dir / f"{'-'.join(args)}.log").write_text(f"exit {code}\n{out}\n{err}")
            assert code == 0, err
            said[" ".join(args)] = out + err
        tg.user_message(1001, "/status")
        await tg.wait_for(lambda t: any("Tier 0" in (m.get("text") or "") for m in t.sent(1001)))
        tg.user_message(4242, "/status")  # a stranger: logged once, by id
    finally:
        if proc.returncode is None:
            proc.terminate()
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        (out_dir / "serve.out").write_text("".join(lines) + rest.decode(errors="replace"))
    assert proc.returncode == 0
    stderr = err_path.read_text(errors="replace")
    assert " DEBUG " in stderr and "401" in stderr  # debug was on; the failures were logged
    said["serve stdout"] = "".join(lines)
    said["serve stderr"] = stderr
    return said


async def _cli_round(
    env: dict[str, str], out_dir: Path, tmp_path: Path
) -> dict[str, tuple[int, str, str]]:
    """`openclaw` one-shot commands with every secret set; each output saved."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nhost = 5\nport = "x"\n[providers.deep]\napi = "nope"\n')
    results: dict[str, tuple[int, str, str]] = {}
    for name, args in (
        ("config-error", ("--config", str(bad), "--log-level", "DEBUG", "doctor")),
        ("doctor", ("--log-level", "DEBUG", "doctor")),
        ("ask", ("--log-level", "DEBUG", "ask", "--task", "analysis", "hi")),
        ("config-check", ("config", "check")),
        ("status-down", ("status",)),
    ):
        code, out, err = await run_cli(env, *args, timeout_s=60)
        (out_dir / f"{name}.log").write_text(f"exit {code}\n{out}\n{err}")
        results[name] = (code, out, err)
    return results
