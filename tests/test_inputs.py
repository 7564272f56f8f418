"""core.agents.inputs against a real aiohttp server on 127.0.0.1, real subprocesses and files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.agents.inputs.base import InputError
from core.agents.inputs.feeds import parse_feed, strip_html
from core.agents.inputs.gather import gather_inputs, gather_one
from core.config.agents import InputConfig

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">
  <channel>
    <title>Example   News</title>
    <link>https://example.com/</link>
    <atom:link href="https://example.com/rss" rel="self"/>
    <item>
      <title>First</title>
      <link>https://example.com/1</link>
      <description>&lt;p&gt;Hello &lt;b&gt;bold&lt;/b&gt; AT&amp;amp;T&lt;/p&gt;&lt;p&gt;Second
        paragraph&lt;/p&gt;&lt;script&gt;evil()&lt;/script&gt;</description>
      <pubDate>Mon, 06 Jan 2025 07:00:00 GMT</pubDate>
    </item>
    <item>
      <title>Second</title>
      <link>https://example.com/2</link>
      <description><![CDATA[<div>In <a href="x">CDATA</a></div><br/>tail]]></description>
    </item>
    <item><title>Third</title><link>https://example.com/3</link></item>
  </channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">Atom &lt;i&gt;Feed&lt;/i&gt;</title>
  <link rel="self" href="https://example.org/atom.xml"/>
  <link href="https://example.org/"/>
  <entry>
    <title>Entry one</title>
    <link rel="edit" href="https://example.org/edit/1"/>
    <link rel="alternate" href="https://example.org/1"/>
    <summary type="html">&lt;p&gt;Summary &amp;amp; more&lt;/p&gt;</summary>
    <published>2025-01-06T07:00:00Z</published>
    <updated>2025-01-07T07:00:00Z</updated>
  </entry>
  <entry>
    <title>Entry two</title>
    <link href="https://example.org/2"/>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Para one</p><p>Para
      two</p></div></content>
    <updated>2025-01-08T07:00:00Z</updated>
  </entry>
</feed>
"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://example.net/"><title>RDF feed</title>
    <link>https://example.net/</link></channel>
  <item rdf:about="https://example.net/1"><title>R1</title><link>https://example.net/1</link>
    <description>Plain &lt;em&gt;one&lt;/em&gt;</description>
    <dc:date>2025-01-06</dc:date></item>
</rdf:RDF>
"""

DTD = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<rss version="2.0"><channel><title>&b;</title><link>x</link></channel></rss>
"""

LIMIT = 1024  # the smallest max_bytes InputConfig allows


def rss_with(n_items: int, description: str = "d") -> bytes:
    items = "".join(
        f"<item><title>t{i}</title><link>l{i}</link><description>{description}</description></item>"
        for i in range(n_items)
    )
    return f"<rss><channel><title>T</title><link>L</link>{items}</channel></rss>".encode()


@dataclass
class Server:
    base: str
    arrived: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    everyone_here: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, path: str) -> str:
        return self.base + path


def has_text(path: str) -> bool:
    with contextlib.suppress(OSError):
        return bool(Path(path).read_text())
    return False


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(base="")

    def static(body: bytes | str, content_type: str, status: int = 200) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            data = body.encode() if isinstance(body, str) else body
            return web.Response(body=data, status=status, headers={"Content-Type": content_type})

        return handler

    async def slow(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(srv.release.wait(), 5)
        return web.Response(text="late")

    async def big_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()  # no Content-Length: the cap must hold while reading
        await resp.prepare(request)
        for _ in range(5):
            await resp.write(b"x" * 1000)
        await resp.write_eof()
        return resp

    async def barrier(request: web.Request) -> web.StreamResponse:
        # Answers only once `n` requests of the group are in: a sequential caller never gets
        # past the first, so success proves the requests were in flight together.
        group, n = request.match_info["group"], int(request.match_info["n"])
        srv.arrived[group] += 1
        if srv.arrived[group] >= n:
            srv.everyone_here[group].set()
        try:
            await asyncio.wait_for(srv.everyone_here[group].wait(), 5)
        except TimeoutError:
            return web.Response(status=504, text="the others never came")
        return web.json_response({"group": group, "arrived": srv.arrived[group]})

    async def fail_once_file_exists(request: web.Request) -> web.StreamResponse:
        for _ in range(500):
            if has_text(request.query["path"]):
                break
            await asyncio.sleep(0.01)
        return web.Response(status=503)

    async def echo_headers(request: web.Request) -> web.StreamResponse:
        return web.json_response(dict(request.headers))

    app = web.Application()
    app.router.add_get("/rss", static(RSS, "application/rss+xml"))
    app.router.add_get("/rss-as-text", static(RSS, "text/plain"))
    app.router.add_get("/atom", static(ATOM, "application/atom+xml"))
    app.router.add_get("/rdf", static(RDF, "application/rdf+xml"))
    app.router.add_get("/many-items", static(rss_with(30), "text/xml"))
    app.router.add_get("/dtd", static(DTD, "application/rss+xml"))
    app.router.add_get("/json", static(b'{"a": [1, 2]}', "application/json"))
    app.router.add_get("/json-as-text", static(b' [{"b": null}]', "text/plain"))
    app.router.add_get("/text", static("hello world\n", "text/plain"))
    app.router.add_get("/number", static("42", "text/plain"))
    app.router.add_get(
        "/latin1", static("caf\u00e9".encode("latin-1"), "text/plain; charset=latin-1")
    )
    app.router.add_get("/sitemap", static(b"<urlset><url>u</url></urlset>", "application/xml"))
    app.router.add_get("/503", static("down", "text/plain", status=503))
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", static(b"x" * 5000, "text/plain"))
    app.router.add_get("/big-stream", big_stream)
    app.router.add_get("/barrier/{group}/{n}", barrier)
    app.router.add_get("/fail-once-file-exists", fail_once_file_exists)
    app.router.add_get("/headers", echo_headers)
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    srv.base = f"http://{host}:{port}"
    try:
        yield srv
    finally:
        srv.release.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def one(cfg: InputConfig, session: aiohttp.ClientSession, base_dir: Path) -> Any:
    return await gather_one("x", cfg, session=session, base_dir=base_dir)


def alive(pid: int) -> bool:
    """Whether pid is a live process; a zombie (killed, not yet reaped by init) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def wait_gone(pid: int) -> bool:
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.01)
    return False


# --- http ---------------------------------------------------------------------------------


async def test_rss_feed(server: Server, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    feed = await one(InputConfig(http=server("/rss")), session, tmp_path)
    assert feed["title"] == "Example News"
    assert feed["link"] == "https://example.com/"
    first, second, third = feed["items"]
    assert first == {
        "title": "First",
        "link": "https://example.com/1",
        "summary": "Hello bold AT&T Second paragraph",
        "published": "Mon, 06 Jan 2025 07:00:00 GMT",
    }
    assert second["summary"] == "In CDATA tail"
    assert second["published"] == ""
    assert third["summary"] == ""


async def test_feed_sniffed_from_body_despite_text_content_type(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    feed = await one(InputConfig(http=server("/rss-as-text")), session, tmp_path)
    assert [i["title"] for i in feed["items"]] == ["First", "Second", "Third"]


async def test_atom_feed(server: Server, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    feed = await one(InputConfig(http=server("/atom")), session, tmp_path)
    assert feed["title"] == "Atom Feed"
    assert feed["link"] == "https://example.org/"  # the rel-less link, not rel="self"
    first, second = feed["items"]
    assert first == {
        "title": "Entry one",
        "link": "https://example.org/1",
        "summary": "Summary & more",
        "published": "2025-01-06T07:00:00Z",
    }
    assert second["link"] == "https://example.org/2"
    assert second["summary"] == "Para one Para two"
    assert second["published"] == "2025-01-08T07:00:00Z"  # no <published>: <updated>


async def test_rdf_feed(server: Server, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    feed = await one(InputConfig(http=server("/rdf")), session, tmp_path)
    assert feed["title"] == "RDF feed"
    assert feed["items"] == [
        {
            "title": "R1",
            "link": "https://example.net/1",
            "summary": "Plain one",
            "published": "2025-01-06",
        }
    ]


async def test_max_items(server: Server, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    feed = await one(InputConfig(http=server("/many-items"), max_items=5), session, tmp_path)
    assert [i["title"] for i in feed["items"]] == ["t0", "t1", "t2", "t3", "t4"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/json", {"a": [1, 2]}),
        ("/json-as-text", [{"b": None}]),  # sniffed: it looks like a JSON document
        ("/text", "hello world\n"),
        ("/number", "42"),  # text/plain that merely parses as JSON stays text
        ("/latin1", "café"),
        ("/sitemap", "<urlset><url>u</url></urlset>"),  # XML, but not a feed
    ],
)
async def test_json_and_text(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path, path: str, expected: Any
) -> None:
    assert await one(InputConfig(http=server(path)), session, tmp_path) == expected


async def test_headers_are_sent(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cfg = InputConfig(http=server("/headers"), headers={"X-Token": "t0k"})
    assert (await one(cfg, session, tmp_path))["X-Token"] == "t0k"


async def test_http_error_status(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with pytest.raises(InputError) as e:
        await gather_one(
            "news", InputConfig(http=server("/503")), session=session, base_dir=tmp_path
        )
    assert e.value.name == "news"
    assert str(e.value) == f"input news: http GET {server('/503')} answered 503"


async def test_http_timeout(server: Server, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"http GET .*/slow timed out after 0\.3s$"):
        await one(InputConfig(http=server("/slow"), timeout_s=0.3), session, tmp_path)


@pytest.mark.parametrize("path", ["/big", "/big-stream"])
async def test_http_body_over_max_bytes(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path, path: str
) -> None:
    with pytest.raises(InputError, match=r"body over max_bytes \(1024\)"):
        await one(InputConfig(http=server(path), max_bytes=LIMIT), session, tmp_path)


async def test_http_connection_refused(
    session: aiohttp.ClientSession, tmp_path: Path, closed_port: int
) -> None:
    with pytest.raises(InputError, match=r"http GET http://127\.0\.0\.1:\d+/ failed: "):
        await one(InputConfig(http=f"http://127.0.0.1:{closed_port}/"), session, tmp_path)


async def test_feed_with_dtd_is_refused(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="feed declares a DTD; refused"):
        await one(InputConfig(http=server("/dtd")), session, tmp_path)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rss", RSS),
        ("/rss-as-text", RSS),
        ("/atom", ATOM),
        ("/rdf", RDF),
        ("/many-items", rss_with(30)),
    ],
)
async def test_a_fetched_feed_is_what_parse_feed_makes_of_its_body(
    path: str, body: bytes, server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # one feed path: the live fetch and parse_feed can't drift apart
    cfg = InputConfig(http=server(path), max_items=5)
    assert await one(cfg, session, tmp_path) == parse_feed(body, 5)
    assert parse_feed(DTD, 5) is None  # where the fetch refuses it (above), parse_feed is None


# --- http: a list of URLs ------------------------------------------------------------------


async def test_url_list_keeps_order_and_reports_a_failure_inline(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    urls = [server("/rss"), server("/503"), server("/json"), server("/text")]
    rss, failed, data, text = await one(InputConfig(http=urls, max_items=1), session, tmp_path)
    assert rss["url"] == urls[0]
    assert rss["title"] == "Example News"
    assert [i["title"] for i in rss["items"]] == ["First"]
    assert failed == {"url": urls[1], "error": f"http GET {urls[1]} answered 503"}
    assert data == {"url": urls[2], "data": {"a": [1, 2]}}
    assert text == {"url": urls[3], "data": "hello world\n"}


async def test_url_list_is_fetched_concurrently(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    urls = [server("/barrier/list/2")] * 2
    entries = await one(InputConfig(http=urls), session, tmp_path)
    assert [e["data"]["group"] for e in entries] == ["list", "list"]


async def test_url_list_all_failing_raises_every_reason(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    urls = [server("/503"), server("/big")]
    with pytest.raises(InputError) as e:
        await one(InputConfig(http=urls, max_bytes=LIMIT), session, tmp_path)
    assert str(e.value) == (
        f"input x: every URL failed: http GET {urls[0]} answered 503; "
        f"http GET {urls[1]} body over max_bytes (1024)"
    )


async def test_empty_url_list(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lists no URLs"):
        await one(InputConfig(http=[]), session, tmp_path)


# --- command ------------------------------------------------------------------------------


async def test_command_stdout_in_base_dir(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "print(os.path.samefile(os.getcwd(), sys.argv[1]))\n"
        "print(repr(sys.stdin.read()))\n"
        "print('  \\n')\n"
    )
    argv = [sys.executable, "-c", script, str(tmp_path)]
    out = await one(InputConfig(command=argv), session, tmp_path)
    assert out == "True\n''"  # in base_dir; stdin closed, not inherited; trailing space stripped


async def test_command_nonzero_exit_reports_last_stderr_line(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    script = (
        "import sys; print('partial')\n"
        "sys.stderr.write('warming up\\nboom: disk full\\n\\n')\n"
        "sys.exit(2)\n"
    )
    argv = [sys.executable, "-c", script]
    with pytest.raises(InputError) as e:
        await one(InputConfig(command=argv), session, tmp_path)
    assert str(e.value) == f"input x: command {argv!r} exited 2: boom: disk full"


async def test_command_timeout_kills_the_process(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    script = "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(5)"
    cfg = InputConfig(command=[sys.executable, "-c", script], timeout_s=0.3)
    with pytest.raises(InputError, match=r"timed out after 0\.3s$"):
        await one(cfg, session, tmp_path)
    pid = int((tmp_path / "pid").read_text())
    assert not alive(pid)  # killed and reaped before the error was raised


async def test_command_timeout_kills_its_children_too(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'])\n"
        "open('child', 'w').write(str(p.pid))\n"
        "time.sleep(5)\n"
    )
    cfg = InputConfig(command=[sys.executable, "-c", script], timeout_s=1.0)
    with pytest.raises(InputError, match="timed out"):
        await one(cfg, session, tmp_path)
    assert await wait_gone(int((tmp_path / "child").read_text()))


async def test_command_output_over_max_bytes(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cfg = InputConfig(command=[sys.executable, "-c", "print('x' * 5000)"], max_bytes=LIMIT)
    with pytest.raises(InputError, match=r"output over max_bytes \(1024\)"):
        await one(cfg, session, tmp_path)


async def test_command_not_found(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        await one(InputConfig(command=["openclaw-no-such-tool", "-h"]), session, tmp_path)
    assert str(e.value) == "input x: command not found: openclaw-no-such-tool"


# --- file ---------------------------------------------------------------------------------


async def test_file_text_and_relative_to_base_dir(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "today.md").write_text("# Today\n- ship\n")
    assert await one(InputConfig(file="notes/today.md"), session, tmp_path) == "# Today\n- ship\n"
    absolute = str(tmp_path / "notes" / "today.md")
    assert await one(InputConfig(file=absolute), session, Path("/")) == "# Today\n- ship\n"


async def test_file_home_is_expanded(
    session: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.txt").write_text("home")
    assert await one(InputConfig(file="~/x.txt"), session, Path("/")) == "home"


async def test_file_json_is_parsed(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"n": 3}))
    assert await one(InputConfig(file="state.json"), session, tmp_path) == {"n": 3}


async def test_file_missing(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        await one(InputConfig(file="nope/y.txt"), session, tmp_path)
    assert str(e.value) == f"input x: file {tmp_path / 'nope' / 'y.txt'} does not exist"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("big.txt", "x" * 5000, r"is over max_bytes \(1024\)"),
        ("bad.json", "{nope", "is not valid JSON"),
    ],
)
async def test_file_errors(
    session: aiohttp.ClientSession, tmp_path: Path, name: str, content: str, reason: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=reason):
        await one(InputConfig(file=name, max_bytes=LIMIT), session, tmp_path)


# --- gather_inputs ------------------------------------------------------------------------


async def test_gather_inputs_runs_inputs_concurrently(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "f.json").write_text("[1]")
    inputs = {
        "a": InputConfig(http=server("/barrier/all/2")),
        "b": InputConfig(http=server("/barrier/all/2")),
        "cmd": InputConfig(command=[sys.executable, "-c", "print('hi')"]),
        "file": InputConfig(file="f.json"),
    }
    values = await gather_inputs(inputs, session=session, base_dir=tmp_path)
    assert list(values) == ["a", "b", "cmd", "file"]
    assert values["a"]["group"] == values["b"]["group"] == "all"
    assert values["cmd"] == "hi"
    assert values["file"] == [1]


async def test_gather_inputs_failure_cancels_the_rest(
    server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    script = "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(5)"
    inputs = {
        "sleeper": InputConfig(command=[sys.executable, "-c", script]),
        # Fails only once the sleeper is surely running, so its cleanup is what's tested.
        "broken": InputConfig(http=server(f"/fail-once-file-exists?path={pid_file}")),
    }
    with pytest.raises(InputError) as e:
        await gather_inputs(inputs, session=session, base_dir=tmp_path)
    assert e.value.name == "broken"
    assert not alive(int(pid_file.read_text()))


async def test_gather_inputs_empty(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    assert await gather_inputs({}, session=session, base_dir=tmp_path) == {}


# --- parse_feed (pure) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"plain text",
        b'{"title": "t", "link": "l", "items": []}',
        b"<html><body><p>hi</p></body></html>",
        b"<rss><channel><title>unclosed",
        b"<rss version='2.0'></rss>",  # no channel
        b"<urlset><url>u</url></urlset>",
        DTD,
        RSS.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
    ],
)
def test_parse_feed_not_a_feed(body: bytes) -> None:
    assert parse_feed(body, 10) is None


def test_parse_feed_declared_encoding() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<rss><channel><title>Caf\u00e9'
    body += "</title><link>l</link></channel></rss>"
    assert parse_feed(body.encode("latin-1"), 10) == {"title": "Café", "link": "l", "items": []}


def test_parse_feed_truncates_long_summaries() -> None:
    feed = parse_feed(rss_with(1, "word " * 400), 10)
    assert feed is not None
    summary = feed["items"][0]["summary"]
    assert len(summary) <= 500
    assert summary.endswith("word…")


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>a</p><p>b</p>", "a b"),
        ("x<br>y<br/>z", "x y z"),
        ("<b>bo</b>ld <a href='#'>link</a>", "bold link"),
        ("keep <style>p{}</style>this<script>x()</script>", "keep this"),
        ("AT&amp;T &lt;tag&gt; &#8217;", "AT&T <tag> \u2019"),
        ("  lots \n\t of   space ", "lots of space"),
        ("a < b", "a < b"),
    ],
)
def test_strip_html(markup: str, text: str) -> None:
    assert strip_html(markup) == text
