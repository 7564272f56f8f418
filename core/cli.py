"""The `openclaw` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from core import __version__
from core.agents.assurance import parse_period
from core.agents.runs import Run, Status, Trigger
from core.app import App, missing_keys
from core.config.common import mask_url
from core.config.load import load_config
from core.config.models import Config
from core.config.settings import Settings
from core.drills.board import DEFAULT_FOR_S, MAX_REQUESTS, parse_for
from core.drills.wire import FAULTS
from core.engine.advisor import Suggestion
from core.engine.advisor import parse_period as parse_tune_period
from core.engine.engine import Result
from core.engine.ledger import GROUPS, UsageReport
from core.engine.tier_targets import TARGET_SHARE
from core.errors import (
    EX_CONFIG,
    AllAttemptsFailed,
    ConfigError,
    ConfigProblem,
    OpenClawError,
    RoutingError,
)
from core.ops.logs import setup_logging
from core.ops.serve import Extension, serve
from core.overview import key_line, model_line
from core.parsing import parse_id, parse_int, parse_since
from core.store.path import PostgresURL, check_db_location, db_url_password
from core.types import ChatRequest, Message, StreamDelta

log = logging.getLogger("openclaw")


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from one of core.parsing's parsers: a bad value is a usage error
    (exit 2, like every argparse error) that says what is accepted, not a traceback."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _since(text: str) -> tuple[str, timedelta]:
    try:
        return text, parse_since(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the prompt is empty: give the text to send")
    return text


_TIER = _arg(lambda t: parse_int(t, "tier", 0, 1000))
_MAX_RUNS = 500  # as the API's /api/runs?limit=
# a sanity bound, far above any model's output limit (which caps it anyway): 10**30 is a typo
MAX_TOKENS = 10_000_000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="openclaw", description="Run LLM agents on a four-tier model pyramid, cheapest first."
    )
    p.add_argument("--version", action="version", version=f"openclaw {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        help="TOML config (default: $OPENCLAW_CONFIG, ./openclaw.toml, else openclaw.example.toml)",
    )
    p.add_argument(
        "--db", help="SQLite file or postgresql:// URL (default: $OPENCLAW_DB or ./openclaw.db)"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines on stderr: text (default) or one JSON object per line",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="start the engine and the gateway; run until SIGTERM")
    serve.add_argument(
        "--port",
        type=_arg(lambda t: parse_int(t, "--port", 0, 65535)),
        help="gateway port (overrides [gateway] port)",
    )

    ask = sub.add_parser("ask", help="send one prompt through the pyramid and print the answer")
    where = ask.add_mutually_exclusive_group()
    where.add_argument("--task", help="task type (its minimum tier comes from [tasks])")
    where.add_argument("--tier", type=_TIER, help="start at this tier")
    ask.add_argument("--system", help="a system prompt")
    ask.add_argument(
        "--max-tokens",
        type=_arg(lambda t: parse_int(t, "--max-tokens", 1, MAX_TOKENS)),
        help="a whole number, at least 1 (capped at the model's output limit)",
    )
    ask.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    ask.add_argument("--explain", action="store_true", help="print the route trace to stderr")
    ask.add_argument("prompt", type=_prompt)

    route = sub.add_parser("route", help="print the plan for a task without calling anything")
    route.add_argument("task", nargs="?", help="task type (default: the default task)")
    route.add_argument("--tier", type=_TIER, help="explain an explicit tier instead")
    route.add_argument(
        "--request-id", help="the plan of this request id (a task's trial is picked by it)"
    )

    usage = sub.add_parser("usage", help="usage per tier/model/agent/day, tier shares, savings")
    usage.add_argument(
        "--since", default="7d", type=_since, help="period: 30m, 24h, 7d, 4w (default 7d)"
    )
    usage.add_argument("--group", default="tier", choices=GROUPS)
    usage.add_argument(
        "--what-if",
        type=Path,
        metavar="FILE.toml",
        help="re-price the period under another config's tiers, tasks, prices",
    )

    sched = sub.add_parser(
        "schedule", help="each scheduled agent's expected fires vs what happened to them"
    )
    sched.add_argument(
        "--since",
        default="24h",
        type=_arg(lambda t: (t, parse_period(t))),
        help="period: 30m, 24h, 7d, at most 31d (default 24h)",
    )
    sched.add_argument("agent", nargs="?", help="one agent (default: all)")

    tune = sub.add_parser(
        "tune", help="routing advisor: how each task's requests climbed; tier changes to make"
    )
    tune.add_argument(
        "--since",
        default="30d",
        type=_arg(lambda t: (t, parse_tune_period(t))),
        help="period: 7d, 30d, at most 365d (default 30d)",
    )
    tune.add_argument(
        "--apply",
        metavar="TASK",
        help="write TASK's suggested tier into the config file (its comments and order kept)",
    )

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = cfg_sub.add_parser(
        "check", help="validate and print the resolved config (secrets masked)"
    )
    check.add_argument(
        "file", nargs="?", type=Path, help="the TOML file (default: as for every command)"
    )

    sub.add_parser("doctor", help="check the config and probe every provider")

    svc = sub.add_parser(
        "service", help="run serve as a launchd agent (macOS) or systemd user unit (Linux)"
    )
    svc.add_argument("action", choices=["install", "uninstall", "status"])
    svc.add_argument("--systemd", action="store_true", help="a systemd user unit (Linux)")
    svc.add_argument(
        "--dry-run", action="store_true", help="print the file and the commands; change nothing"
    )
    status = sub.add_parser("status", help="ask the running serve for its status")
    status.add_argument("--json", action="store_true", help="print the raw /api/status JSON")
    sub.add_parser("budget", help="spend caps: spent, reserved, remaining, forecast")
    sub.add_parser("agents", help="agents: schedule, next fire, last status, cost today")
    run = sub.add_parser("run", help="run an agent now")
    run.add_argument("agent")
    run.add_argument("--message", "-m", help="extra text for this run")
    run.add_argument(
        "--wait",
        action="store_true",
        help="run it here and now; print status and output; exit 1 if it failed",
    )
    runs = sub.add_parser("runs", help="recent runs (of one agent)")
    runs.add_argument("agent", nargs="?")
    runs.add_argument(
        "--limit", type=_arg(lambda t: parse_int(t, "--limit", 1, _MAX_RUNS)), default=20
    )
    show = sub.add_parser("run-show", help="one run in full: status, output, error, cost")
    show.add_argument("run_id", type=_arg(parse_id))
    drill = sub.add_parser(
        "drill",
        help="fault one model for a while (through the running serve) and report what happened",
    )
    drill.add_argument("model", help="a provider/model ref from the config")
    drill.add_argument("fault", help=f"one of {', '.join(FAULTS)}")
    drill.add_argument(
        "--for",
        dest="for_s",
        type=_arg(parse_for),
        default=DEFAULT_FOR_S,
        help="how long: 90s, 5m (default 60s, at most 15m)",
    )
    drill.add_argument(
        "--requests",
        type=_arg(lambda t: parse_int(t, "--requests", 1, MAX_REQUESTS)),
        help="end after this many faulted requests (whichever comes first)",
    )
    drills = sub.add_parser("drills", help="the kept failure drills, or one drill's report")
    drills.add_argument("drill_id", nargs="?", type=_arg(parse_id), metavar="ID")
    mem = sub.add_parser("memory", help="what an agent remembered (its remember tool)")
    mem.add_argument("agent")
    what = mem.add_mutually_exclusive_group()
    what.add_argument("--json", action="store_true", help="print the entries whole, as JSON")
    what.add_argument("--forget", metavar="KEY", help="drop one key")
    what.add_argument("--clear", action="store_true", help="drop all of the agent's keys")
    return p


def _load(
    args: argparse.Namespace, settings: Settings, warnings: list[str] | None = None
) -> tuple[Config, Path]:
    path = args.config or settings.config_path()
    return load_config(path, warnings), path


def _print_config_error(e: ConfigError, path: Path | None) -> None:
    # a problem of the environment (OPENCLAW_DB, a token) is not "in" the TOML file
    in_file = any(not (p.key.isupper() or p.key.startswith("--")) for p in e.problems)
    where = f" in {path}" if path and in_file else ""
    print(f"openclaw: invalid configuration{where} ({len(e.problems)} problems):", file=sys.stderr)
    for problem in e.problems:
        print(f"  {problem}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `openclaw` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    settings = Settings()
    redact = setup_logging(args.log_level, args.log_format, _secrets(settings))
    path: Path | None = None
    try:
        if args.command == "config":
            return _config_check(args, settings)
        # checked before anything can use it: serve writes its token file beside it
        if args.db is not None:
            raw_db = args.db
            args.db = check_db_location(raw_db, "--db")
            # as written: the token file lives beside it, and a URL's str() is masked
            settings.openclaw_db = raw_db
            redact.secrets += [p for p in [db_url_password(raw_db)] if p]
        else:
            args.db = settings.db_path()
        if args.command == "service":
            if isinstance(args.db, PostgresURL):  # its password would land in the unit file
                raise ConfigError(
                    [
                        ConfigProblem(
                            "OPENCLAW_DB",
                            "a service with a PostgreSQL URL is not generated yet",
                            "install the service with a SQLite path, then set OPENCLAW_DB "
                            "in the service's environment file",
                        )
                    ]
                )
            from core.ops.service import service_command

            # the configured paths, never the example fallback: a service must not run on it
            return service_command(
                args.action,
                systemd=args.systemd,
                dry_run=args.dry_run,
                config_path=args.config or settings.openclaw_config,
                db_path=args.db,
                env_file=Path(".env"),
                venv_bin=Path(sys.executable).parent,
            )
        config, path = _load(args, settings)
        redact.secrets += [v for v in _config_secrets(config, settings) if len(v) >= 6]
        args.base_dir = path.resolve().parent  # inputs and templates/ are relative to it
        return _run(_COMMANDS[args.command](args, settings, config, path))
    except ConfigError as e:
        _print_config_error(e, path or args.config)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (macOS, Linux): measured, it lifts the gateway's
    throughput at 64 concurrent requests by about a fifth. Plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.openclaw_gateway_token,
        settings.telegram_bot_token,
        settings.gemini_api_key,
        settings.deepseek_api_key,
        settings.anthropic_api_key,
    ]
    out = [v.get_secret_value() for v in values if v is not None]
    # a PostgreSQL password, in the URL or where libpq also reads it (PGPASSWORD): never
    # printed by libpq or psycopg, and redacted from every log line in case
    passwords = [db_url_password(settings.openclaw_db), os.environ.get("PGPASSWORD")]
    return out + [p for p in passwords if p]


def _config_secrets(config: Config, settings: Settings) -> list[str]:
    """Every secret the config names by variable: provider keys, webhook URLs."""
    names = [env for p in config.providers.values() for env in p.key_envs]
    names += [c.webhook_url_env for c in config.channels.slack.values()]
    names += [c.url_env for c in config.channels.webhook.values() if c.url_env]
    names.append(config.telegram.webhook_secret_env)
    names += _headers_env_names(config)
    values = [settings.secret(n) for n in names]
    # header values written in the file may be secrets too (a token before headers_env)
    headers = [p.headers for p in config.providers.values()]
    headers += [c.headers for c in config.channels.webhook.values()]
    return [v.get_secret_value() for v in values if v is not None] + [
        value for h in headers for value in h.values()
    ]


def _config_check(args: argparse.Namespace, settings: Settings) -> int:
    warnings: list[str] = []
    path = args.file or args.config or settings.config_path()
    try:
        config = load_config(path, warnings)
    except ConfigError as e:
        _print_config_error(e, path)
        return EX_CONFIG
    print(f"# {path}: valid")
    for w in warnings:
        print(f"# warning: {w}")
    for name, reason in missing_keys(config, settings).items():
        print(f"# provider {name} unavailable: {reason}")
    secrets = {
        "OPENCLAW_GATEWAY_TOKEN": settings.openclaw_gateway_token,
        "TELEGRAM_BOT_TOKEN": settings.telegram_bot_token,
    } | {env: settings.secret(env) for p in config.providers.values() for env in p.key_envs}
    for env, value in secrets.items():
        print(f"# {env}: {'set (hidden)' if value else 'not set'}")
    for env in _headers_env_names(config):
        print(f"# {env}: {'set (hidden)' if settings.secret(env) else 'not set'}")
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    # allow_nan=False: the config has no infinite numbers (refused at load); if one slipped
    # through, fail here rather than print "Infinity", which no JSON reader accepts
    print(json.dumps(masked(dumped), indent=2, allow_nan=False))
    return 0


# keys whose value is a URL (or a list of URLs) wherever they appear in the config
_URL_KEYS = frozenset({"base_url", "url", "webhook_url", "http"})


def masked(node: Any, key: str = "") -> Any:
    """The dumped config as ``config check`` prints it: every header value and a URL's
    password and query values replaced by ``***`` (variable names, ``*_env``, are shown)."""
    if isinstance(node, dict):
        if key == "headers":
            return {name: "***" for name in node}
        return {k: masked(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [masked(v, key) for v in node]
    if isinstance(node, str) and key in _URL_KEYS:
        return mask_url(node)
    return node


def _headers_env_names(config: Config) -> list[str]:
    """The variables every ``headers_env`` names (providers and channels), sorted."""
    tables = [p.headers_env for p in config.providers.values()]
    tables += [c.headers_env for c in config.channels.slack.values()]
    tables += [c.headers_env for c in config.channels.webhook.values()]
    return sorted({env for table in tables for env in table.values()})


async def _with_app(args: argparse.Namespace, settings: Settings, config: Config) -> App:
    return await App.open(config, settings, args.db, base_dir=args.base_dir)


async def _serve(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    from core.gateway.auth import resolve_token

    host = config.gateway.host
    port = args.port if args.port is not None else config.gateway.port
    # the store first: its write probe refuses a read-only database (or mount) before the
    # token file is written beside it
    app = await _with_app(args, settings, config)
    try:
        try:
            token, token_source = await asyncio.to_thread(resolve_token, settings, host)
        except OSError as e:
            raise ConfigError(
                [
                    ConfigProblem(
                        "OPENCLAW_TOKEN_FILE",
                        f"cannot write the gateway token file {settings.token_file()}: "
                        f"{e.strerror or e}",
                        "make its directory writable, point OPENCLAW_TOKEN_FILE elsewhere, or "
                        "set OPENCLAW_GATEWAY_TOKEN",
                    )
                ]
            ) from None
        return await serve(app, token, token_source, host, port, path, _extensions(app))
    finally:
        await app.close()


def _extensions(app: App) -> list[Extension]:
    """The Telegram bot, when a token is set. Imported by name: core never imports aiogram."""
    token = app.settings.telegram_bot_token
    if token is None or not token.get_secret_value():
        return []
    plugin = importlib.import_module("bot.service")
    ext: Extension = plugin.TelegramBot(
        app.facade, token.get_secret_value(), app.settings.telegram_api_base
    )
    return [ext]


async def _ask(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    messages = ([Message("system", args.system)] if args.system else []) + [
        Message("user", args.prompt)
    ]
    req = ChatRequest(tuple(messages), task=args.task, tier=args.tier, max_tokens=args.max_tokens)
    app = await _with_app(args, settings, config)
    try:
        await app.start_embedded()
        if args.stream:
            result = None
            async for item in app.engine.stream(req):
                if isinstance(item, StreamDelta):
                    print(item.content, end="", flush=True)
                elif isinstance(item, Result):
                    result = item
            print()
        else:
            result = await app.engine.complete(req)
            print(result.content)
        if args.explain and result is not None:
            plan = "\n".join(f"plan: {why}" for why in result.plan.reasons)
            print(
                f"{plan}\nroute: {result.route_header()}\n{result.trace()}\n"
                f"total ${result.cost_usd:.6f}",
                file=sys.stderr,
            )
        return 0
    except RoutingError as e:
        print(f"openclaw ask: {e}", file=sys.stderr)
        return 2
    except AllAttemptsFailed as e:
        print(f"openclaw ask: {e}", file=sys.stderr)
        return 1
    except OpenClawError as e:  # a stream that broke after it began
        print(f"\nopenclaw ask: the answer broke off: {e}", file=sys.stderr)
        return 1
    finally:
        await app.close()


async def _route(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    app = await _with_app(args, settings, config)
    try:
        print(app.engine.plan(task=args.task, tier=args.tier, request_id=args.request_id).explain())
        return 0
    except RoutingError as e:
        print(f"openclaw route: {e}", file=sys.stderr)
        return 2
    finally:
        await app.close()


async def _usage(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    period, since = args.since
    other = None
    if args.what_if is not None:
        try:
            other = await asyncio.to_thread(load_config, args.what_if)
        except ConfigError as e:
            _print_config_error(e, args.what_if)
            return EX_CONFIG
    app = await _with_app(args, settings, config)
    try:
        print(format_usage(await app.ledger.report(since, args.group), period))
        if other is not None:
            from core.engine.whatif import what_if

            w = what_if(await app.ledger.requests_since(since), other)
            print(
                f"\nWhat if {args.what_if} had applied: {w.requests} answered requests, "
                f"{w.known} priced ({w.moved} would have started on another tier)."
            )
            print(
                f"  recorded ${w.actual_usd:.4f} -> what-if ${w.what_if_usd:.4f} "
                f"(difference {w.difference_usd:+.4f} USD)"
            )
            for tier, n in sorted(w.unknown.items()):
                print(
                    f"  {n} requests would have started on tier {tier}, where they never "
                    "ran: not priced (no guessing)"
                )
        return 0
    finally:
        await app.close()


def format_usage(r: UsageReport, period: str) -> str:
    """The usage report as a plain-text table, with tier shares and savings."""
    head = (
        f"{r.group:<28} {'requests':>8} {'attempts':>8} {'answered':>8} {'in tok':>9}"
        f" {'out tok':>9} {'reasoning':>9} {'cost $':>10}"
    )
    lines = [f"Usage over the last {period} (since {r.since[:19]}Z), by {r.group}", head]
    for row in r.rows:
        lines.append(
            f"{row.key:<28} {row.requests:>8} {row.attempts:>8} {row.answered:>8}"
            f" {row.input_tokens:>9} {row.output_tokens:>9} {row.reasoning_tokens:>9}"
            f" {row.cost_usd:>10.4f}"
        )
    if not r.rows:
        lines.append("(no requests in this period)")
    share = ", ".join(
        f"tier {t}: {r.tier_share.get(t, 0.0):.1f}% (target {target}%)"
        for t, target in TARGET_SHARE.items()
        if r.answered
    )
    lines.append(
        f"Requests: {r.requests}, answered: {r.answered}. Tier share of answers: {share or '-'}"
    )
    lines.append(
        f"Cost: ${r.cost_usd:.4f}. Cloud-only would cost ${r.cloud_only_usd:.4f} "
        f"(saved ${r.savings_vs_cloud_usd:.4f}, {r.savings_vs_cloud_pct:.1f}%); "
        f"all-top-tier ${r.all_top_tier_usd:.4f} (saved ${r.savings_vs_top_usd:.4f}, "
        f"{r.savings_vs_top_pct:.1f}%)."
    )
    return "\n".join(lines)


async def _doctor(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    from core.ops.doctor import probe

    print(f"config {path}: valid")
    app = await _with_app(args, settings, config)
    try:
        await app.start_embedded()
        results = await probe(config, app.providers, missing_keys(config, settings))
        for model in app.embedded.values():
            d = model.describe()
            size = f"{d['size_bytes'] / 1e6:.0f} MB" if d["size_bytes"] else "missing"
            print(
                f"embedded {d['provider']}: {d['file']} ({size}); process {d['state']}, "
                f"pid {d['pid']}, port {d['port']}, {d['threads']} threads"
                + (f"; {d['last_error']}" if d["last_error"] else "")
            )
    finally:
        await app.close()
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        lat = f" ({r.latency_ms:.0f} ms)" if r.latency_ms is not None else ""
        print(f"{mark} {r.provider:<12} {r.message}{lat}")
    usable = {r.provider for r in results if r.ok}
    dead_tiers = [
        t.level for t in config.tiers if not any(ref.split("/", 1)[0] in usable for ref in t.models)
    ]
    if dead_tiers:
        print(f"tiers with no reachable provider: {', '.join(map(str, dead_tiers))}")
    return 0 if all(r.ok for r in results) else 1


async def _agents(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    app = await _with_app(args, settings, config)
    try:
        rows = await app.overview.agents()
    finally:
        await app.close()
    if not rows:
        print("no agents configured (add [[agents]] to the config; see README)")
        return 0
    print(
        f"{'agent':<24} {'schedule':<16} {'timezone':<16} {'next fire':<26} {'last':<12}"
        f" {'today $':>9}"
    )
    for r in rows:
        state = r.last_status or "-"
        nxt = r.next_fire or ("disabled" if not r.enabled else "-")
        print(
            f"{r.name:<24} {r.schedule or 'on demand':<16} {r.timezone:<16}"
            f" {nxt[:25]:<26} {state:<12} {r.cost_today_usd:>9.4f}"
        )
        if r.disabled_reason:
            print(f"  disabled: {r.disabled_reason}")
    return 0


def _print_run(run: Run, full: bool) -> None:
    print(
        f"run {run.id}: {run.agent} [{run.trigger}] {run.status}"
        + (" (quiet: NO_REPLY, nothing delivered)" if run.quiet else "")
        + (f" (rerun of {run.parent_run})" if run.parent_run else "")
        + f", ${run.cost_usd:.6f}"
        + (f", {run.route}" if run.route else "")
    )
    if full:
        print(
            f"created {run.created_at}; started {run.started_at or '-'}; finished "
            f"{run.finished_at or '-'}; session {run.session_id or '-'}"
        )
    if run.error:
        print(f"error: {run.error}")
    if run.output and full:
        print(run.output)


async def _run_agent(
    args: argparse.Namespace, settings: Settings, config: Config, path: Path
) -> int:
    from core.agents.runner import UnknownAgent

    app = await _with_app(args, settings, config)
    try:
        try:
            app.runner.agent(args.agent)
        except UnknownAgent as e:
            print(f"openclaw run: {e}", file=sys.stderr)
            return 2
        if not args.wait:  # queued: a running serve takes it within a second
            rid = await app.runner.queue(args.agent, Trigger.CLI, message=args.message)
            print(
                f"queued run {rid} of {args.agent}; a running `openclaw serve` starts it "
                f"(see `openclaw run-show {rid}`; use --wait to run it here instead)"
            )
            return 0
        await app.start_embedded()
        run = await app.runner.run(args.agent, Trigger.CLI, message=args.message)
        await app.delivery.drain(run_id=run.id)
        _print_run(run, full=True)
        for target, status, error in await app.outbox.of_run(run.id):
            # e.g. an earlier message to the same chat still backing off goes first
            later = (
                " (a running `openclaw serve` sends it)"
                if status in ("pending", "sending")
                else " (may or may not have arrived: /deliveries in Telegram)"
                if status == "unknown"
                else ""
            )
            print(f"delivery to {target}: {status}{later}" + (f" — {error}" if error else ""))
        return 0 if run.status in (Status.OK, Status.LATE) else 1
    finally:
        await app.close()


async def _runs(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    from core.agents.runner import UnknownAgent

    app = await _with_app(args, settings, config)
    try:
        if args.agent is not None:
            try:  # as the API: a name that is not configured is an error, not "no runs"
                app.runner.agent(args.agent)
            except UnknownAgent as e:
                print(f"openclaw runs: {e}", file=sys.stderr)
                return 2
        runs = await app.runner.runs.recent(args.agent, args.limit)
    finally:
        await app.close()
    if not runs:
        print(f"no runs of {args.agent} yet" if args.agent else "no runs yet")
    for run in runs:
        _print_run(run, full=False)
    return 0


STEP_ARGUMENTS_SHOWN = 120  # characters of a step's arguments in run-show


async def _run_show(
    args: argparse.Namespace, settings: Settings, config: Config, path: Path
) -> int:
    app = await _with_app(args, settings, config)
    try:
        run = await app.runner.runs.get(args.run_id)
        steps = await app.runner.steps.for_run(args.run_id) if run else []
        deliveries = await app.delivery.deliveries.of_run(args.run_id) if run else []
    finally:
        await app.close()
    if run is None:
        print(f"openclaw run-show: no run {args.run_id}", file=sys.stderr)
        return 2
    _print_run(run, full=True)
    if steps:
        print("steps:")
    for s in steps:
        # arguments are stored redacted; one line each, so a long body is cut
        shown = " ".join((s.arguments or "").split())
        if len(shown) > STEP_ARGUMENTS_SHOWN:
            shown = shown[: STEP_ARGUMENTS_SHOWN - 1] + "…"
        print(
            f"  {s.line()} · {s.latency_ms:.0f} ms, ${s.cost_usd:.6f}"
            + (f"  {shown}" if shown else "")
        )
    for d in deliveries:  # unknown: sent maybe, never confirmed (an admin decides)
        why = d.note or d.last_error
        print(f"delivery #{d.id} to {d.target}: {d.status}" + (f" — {why}" if why else ""))
    return 0


MEMORY_VALUE_SHOWN = 100  # characters of a value in the table: one line each


async def _memory(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    from core.agents.runner import UnknownAgent

    app = await _with_app(args, settings, config)
    try:
        try:  # as `runs`: an agent that is not configured is an error, not "nothing stored"
            app.runner.agent(args.agent)
        except UnknownAgent as e:
            print(f"openclaw memory: {e}", file=sys.stderr)
            return 2
        memory = app.runner.memory
        if args.forget is not None:
            gone = await memory.forget(args.agent, args.forget)
            if not gone:
                print(f"openclaw memory: {args.agent} has no key {args.forget!r}", file=sys.stderr)
                return 2
            print(f"forgot {args.forget!r} of {args.agent}")
            return 0
        if args.clear:
            gone = await memory.forget(args.agent)
            print(f"forgot {gone} key{'s' if gone != 1 else ''} of {args.agent}")
            return 0
        entries = await memory.entries(args.agent)
    finally:
        await app.close()
    if args.json:
        print(json.dumps([dataclasses.asdict(e) for e in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print(f"{args.agent} remembers nothing yet")
    for entry in entries:
        line = " ".join(entry.value.split())
        if len(line) > MEMORY_VALUE_SHOWN:
            line = line[: MEMORY_VALUE_SHOWN - 1] + "…"
        print(f"{entry.key}  {entry.updated_at}  run {entry.run_id or '-'}  {line}")
    return 0


async def _status(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    url = _gateway_url(config, "/api/status")
    try:
        status, body = await _gateway(config, settings, "GET", "/api/status")
    except GatewayDown as e:
        print(f"openclaw status: {e}", file=sys.stderr)
        return e.code
    if status != 200:
        print(f"openclaw status: {url} answered {status}: {_api_error(body)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"openclaw {body['version']} up {body['uptime_s']:.0f}s at {url.rsplit('/api', 1)[0]}")
    for tier in body["tiers"]:
        print(f"tier {tier['level']}: {tier['state']}")
        for m in body["models"]:
            if m["tier"] == tier["level"]:
                print(f"  {model_line(m)}")
    for k in body.get("keys", []):  # by variable name: the status never holds a key's value
        print(f"key {key_line(k)}")
    q = body["queues"]

    def count(n: int | None) -> str:
        return "?" if n is None else str(n)

    print(
        f"queues: agents {q['agents_running']} running, {q['agents_waiting']} waiting; "
        f"outbox {count(q['outbox_pending'])} pending,"
        f" {count(q.get('outbox_unknown'))} unknown; "
        f"approvals {count(body['pending_approvals'])} pending"
    )
    if body.get("store", "ok") != "ok":
        print(f"store: {body['store']}")
    print(f"telegram: {body['telegram']['mode']}, {body['telegram']['state']}")
    if "heartbeat" in body:
        print(heartbeat_line(body["heartbeat"]))
    return 0


async def _gateway(
    config: Config, settings: Settings, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """Ask the running serve's gateway (with its token); OSError-free: a gateway that is
    down raises GatewayDown with what to do."""
    import aiohttp

    from core.gateway.auth import is_loopback

    url = _gateway_url(config, path)
    token = settings.openclaw_gateway_token
    value = (
        token.get_secret_value()
        if token
        else await asyncio.to_thread(_read_token_file, settings.token_file())
    )
    if not value:
        how = "" if is_loopback(config.gateway.host) else " (a remote gateway needs it)"
        raise GatewayDown(f"no token: set OPENCLAW_GATEWAY_TOKEN{how}", code=2)
    try:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {value}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r,
        ):
            return r.status, await r.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise GatewayDown(
            f"the gateway at {url} is down ({type(e).__name__}); start it with"
            " `openclaw serve` (or check the service: `openclaw service status`)"
        ) from None


class GatewayDown(Exception):
    """The running serve could not be asked; the message says what to do, ``code`` is
    the exit status (2: no token to ask with, 1: the gateway did not answer)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _gateway_url(config: Config, path: str) -> str:
    """Where this machine reaches the configured gateway (a wildcard bind: on loopback)."""
    host = config.gateway.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{'[' + host + ']' if ':' in host else host}:{config.gateway.port}{path}"


def _api_error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body))
    return str(body)


async def _drill(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    """Start a drill on the running serve, wait for it to end (Ctrl-C ends it early),
    print its report."""
    from core.drills.report import report_lines

    body: dict[str, Any] = {"model": args.model, "fault": args.fault, "for_s": args.for_s}
    if args.requests is not None:
        body["requests"] = args.requests
    interrupted = False
    try:
        # shielded: a Ctrl-C while the drill starts lets it start, then ends it (else it
        # would run on, faulting the model, with nobody to stop it)
        post = asyncio.ensure_future(_gateway(config, settings, "POST", "/api/drills", body))
        try:
            status, started = await asyncio.shield(post)
        except asyncio.CancelledError:
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status, started = await post
        if status != 201:
            print(f"openclaw drill: {_api_error(started)}", file=sys.stderr)
            return 2 if status == 400 else 1
        drill_id = started["id"]
        print(
            f"drill {drill_id}: {args.model} faulted with {args.fault}; waiting for it to end"
            " (Ctrl-C ends it now)",
            file=sys.stderr,
        )
        report = started
        try:
            while not interrupted and report["state"] == "running":
                await asyncio.sleep(0.5)
                _, report = await _gateway(config, settings, "GET", f"/api/drills/{drill_id}")
        except asyncio.CancelledError:  # Ctrl-C: end the drill before leaving
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: the calls below are not cancelled too
        if interrupted:
            _, report = await _gateway(config, settings, "POST", f"/api/drills/{drill_id}/stop")
        # the alert's delivery and the first answer after the drill come a moment later
        for _ in range(6):
            if report.get("healthy_after_s") is not None and all(
                a["delivered_after_s"] is not None for a in report.get("alerts", [])
            ):
                break
            await asyncio.sleep(0.5)
            _, report = await _gateway(config, settings, "GET", f"/api/drills/{drill_id}")
    except GatewayDown as e:
        print(f"openclaw drill: {e}", file=sys.stderr)
        return e.code
    for line in report_lines(report):
        print(line)
    return 130 if interrupted else 0


async def _drills(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    """The kept drills (one line each), or one drill's report."""
    from core.drills.report import report_lines

    where = f"/api/drills/{args.drill_id}" if args.drill_id is not None else "/api/drills"
    try:
        status, body = await _gateway(config, settings, "GET", where)
    except GatewayDown as e:
        print(f"openclaw drills: {e}", file=sys.stderr)
        return e.code
    if status != 200:
        print(f"openclaw drills: {_api_error(body)}", file=sys.stderr)
        return 1
    if args.drill_id is not None:
        for line in report_lines(body):
            print(line)
        return 0
    if not body["drills"]:
        print("no drills yet: start one with `openclaw drill MODEL FAULT`")
        return 0
    print(f"{'id':>4} {'model':<32} {'fault':<15} {'started':<28} {'state':<16} breaker  alert")
    for r in body["drills"]:
        state = r["state"] if r["state"] == "running" else f"ended ({r['end_reason']})"
        opened = r["breaker_opened_after_s"]
        alert = r["alerts"][0]["status"] if r["alerts"] else "none"
        print(
            f"{r['id']:>4} {r['model']:<32} {r['fault']:<15} {r['started_at']:<28} {state:<16}"
            f" {'—' if opened is None else f'+{opened:.1f}s':<8} {alert}"
        )
    return 0


def heartbeat_line(hb: dict[str, Any]) -> str:
    """The dead-man's switch in one line: its state and the last ping the monitor took."""
    return f"heartbeat ({hb['url_env']}): {hb['state']}; last ping {hb['last_ping'] or 'never'}"


def _read_token_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


async def _budget(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    app = await _with_app(args, settings, config)
    try:
        rows = await app.engine.budget.report() if app.engine.budget else []
    finally:
        await app.close()
    if not rows:
        print("no spend caps configured (add [budgets]; see README)")
        return 0
    print(
        f"{'cap':<36} {'spent $':>9} {'reserved':>9} {'left $':>9} {'used':>6} {'forecast $':>10}"
    )
    for r in rows:
        forecast = f"{r['forecast_usd']:>10.4f}" if r["period"] == "month" else f"{'':>10}"
        print(
            f"{r['label']:<36} {r['spent_usd']:>9.4f} {r['reserved_usd']:>9.4f} "
            f"{r['remaining_usd']:>9.4f} {r['used_pct']:>5.1f}% {forecast}"
        )
    return 0


async def _schedule(
    args: argparse.Namespace, settings: Settings, config: Config, path: Path
) -> int:
    from core.agents.assurance import PROBLEMS, schedule_lines, summary

    agent = config.agent(args.agent) if args.agent else None
    if args.agent and (agent is None or not agent.schedule):
        print(f"openclaw schedule: no scheduled agent named {args.agent!r}", file=sys.stderr)
        return 2
    period, since = args.since
    app = await _with_app(args, settings, config)
    try:
        now = app.scheduler.clock()
        fires = await app.scheduler.watch.fires(now - since, now)
    finally:
        await app.close()
    if agent is not None:
        fires = [f for f in fires if f.agent == agent.name]
    if not fires:
        print(f"no fires expected over the last {period}")
        return 0
    print(f"Schedule over the last {period}: {summary(fires)}")
    for line in schedule_lines(fires, config.reports.timezone):
        print(line)
    # a script (or a monitor) can tell: 1 when a fire failed, was missed or made no run
    return 1 if any(f.outcome in PROBLEMS for f in fires) else 0


async def _tune(args: argparse.Namespace, settings: Settings, config: Config, path: Path) -> int:
    from core.engine.advisor import tune_lines
    from core.engine.tuning import tune_report

    period, since = args.since
    if args.apply is not None and args.config is None and path != settings.openclaw_config:
        # the fallback when there is no openclaw.toml: the shipped example is not the
        # operator's file to edit
        print(
            f"openclaw tune: no openclaw.toml here ({path} was loaded instead); copy it to"
            " openclaw.toml (or name the file with --config) before --apply",
            file=sys.stderr,
        )
        return 2
    if args.apply is not None and args.apply not in config.tasks:
        known = ", ".join(sorted(config.tasks)) or "none"
        print(f"openclaw tune: no task {args.apply!r} in [tasks] (tasks: {known})", file=sys.stderr)
        return 2
    app = await _with_app(args, settings, config)
    try:
        report = await tune_report(app.ledger, since)
        today = app.ledger.clock().date()
    finally:
        await app.close()
    if args.apply is None:
        print("\n".join(tune_lines(report, period)))
        return 0
    suggestion = report.suggestion(args.apply)
    if suggestion is None:
        print(
            f"openclaw tune: no suggestion for {args.apply!r} over the last {period}: nothing"
            " to apply (run `openclaw tune` for its numbers)",
            file=sys.stderr,
        )
        return 1
    return await asyncio.to_thread(_apply, path, suggestion, today)


def _apply(path: Path, suggestion: Suggestion, today: date) -> int:
    """Write the suggestion's tier into ``path``, with the evidence and ``today`` above it."""
    from core.config.edit import set_task_tier, write_validated

    s = suggestion
    note = f"openclaw tune {today.isoformat()}: {s.title}\n{s.evidence}\n{s.projection.line()}"
    if s.trial:
        note += f"\n{s.trial}"
    try:
        text = set_task_tier(path.read_text(encoding="utf-8"), s.task, s.to_tier, note)
    except KeyError:
        print(f"openclaw tune: {path} has no [tasks] entry {s.task!r} to change", file=sys.stderr)
        return 1
    try:
        write_validated(path, text)
    except ConfigError as e:
        print(
            f"openclaw tune: the changed file would not load; {path} is unchanged", file=sys.stderr
        )
        _print_config_error(e, path)
        return EX_CONFIG
    print(f"{path}: tasks.{s.task} tier {s.from_tier} → {s.to_tier} ({s.evidence})")
    print("restart serve to route by it")
    return 0


_COMMANDS = {
    "serve": _serve,
    "ask": _ask,
    "route": _route,
    "usage": _usage,
    "doctor": _doctor,
    "agents": _agents,
    "run": _run_agent,
    "runs": _runs,
    "run-show": _run_show,
    "memory": _memory,
    "status": _status,
    "budget": _budget,
    "schedule": _schedule,
    "tune": _tune,
    "drill": _drill,
    "drills": _drills,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
