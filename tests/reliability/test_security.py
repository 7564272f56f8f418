"""Security of the gateway and the config (issue 9): an auth matrix over every route the
app serves, body limits and bad input, the non-loopback bind rule, and path traversal in
agent prompt paths.

Every secret here comes from ``secrets.py``, so the suite's log scan covers these tests.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from core.agents.templating import TemplateError, Templates
from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.errors import ConfigError
from core.gateway import Gateway, handlers
from core.gateway import auth as gateway_auth
from core.gateway.server import OPEN_PATHS
from core.store.path import DbLocation
from tests.configs import make_config, pyramid, pyramid_urls
from tests.fakes.llm import FakeLLM, echo
from tests.procs import clean_env, run_cli
from tests.reliability import secrets
from tests.reliability.conftest import find_leaks
from tests.reliability.sec_util import TRACEBACK_MARKERS, free_port, write_config
from tests.stores import NewLocation, run_sql
from tests.tracing import traced

TOKEN = secrets.GATEWAY_TOKEN
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Gw:
    app: App
    gateway: Gateway
    fake: FakeLLM

    def http(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway.url, headers=headers or {}, timeout=10)

    def authed(self) -> httpx.AsyncClient:
        return self.http({"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
async def start_gw(
    fake_llm: FakeLLM, new_location: NewLocation, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """A gateway with every secret configured (the provider keys from ``secrets.py``)."""
    started: list[Gw] = []
    for var, value in secrets.PROVIDER_KEYS.items():
        monkeypatch.setenv(var, value)

    async def start(**overrides: Any) -> Gw:
        providers = pyramid(pyramid_urls(fake_llm.base_url))["providers"]
        for name, var in (
            ("flash", "GEMINI_API_KEY"),
            ("deep", "DEEPSEEK_API_KEY"),
            ("opus", "ANTHROPIC_API_KEY"),
        ):
            providers[name]["api_key_env"] = var
        overrides.setdefault("providers", providers)
        cfg = make_config(**overrides)
        app = await App.open(
            cfg,
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
        )
        gw = Gateway(app.facade, TOKEN, "127.0.0.1", 0)
        try:
            await gw.start()
        except BaseException:
            await app.close()
            raise
        started.append(Gw(app, gw, fake_llm))
        return started[-1]

    yield start
    for g in started:
        await g.gateway.stop()
        await g.app.close()


def assert_openai_error(r: httpx.Response, status: int, code: str | None = None) -> str:
    """The status, the OpenAI error shape, no traceback, no secret; returns the message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert not [m for m in TRACEBACK_MARKERS if m in r.text], r.text
    assert find_leaks(r.text, "error body") == []
    return str(body["error"]["message"])


# -- the auth matrix ---------------------------------------------------------------------


def served_routes(web_app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, placeholders filled with ``1``, so a
    route added later is in the matrix without anyone listing it here."""
    out = []
    for route in web_app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        out.append((route.method, re.sub(r"\{[^}]+\}", "1", canonical)))
    return sorted(set(out))


BAD_HEADERS: dict[str, str | bytes | None] = {
    "none": None,
    "empty": "",
    "scheme only": "Bearer",
    "wrong scheme": "Basic " + base64.b64encode(f"user:{TOKEN}".encode()).decode(),
    "token without scheme": TOKEN,
    "token scheme": f"Token {TOKEN}",
    "wrong token": "Bearer oc-gw-not-the-token-0000000000",
    "token prefix": f"Bearer {TOKEN[:-1]}",
    "token extended": f"Bearer {TOKEN}0",
    "token twice": f"Bearer {TOKEN} {TOKEN}",
    "another secret": f"Bearer {secrets.TELEGRAM_TOKEN}",
    "not utf-8": b"Bearer \xe9t\xe9",  # aiohttp hands these over as surrogates
    "utf-8 beyond ascii": "Bearer été".encode(),
}


def is_console(path: str) -> bool:
    """The console's paths check its login cookie, not the bearer token (tested below)."""
    return path == "/ui" or path.startswith("/ui/")


async def test_every_route_but_liveness_needs_the_token(start_gw: Callable[..., Any]) -> None:
    gw: Gw = await start_gw(gateway={"auth_max_failures": 100_000})
    routes = [r for r in served_routes(gw.gateway.web_app) if not is_console(r[1])]
    assert {p for _, p in routes} >= {"/health", "/readyz", "/api/status", "/v1/chat/completions"}
    assert gw.gateway.web_app[handlers.STATE].self_authenticating == frozenset()
    public = {(m, p) for m, p in routes if p in OPEN_PATHS}
    assert {p for _, p in public} == {"/health", "/readyz"}
    for label, value in BAD_HEADERS.items():
        headers = {} if value is None else {"Authorization": value}
        async with gw.http(headers) as c:
            for method, path in routes:
                r = await c.request(method, path, json={} if method == "POST" else None)
                if (method, path) in public:
                    assert r.status_code == 200, (label, method, path)
                    continue
                assert r.status_code == 401, (label, method, path, r.status_code)
                if method == "HEAD":
                    continue
                message = assert_openai_error(r, 401, "invalid_api_key")
                assert TOKEN not in message and "not-the-token" not in message
    async with gw.authed() as c:
        for method, path in routes:
            r = await c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code not in (401, 403, 429), (method, path, r.text)
            assert r.status_code < 500, (method, path, r.text)
    assert gw.fake.requests == []  # nothing unauthenticated reached a provider


# the console's own doors: its login form (and its POST), its redirect to /ui/, its static
# script and stylesheet (the same for everyone; no data in them)
CONSOLE_OPEN = {"/ui", "/ui/login", "/ui/static"}


async def test_every_console_route_needs_the_login_cookie(start_gw: Callable[..., Any]) -> None:
    """Without the console's cookie every page sends you to the login and every action is
    refused, whatever Authorization header comes along: the right bearer token included
    (it opens the API, never the console)."""
    gw: Gw = await start_gw(gateway={"auth_max_failures": 100_000})
    routes = [r for r in served_routes(gw.gateway.web_app) if is_console(r[1])]
    assert ("GET", "/ui/runs/1") in routes and ("POST", "/ui/agents/1/run") in routes
    headers_tried = {**BAD_HEADERS, "the right token": f"Bearer {TOKEN}"}
    for label, value in headers_tried.items():
        headers = {} if value is None else {"Authorization": value}
        async with gw.http(headers) as c:
            for method, path in routes:
                if path in CONSOLE_OPEN:
                    continue
                r = await c.request(method, path, data={"csrf": "x"} if method == "POST" else None)
                if method in ("GET", "HEAD"):
                    assert r.status_code == 303, (label, method, path, r.status_code)
                    assert r.headers["Location"].startswith("/ui/login?next="), (label, path)
                else:
                    assert r.status_code == 401, (label, method, path, r.status_code)
                assert TOKEN not in r.text
    assert gw.fake.requests == []
    assert await gw.app.facade.runs.recent() == []  # no action ran


async def test_unknown_paths_and_dot_segments_need_the_token(start_gw: Callable[..., Any]) -> None:
    """Raw request targets: nothing that is not exactly /health or /readyz skips the check."""
    gw: Gw = await start_gw(gateway={"auth_max_failures": 100_000})
    port = gw.gateway.port
    targets = [
        "/health/../api/status",
        "/readyz/../v1/models",
        "/health%2F..%2Fapi%2Fstatus",
        "//api/status",
        "/api/status/",
        "/API/STATUS",
        "/api/status?/health",
        "/./api/status",
        "/nope",
    ]
    for target in targets:
        status, body = await raw_get(port, target)
        assert status in (401, 404), (target, status, body)
        assert '"version"' not in body and '"models"' not in body, target
        if status == 401:
            assert json.loads(body)["error"]["code"] == "invalid_api_key"


async def raw_get(port: int, target: str) -> tuple[int, str]:
    """GET with the request target sent byte for byte (no client normalizes it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_public_routes_ignore_a_bad_token_and_count_no_failure(
    start_gw: Callable[..., Any],
) -> None:
    gw: Gw = await start_gw(gateway={"auth_max_failures": 2})
    async with gw.http({"Authorization": "Bearer wrong"}) as c:
        for _ in range(5):
            assert (await c.get("/health")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
    async with gw.authed() as c:  # five bad headers on public routes locked nobody out
        assert (await c.get("/api/status")).status_code == 200


# A credential that differs from the token in each way a hand-written check gets wrong:
# length, a prefix, one byte at either end, case, bytes that are not UTF-8.
WRONG_CREDENTIALS = [
    "",
    TOKEN[:1],
    TOKEN[:-1],
    TOKEN + "x",
    TOKEN * 2,
    "x" + TOKEN[1:],
    TOKEN[:-1] + ("y" if TOKEN[-1] != "y" else "z"),
    TOKEN.swapcase(),
    "\udcff" * len(TOKEN),  # how aiohttp hands over bytes that are not UTF-8
    "x" * len(TOKEN),
]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_token_check_accepts_the_token_and_nothing_else(scheme: str) -> None:
    assert gateway_auth.token_matches(f"{scheme} {TOKEN}", TOKEN)
    assert gateway_auth.token_matches(f"{scheme} {TOKEN}  ", TOKEN)  # as a header may end
    for wrong in WRONG_CREDENTIALS:
        assert not gateway_auth.token_matches(f"{scheme} {wrong}", TOKEN), wrong
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Token {TOKEN}", f"Bearer{TOKEN}"):
        assert not gateway_auth.token_matches(header, TOKEN), header


def test_the_token_check_takes_one_path_whatever_the_credential() -> None:
    """Constant time, observed rather than faked: for every Bearer credential, right or
    wrong in any way, the check runs the same bytecode instructions and decides with one
    call of the real hmac.compare_digest. An early exit on length or on a first differing
    byte, a comparison loop in Python, or an ``==`` beside compare_digest each change the
    count; a check that never calls compare_digest fails the call count."""
    counts = {}
    for credential in [TOKEN, *WRONG_CREDENTIALS]:
        with traced() as trace:
            matched = gateway_auth.token_matches(f"Bearer {credential}", TOKEN)
        assert matched == (credential == TOKEN)
        assert trace.count(hmac.compare_digest) == 1, credential
        counts[credential] = trace.opcodes
    assert len(set(counts.values())) == 1 and min(counts.values()) > 0, counts


async def test_the_gateway_decides_with_compare_digest(start_gw: Callable[..., Any]) -> None:
    gw: Gw = await start_gw()
    async with gw.http({"Authorization": "Bearer wrong"}) as wrong, gw.authed() as right:
        with traced() as refused:
            assert (await wrong.get("/v1/models")).status_code == 401
        with traced() as allowed:
            assert (await right.get("/v1/models")).status_code == 200
    # the real function, once per request: the gateway checks with token_matches' rule
    assert refused.count(hmac.compare_digest) == 1
    assert allowed.count(hmac.compare_digest) == 1


async def test_a_valid_token_is_never_locked_out(start_gw: Callable[..., Any]) -> None:
    """Any local process (all are 127.0.0.1) failing to authenticate must not lock the
    operator's token out; the failures themselves stay limited."""
    gw: Gw = await start_gw(gateway={"auth_max_failures": 3, "auth_window_s": 600})
    async with gw.http() as c:
        codes = [(await c.get("/api/status")).status_code for _ in range(10)]
    assert codes[:3] == [401, 401, 401] and set(codes[3:]) == {429}
    async with gw.authed() as c:
        for method, path in served_routes(gw.gateway.web_app):
            if is_console(path):  # the bearer token is no console login (tested apart)
                continue
            r = await c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code not in (401, 429), (method, path, r.status_code)
    async with gw.http() as c:  # nor is the console's login locked out for the token
        wrong = await c.post("/ui/login", data={"token": "nope"})
        right = await c.post("/ui/login", data={"token": TOKEN})
    assert wrong.status_code == 429 and right.status_code == 303


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("header", ["Authorization", "Cookie", "X-Api-Key"])
async def test_an_over_long_header_never_quotes_the_token(
    start_gw: Callable[..., Any], caplog: pytest.LogCaptureFixture, header: str
) -> None:
    """aiohttp's parser answered a plain-text 400 and logged an ERROR traceback, both
    quoting the first 100 bytes of the line: ``Bearer `` and the whole token."""
    caplog.set_level(logging.DEBUG)
    gw: Gw = await start_gw()
    value = f"Bearer {TOKEN}" + "x" * 9000
    raw = await raw_exchange(
        gw.gateway.port,
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{header}: {value}\r\n\r\n".encode(),
    )
    head, _, body = raw.decode("latin-1").partition("\r\n\r\n")
    assert head.split()[1] in ("400", "431"), head
    assert "application/json" in head.lower()
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert find_leaks(raw.decode("latin-1"), "answer") == []
    assert TOKEN[:10] not in raw.decode("latin-1") and TOKEN[:10] not in caplog.text
    assert find_leaks(caplog.text, "log") == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# -- bodies --------------------------------------------------------------------------------


async def test_oversized_bodies_get_413_on_every_post_route(start_gw: Callable[..., Any]) -> None:
    gw: Gw = await start_gw(gateway={"max_body_bytes": 2048})
    posts = [p for m, p in served_routes(gw.gateway.web_app) if m == "POST"]
    assert "/v1/chat/completions" in posts
    big = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}).encode()

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for _ in range(8):
            yield b"x" * 1000

    async with gw.authed() as c:
        for path in posts:
            r = await c.post(path, content=big, headers={"Content-Type": "application/json"})
            assert_openai_error(r, 413, "request_too_large")
        r = await c.post("/v1/chat/completions", content=chunked())
        assert_openai_error(r, 413, "request_too_large")
    async with gw.http() as c:  # no token: refused before the body counts
        r = await c.post("/v1/chat/completions", content=big)
        assert r.status_code in (401, 413)
    assert gw.fake.requests == []
    assert await gw.app.runner.runs.recent() == []


def chat(**extra: str) -> bytes:
    """A chat body with one user message; ``extra`` values are raw JSON."""
    fields = "".join(f', "{k}": {v}' for k, v in extra.items())
    return b'{"model": "auto", "messages": [{"role": "user", "content": "x"}]' + (
        fields.encode() + b"}"
    )


BAD_BODIES: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b"{not json", None),
    (b"\xff\xfe\x00garbage", None),
    (b"null", None),
    (b'"a string"', None),
    (b"[" * 50_000 + b"]" * 50_000, None),  # nesting past the parser's recursion limit
    (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "auto", "messages": "hi"}', "messages"),
    (b'{"model": "auto", "messages": [7]}', "messages[0].role"),
    (b'{"model": "auto", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    (chat(max_tokens='"5"'), "max_tokens"),
    (chat(max_tokens="1e999"), "max_tokens"),
    (chat(max_tokens="1" + "0" * 5000), None),  # past int's digit limit
    (chat(temperature='"hot"'), "temperature"),
    (chat(stream_options="[1]"), "stream_options"),
    (chat(user="5"), "user"),
    (chat(tools='[{"type": "function"}]'), "tools[0].function"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES, ids=range(len(BAD_BODIES)))
async def test_bad_bodies_are_4xx_openai_shaped_without_traceback(
    start_gw: Callable[..., Any], body: bytes, param: str | None
) -> None:
    gw: Gw = await start_gw()
    async with gw.authed() as c:
        r = await c.post(
            "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
        )
    assert r.status_code in (400, 404), r.text
    assert_openai_error(r, r.status_code)
    if param is not None:
        assert r.json()["error"]["param"] == param
    assert gw.fake.requests == []


async def test_bad_run_bodies_are_400(start_gw: Callable[..., Any]) -> None:
    agents = [{"name": "a", "message": "hello", "task": "chat", "deliver": ["log"]}]
    gw: Gw = await start_gw(agents=agents)
    async with gw.authed() as c:
        for body in (b"{oops", b"[1]", b'{"message": 5}', b"[" * 50_000):
            r = await c.post("/api/agents/a/run", content=body)
            assert_openai_error(r, 400)
        r = await c.post("/api/agents/..%2F..%2Fetc/run")
        assert r.status_code == 404
        for path in ("/api/runs/abc", "/api/runs/-1", "/api/runs/1e9"):
            assert (await c.get(path)).status_code in (400, 404)
    assert await gw.app.runner.runs.recent() == []


def rename_table(location: DbLocation, table: str, to: str) -> None:
    """A real fault on a connection of its own: the next query of ``table`` fails."""
    run_sql(location, f"ALTER TABLE {table} RENAME TO {to}")


async def test_an_internal_error_is_500_without_its_details(
    start_gw: Callable[..., Any], new_location: NewLocation, caplog: pytest.LogCaptureFixture
) -> None:
    gw: Gw = await start_gw()
    # the usage report's query meets an error no request can cause, whose text names the
    # store's internals ("no such table: attempts")
    await asyncio.to_thread(rename_table, new_location.made[0], "attempts", "attempts_moved")
    async with gw.authed() as c:
        r = await c.get("/api/usage")
    message = assert_openai_error(r, 500, "internal_error")
    assert "attempts" not in r.text and "no such table" not in r.text
    assert "does not exist" not in r.text
    assert "server log" in message
    # where the operator finds it (SQLite's words, or PostgreSQL's)
    assert re.search(r'no such table: attempts|relation "attempts" does not exist', caplog.text)


# -- binding beyond loopback ---------------------------------------------------------------


async def test_a_non_loopback_bind_without_a_token_refuses_to_start(
    tmp_path: Path, log_dir: Path
) -> None:
    config = write_config(tmp_path, gateway={"host": "0.0.0.0", "port": free_port()})
    env = clean_env(config, tmp_path / "o.db")
    code, out, err = await run_cli(env, "serve", timeout_s=60)
    (log_dir / "security-bind-refused.log").write_text(out + err)
    assert code == 78, (out, err)
    assert "OPENCLAW_GATEWAY_TOKEN" in err and "0.0.0.0" in err
    assert "Traceback" not in err
    assert not (tmp_path / "openclaw.gateway-token").exists()  # no token was generated
    assert "gateway http" not in out


async def test_a_non_loopback_bind_with_a_token_starts(tmp_path: Path, log_dir: Path) -> None:
    config = write_config(tmp_path, gateway={"host": "0.0.0.0", "port": 0})
    env = clean_env(config, tmp_path / "o.db", OPENCLAW_GATEWAY_TOKEN=TOKEN)
    out_path = log_dir / "security-bind-token.out"
    with (log_dir / "security-bind-token.err").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            "serve",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        url = ""
        while not url:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"serve exited: {''.join(lines)}"
            lines.append(line)
            m = re.search(r"gateway http://0\.0\.0\.0:(\d+) \(token from OPENCLAW_GATEWAY", line)
            url = f"http://127.0.0.1:{m.group(1)}" if m else ""
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            assert (await c.get("/health")).status_code == 200
            assert (await c.get("/api/status")).status_code == 401
            r = await c.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200 and find_leaks(r.text, "/api/status") == []
    finally:
        if proc.returncode is None:
            proc.terminate()
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        out_path.write_text("".join(lines) + rest.decode(errors="replace"))
    assert proc.returncode == 0
    assert TOKEN not in "".join(lines)


# -- path traversal in prompt paths --------------------------------------------------------


TRAVERSALS = [
    "../../etc/passwd",
    "prompts/../../../etc/passwd",
    "/etc/passwd",
    "..\\..\\etc\\passwd",
    "~/.ssh/id_rsa",
]


@pytest.mark.parametrize("prompt", TRAVERSALS)
def test_a_prompt_path_out_of_templates_is_a_config_error(prompt: str) -> None:
    doc = pyramid(agents=[{"name": "a", "prompt": prompt, "deliver": ["log"]}])
    with pytest.raises(ConfigError) as info:
        parse_config(doc, warnings=[])
    keys = [p.key for p in info.value.problems]
    assert "agents[0].prompt" in keys, keys


async def test_config_check_refuses_a_traversing_prompt_with_78(
    tmp_path: Path, log_dir: Path
) -> None:
    config = write_config(
        tmp_path, agents=[{"name": "a", "prompt": "../../../../../../etc/passwd"}]
    )
    env = clean_env(config, tmp_path / "o.db")
    code, out, err = await run_cli(env, "config", "check")
    (log_dir / "security-traversal-config.log").write_text(out + err)
    assert code == 78, (out, err)
    assert "agents[0].prompt" in err
    assert "root:" not in out + err  # no line of /etc/passwd


def _outside_and_link(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside.txt"
    outside.write_text("OUTSIDE-FILE-CONTENTS-do-not-send")
    templates = tmp_path / "templates" / "prompts"
    templates.mkdir(parents=True)
    link = templates / "linked.j2"
    link.symlink_to(outside)
    (templates / "includes.j2").write_text('{% include "prompts/linked.j2" %}')
    (templates / "climbs.j2").write_text('{% include "../outside.txt" %}')
    (templates / "fine.j2").write_text("a fine prompt for {{ agent.name }}")
    return outside, link


@pytest.mark.parametrize("name", ["prompts/linked.j2", "prompts/includes.j2", "prompts/climbs.j2"])
def test_templates_never_read_a_file_outside_their_folders(tmp_path: Path, name: str) -> None:
    _outside_and_link(tmp_path)
    templates = Templates(tmp_path / "templates")
    with pytest.raises(TemplateError) as info:
        templates.render_file_sync(name, {})
    assert "OUTSIDE-FILE-CONTENTS" not in str(info.value)
    assert templates.render_file_sync("prompts/fine.j2", {"agent": {"name": "x"}}).endswith("x")


async def test_an_agent_with_a_linked_prompt_fails_without_sending_the_file(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    _outside_and_link(tmp_path)
    fake_llm.default = echo
    agents = [
        {"name": "linked", "prompt": "prompts/linked.j2", "task": "chat"},
        {"name": "inline", "message": '{% include "prompts/linked.j2" %}', "task": "chat"},
        {"name": "fine", "prompt": "prompts/fine.j2", "task": "chat"},
    ]
    cfg = make_config(pyramid_urls(fake_llm.base_url), agents=agents)
    app = await App.open(
        cfg,
        Settings(_env_file=None),  # type: ignore[call-arg]
        tmp_path / "t.db",
        base_dir=tmp_path,
    )
    try:
        for name in ("linked", "inline"):
            run = await app.runner.run(name, "cli")
            assert run.status == "failed", run
            assert "OUTSIDE-FILE-CONTENTS" not in f"{run.output} {run.error}"
        assert (await app.runner.run("fine", "cli")).status == "ok"
    finally:
        await app.runner.shutdown(5)
        await app.close()
    sent = json.dumps([r.body for r in fake_llm.requests])
    assert "OUTSIDE-FILE-CONTENTS" not in sent and "a fine prompt for fine" in sent


def test_links_that_stay_inside_the_templates_still_work(tmp_path: Path) -> None:
    real = tmp_path / "shared-prompts"
    (real / "prompts").mkdir(parents=True)
    (real / "prompts" / "base.j2").write_text("base for {{ who }}")
    (real / "prompts" / "alias.j2").symlink_to(real / "prompts" / "base.j2")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "templates").symlink_to(real)  # the whole folder is a link
    templates = Templates(tmp_path / "conf" / "templates")
    assert templates.render_file_sync("prompts/alias.j2", {"who": "me"}) == "base for me"
    assert templates.render_file_sync("prompts/base.j2", {"who": "you"}) == "base for you"
