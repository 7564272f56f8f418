"""`openclaw service`: run `openclaw serve` as a launchd agent (macOS) or a systemd user unit
(Linux).

The templates in ``launchd/`` are the one source of truth for both files. The plist template
is itself a valid plist whose string values hold ``${name}`` placeholders: it is read with
plistlib, substituted value by value, and written back with plistlib, so the XML escaping is
plistlib's. The unit template is text; each value is escaped for systemd before substitution.

Every launchctl/systemctl call goes through an injected ``Runner`` and every path hangs off an
injected ``home``, so tests never touch the real service manager or home folder.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from xml.parsers.expat import ExpatError

from core.errors import OpenClawError

LABEL = "ai.openclaw.gateway"
UNIT = "openclaw.service"
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "launchd"
PLIST_TEMPLATE = f"{LABEL}.plist"
UNIT_TEMPLATE = UNIT
ACTIONS = ("install", "uninstall", "status")
EX_USAGE = 2  # wrong platform or unknown action
EX_NOT_RUNNING = 3  # `status`: not loaded or not running (LSB's "program is not running")
COMMAND_TIMEOUT_S = 60.0


class ServiceError(OpenClawError):
    """A service operation could not be done; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Completed:
    """What a command left: its exit code and output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


Runner = Callable[[Sequence[str]], Completed]


def run_command(argv: Sequence[str]) -> Completed:
    """Run ``argv`` and capture its output; a non-zero exit is returned, never raised."""
    try:
        p = subprocess.run(
            list(argv), capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S
        )
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{shlex.join(argv)}: no answer in {COMMAND_TIMEOUT_S:g}s")
    return Completed(p.returncode, p.stdout, p.stderr)


@dataclass(frozen=True, slots=True)
class ServicePaths:
    """The absolute paths a rendered service file names."""

    openclaw: Path
    venv_bin: Path
    working_dir: Path
    config: Path
    db: Path
    env_file: Path

    @classmethod
    def resolve(
        cls, *, config_path: Path, db_path: Path, env_file: Path, venv_bin: Path
    ) -> ServicePaths:
        """Make every path absolute (relative ones against the current folder) and refuse the
        ones no service file can hold."""
        config = config_path.resolve()
        # the folder, not the script: resolving a venv's python would leave the venv
        venv = venv_bin.resolve()
        paths = cls(
            openclaw=venv / "openclaw",
            venv_bin=venv,
            working_dir=config.parent,
            config=config,
            db=db_path.resolve(),
            env_file=env_file.resolve(),
        )
        for path in (paths.venv_bin, paths.config, paths.db, paths.env_file):
            if any(ord(c) < 0x20 or c == "\x7f" for c in str(path)):
                raise ServiceError(f"{str(path)!r} holds a control character: rename it")
        if ":" in str(venv):
            raise ServiceError(f"{venv} holds a ':', which would split PATH: move the virtualenv")
        return paths


def plist_path(home: Path) -> Path:
    """Where the launchd agent's plist goes."""
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def log_dir(home: Path) -> Path:
    """Where launchd writes serve's stdout and stderr."""
    return home / "Library" / "Logs" / "openclaw"


def unit_path(home: Path) -> Path:
    """Where the systemd user unit goes."""
    return home / ".config" / "systemd" / "user" / UNIT


def _substitute(value: object, values: dict[str, str]) -> object:
    if isinstance(value, str):
        return Template(value).substitute(values)
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    return value


def _read_template(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ServiceError(
            f"template {path} not found: run openclaw from its checkout (pip install -e .)"
        ) from None


def render_plist(paths: ServicePaths, logs: Path, template: Path) -> bytes:
    """The launchd plist for this machine: the template with its placeholders filled in."""
    values = {
        "openclaw": str(paths.openclaw),
        "venv_bin": str(paths.venv_bin),
        "working_dir": str(paths.working_dir),
        "config": str(paths.config),
        "db": str(paths.db),
        "log_dir": str(logs),
    }
    try:
        data = plistlib.loads(_read_template(template))
        if not isinstance(data, dict):
            raise ValueError("its root is not a dict")
        rendered = {key: _substitute(value, values) for key, value in data.items()}
    except (KeyError, ValueError, ExpatError) as e:  # InvalidFileException is a ValueError
        raise ServiceError(f"{template} is not a valid template ({e}): restore it") from None
    return plistlib.dumps(rendered, sort_keys=False)


def _systemd_word(value: str) -> str:
    """One word for a unit file: specifiers escaped, quoted where it holds a space, a quote or
    a backslash."""
    value = value.replace("%", "%%")
    if re.search(r"[\s\"'\\]", value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _systemd_executable(path: Path) -> str:
    # systemd refuses these in an executable's name however they are escaped (checked with
    # systemd-analyze verify); it leaves "$" there alone, so "$" needs no escape
    if re.search(r"[\"'\\]", str(path)):
        raise ServiceError(
            f"systemd cannot run {path}: its path holds a quote or a backslash; move the virtualenv"
        )
    return _systemd_word(str(path))


def render_unit(paths: ServicePaths, template: Path) -> str:
    """The systemd user unit for this machine: the template with its placeholders filled in."""
    values = {
        # WorkingDirectory= and EnvironmentFile= take the rest of the line: no quoting
        "working_dir": str(paths.working_dir).replace("%", "%%"),
        "env_file": str(paths.env_file).replace("%", "%%"),
        "openclaw": _systemd_executable(paths.openclaw),
        "config_env": _systemd_word(f"OPENCLAW_CONFIG={paths.config}"),
        "db_env": _systemd_word(f"OPENCLAW_DB={paths.db}"),
    }
    try:
        return Template(_read_template(template).decode()).substitute(values)
    except (KeyError, ValueError) as e:
        raise ServiceError(f"{template} is not a valid template ({e}): restore it") from None


_LAUNCHCTL_FIELD = re.compile(r"^\s*(state|pid|last exit code) = (.+?)\s*$", re.MULTILINE)


def parse_launchctl_print(output: str) -> dict[str, str]:
    """state, pid and last exit code from `launchctl print gui/<uid>/<label>`. The service's
    own fields come first; nested blocks may repeat a name, so the first one wins."""
    fields: dict[str, str] = {}
    for name, value in _LAUNCHCTL_FIELD.findall(output):
        fields.setdefault(name, value)
    return fields


def parse_systemctl_show(output: str) -> dict[str, str]:
    """The ``Key=value`` lines of `systemctl show` as a dict."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@dataclass(frozen=True, slots=True)
class _Context:
    home: Path
    runner: Runner
    dry_run: bool
    uid: int
    template_dir: Path

    def run(self, argv: Sequence[str]) -> Completed:
        return self.runner(argv)

    def run_checked(self, argv: Sequence[str], hint: str) -> Completed:
        done = self.runner(argv)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip() or "no output"
            raise ServiceError(
                f"`{shlex.join(argv)}` failed with exit code {done.returncode}: {said}; {hint}"
            )
        return done


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)  # explicit: the caller's umask may be 077
    os.replace(tmp, path)


def _print_dry_run(path: Path, text: str, commands: Sequence[str]) -> None:
    print(f"# would write {path} (mode 0644):")
    print(text, end="" if text.endswith("\n") else "\n")
    print("# would run:")
    for command in commands:
        print(command)


def _preflight(paths: ServicePaths, dry_run: bool, launchd: bool) -> None:
    problems = []
    if not paths.openclaw.is_file():
        problems.append(
            f"{paths.openclaw} does not exist: run the install from the virtualenv's openclaw"
            " (.venv/bin/openclaw service install)"
        )
    if not paths.config.is_file():
        problems.append(
            f"{paths.config} does not exist: create it (cp openclaw.example.toml openclaw.toml)"
            " or set OPENCLAW_CONFIG"
        )
    if launchd and paths.env_file != paths.working_dir / ".env":
        # launchd cannot load an env file: serve finds secrets in .env in its working folder
        print(
            f"warning: the service reads secrets from {paths.working_dir / '.env'},"
            f" not {paths.env_file}: move them there"
        )
    if problems and not dry_run:
        raise ServiceError("; ".join(problems))
    for problem in problems:
        print(f"warning: {problem}")


def _launchd(action: str, paths: ServicePaths, ctx: _Context) -> int:
    plist = plist_path(ctx.home)
    logs = log_dir(ctx.home)
    domain = f"gui/{ctx.uid}"
    target = f"{domain}/{LABEL}"
    if action == "install":
        _preflight(paths, ctx.dry_run, launchd=True)
        rendered = render_plist(paths, logs, ctx.template_dir / PLIST_TEMPLATE)
        bootout = ["launchctl", "bootout", target]
        bootstrap = ["launchctl", "bootstrap", domain, str(plist)]
        if ctx.dry_run:
            print(f"# would create {logs} (mode 0700)")
            _print_dry_run(
                plist,
                rendered.decode(),
                [f"{shlex.join(bootout)}  # only if already loaded", shlex.join(bootstrap)],
            )
            return 0
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(plist, rendered, 0o644)
        print(f"wrote {plist}")
        if ctx.run(["launchctl", "print", target]).returncode == 0:
            # bootstrap refuses a label that is already loaded
            ctx.run(bootout)
            print(f"unloaded the running {LABEL}")
        ctx.run_checked(bootstrap, f"check the plist with `plutil -lint {plist}`")
        print(f"loaded {LABEL}; logs in {logs}; check it with `openclaw service status`")
        return 0
    if action == "uninstall":
        bootout = ["launchctl", "bootout", target]
        if ctx.dry_run:
            print(shlex.join(bootout))
            print(f"# would remove {plist}")
            return 0
        if ctx.run(bootout).returncode == 0:
            print(f"unloaded {LABEL}")
        else:
            print(f"{LABEL} was not loaded")
        if plist.exists():
            plist.unlink()
            print(f"removed {plist}")
        print(f"logs kept in {logs}")
        return 0
    show = ["launchctl", "print", target]
    if ctx.dry_run:
        print(shlex.join(show))
        return 0
    done = ctx.run(show)
    if done.returncode != 0:
        print(f"{LABEL}: not loaded")
        return EX_NOT_RUNNING
    fields = parse_launchctl_print(done.stdout)
    state = fields.get("state", "unknown")
    print(f"{LABEL}: loaded")
    print(f"state: {state}")
    print(f"pid: {fields.get('pid', '-')}")
    print(f"last exit code: {fields.get('last exit code', '-')}")
    print(f"logs: {logs}")
    return 0 if state == "running" else EX_NOT_RUNNING


def _systemd(action: str, paths: ServicePaths, ctx: _Context) -> int:
    unit = unit_path(ctx.home)
    reload = ["systemctl", "--user", "daemon-reload"]
    journal = f"journalctl --user -u {UNIT}"
    if action == "install":
        _preflight(paths, ctx.dry_run, launchd=False)
        rendered = render_unit(paths, ctx.template_dir / UNIT_TEMPLATE)
        enable = ["systemctl", "--user", "enable", "--now", UNIT]
        if ctx.dry_run:
            _print_dry_run(unit, rendered, [shlex.join(reload), shlex.join(enable)])
            return 0
        _write(unit, rendered.encode(), 0o644)
        print(f"wrote {unit}")
        ctx.run_checked(reload, "is a user session running (`systemctl --user status`)?")
        ctx.run_checked(enable, f"see `{journal}`")
        print(f"enabled and started {UNIT}; logs: `{journal} -f`")
        # user units stop at logout unless the user lingers
        print("to keep it running after logout: `loginctl enable-linger $USER`")
        return 0
    if action == "uninstall":
        disable = ["systemctl", "--user", "disable", "--now", UNIT]
        if ctx.dry_run:
            print(shlex.join(disable))
            print(f"# would remove {unit}")
            print(shlex.join(reload))
            return 0
        if ctx.run(disable).returncode == 0:
            print(f"stopped and disabled {UNIT}")
        else:
            print(f"{UNIT} was not enabled")
        if unit.exists():
            unit.unlink()
            print(f"removed {unit}")
        ctx.run_checked(reload, "run it by hand")
        return 0
    show = [
        "systemctl",
        "--user",
        "show",
        UNIT,
        "--property=ActiveState,SubState,MainPID,ExecMainStatus",
    ]
    if ctx.dry_run:
        print(shlex.join(show))
        return 0
    fields = parse_systemctl_show(
        ctx.run_checked(show, "is a user session running (`systemctl --user status`)?").stdout
    )
    active = fields.get("ActiveState", "unknown")
    pid = fields.get("MainPID", "0")
    installed = "" if unit.exists() else " (not installed)"
    print(f"{UNIT}: {active} ({fields.get('SubState', 'unknown')}){installed}")
    print(f"pid: {pid if pid != '0' else '-'}")
    print(f"last exit status: {fields.get('ExecMainStatus', '-')}")
    print(f"logs: `{journal}`")
    return 0 if active == "active" else EX_NOT_RUNNING


def service_command(
    argv_action: str,
    *,
    systemd: bool,
    dry_run: bool,
    config_path: Path,
    db_path: Path,
    env_file: Path,
    venv_bin: Path,
    runner: Runner = run_command,
    home: Path | None = None,
    platform: str = sys.platform,
    uid: int | None = None,
    template_dir: Path = TEMPLATE_DIR,
) -> int:
    """`openclaw service install|uninstall|status [--systemd] [--dry-run]`: print what it did
    and return the exit code (0 done or running, 1 failed, 2 wrong platform or action,
    3 not loaded or not running). ``--dry-run`` prints the rendered file and the commands,
    and changes nothing."""
    if argv_action not in ACTIONS:
        print(
            f"openclaw service: unknown action {argv_action!r}: use {', '.join(ACTIONS)}",
            file=sys.stderr,
        )
        return EX_USAGE
    if not dry_run and systemd and not platform.startswith("linux"):
        print(
            f"openclaw service: systemd is Linux-only; on macOS run"
            f" `openclaw service {argv_action}` (launchd)",
            file=sys.stderr,
        )
        return EX_USAGE
    if not dry_run and not systemd and platform != "darwin":
        print(
            f"openclaw service: launchd is macOS-only; on Linux run"
            f" `openclaw service {argv_action} --systemd`",
            file=sys.stderr,
        )
        return EX_USAGE
    ctx = _Context(
        home=Path.home() if home is None else home,
        runner=runner,
        dry_run=dry_run,
        uid=os.getuid() if uid is None else uid,
        template_dir=template_dir,
    )
    try:
        paths = ServicePaths.resolve(
            config_path=config_path, db_path=db_path, env_file=env_file, venv_bin=venv_bin
        )
        return (_systemd if systemd else _launchd)(argv_action, paths, ctx)
    except (ServiceError, OSError) as e:
        print(f"openclaw service: {e}", file=sys.stderr)
        return 1
