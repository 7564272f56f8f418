"""`openclaw service`: the rendered plist and unit, and the launchctl/systemctl calls, against a
fake runner and a home folder under tmp_path."""

from __future__ import annotations

import plistlib
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.ops.service import (
    LABEL,
    PLIST_TEMPLATE,
    TEMPLATE_DIR,
    Completed,
    ServicePaths,
    parse_launchctl_print,
    parse_systemctl_show,
    render_plist,
    render_unit,
    run_command,
    service_command,
)

UID = 501
SECRETS = {
    "OPENCLAW_GATEWAY_TOKEN": "gw-secret-7f3a9c",
    "TELEGRAM_BOT_TOKEN": "123456:tg-secret-b41e",
    "DEEPSEEK_API_KEY": "sk-ds-secret-90d2",
}

LAUNCHCTL_RUNNING = """\
gui/501/ai.openclaw.gateway = {
	active count = 1
	path = /Users/me/Library/LaunchAgents/ai.openclaw.gateway.plist
	type = LaunchAgent
	state = running

	program = /Users/me/openclaw/.venv/bin/openclaw
	arguments = {
		/Users/me/openclaw/.venv/bin/openclaw
		serve
	}

	runs = 3
	pid = 4242
	immediate reason = speculative
	last exit code = 1

	endpoints = {
		"com.example.port" = {
			port = 0x1234
			state = active
		}
	}
}
"""

LAUNCHCTL_EXITED = """\
gui/501/ai.openclaw.gateway = {
	state = not running
	runs = 1
	last exit code = 78: EX_CONFIG
}
"""


@dataclass
class FakeRunner:
    """Answers each command by its longest matching prefix (else exit 0) and records it."""

    answers: dict[tuple[str, ...], Completed] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        matches = [p for p in self.answers if tuple(argv[: len(p)]) == p]
        return self.answers[max(matches, key=len)] if matches else Completed(0)


@dataclass
class Project:
    root: Path
    home: Path
    venv_bin: Path

    def run(
        self,
        action: str,
        runner: FakeRunner,
        *,
        systemd: bool = False,
        dry_run: bool = False,
        platform: str = "darwin",
    ) -> int:
        return service_command(
            action,
            systemd=systemd,
            dry_run=dry_run,
            config_path=Path("openclaw.toml"),  # relative, as settings give it
            db_path=Path("data/openclaw.db"),
            env_file=Path(".env"),
            venv_bin=Path(".venv/bin"),
            runner=runner,
            home=self.home,
            platform=platform,
            uid=UID,
        )

    @property
    def plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / "ai.openclaw.gateway.plist"

    @property
    def unit(self) -> Path:
        return self.home / ".config" / "systemd" / "user" / "openclaw.service"

    @property
    def logs(self) -> Path:
        return self.home / "Library" / "Logs" / "openclaw"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A checkout with a config, a .env full of secrets and a venv; the cwd is its root."""
    root = tmp_path / "openclaw"
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "openclaw").write_text("#!/bin/sh\n")
    (root / "openclaw.toml").write_text("[gateway]\n")
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(root)
    home = tmp_path / "home"
    home.mkdir()
    return Project(root=root, home=home, venv_bin=venv_bin)


def _paths(project: Project) -> ServicePaths:
    return ServicePaths.resolve(
        config_path=project.root / "openclaw.toml",
        db_path=project.root / "data" / "openclaw.db",
        env_file=project.root / ".env",
        venv_bin=project.venv_bin,
    )


def _no_secrets(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text


# --- launchd: the plist ---------------------------------------------------------------


def test_the_template_is_a_plist_with_the_same_keys_as_the_rendered_one(project: Project) -> None:
    template = plistlib.loads((TEMPLATE_DIR / "ai.openclaw.gateway.plist").read_bytes())
    rendered = plistlib.loads(
        render_plist(_paths(project), project.logs, TEMPLATE_DIR / PLIST_TEMPLATE)
    )
    assert list(rendered) == list(template)
    assert rendered["EnvironmentVariables"].keys() == template["EnvironmentVariables"].keys()
    assert template["Label"] == LABEL
    fixed = [key for key, value in template.items() if "${" not in repr(value)]
    assert {k: rendered[k] for k in fixed} == {k: template[k] for k in fixed}
    assert "${" not in repr(rendered)


def test_install_writes_the_plist_for_this_machine(project: Project) -> None:
    runner = FakeRunner({("launchctl", "print"): Completed(113, "", "Could not find service")})

    assert project.run("install", runner) == 0

    root = project.root
    assert plistlib.loads(project.plist.read_bytes()) == {
        "Label": "ai.openclaw.gateway",
        "ProgramArguments": [str(root / ".venv" / "bin" / "openclaw"), "serve"],
        "WorkingDirectory": str(root),
        "EnvironmentVariables": {
            "PATH": f"{root / '.venv' / 'bin'}:/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin",
            "OPENCLAW_CONFIG": str(root / "openclaw.toml"),
            "OPENCLAW_DB": str(root / "data" / "openclaw.db"),
        },
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        "ExitTimeOut": 30,
        "StandardOutPath": str(project.logs / "openclaw.out.log"),
        "StandardErrorPath": str(project.logs / "openclaw.err.log"),
        "Umask": 0o077,
        "ProcessType": "Background",
    }
    assert root.is_absolute()
    assert stat.S_IMODE(project.plist.stat().st_mode) == 0o644
    assert project.logs.is_dir()
    _no_secrets(project.plist.read_text())


def test_the_plist_escapes_what_xml_cannot_hold_raw(project: Project, tmp_path: Path) -> None:
    odd = tmp_path / "a & <b> 'c' %d $e"
    odd.mkdir()
    (odd / "openclaw.toml").write_text("")
    paths = ServicePaths.resolve(
        config_path=odd / "openclaw.toml",
        db_path=odd / "db",
        env_file=odd / ".env",
        venv_bin=project.venv_bin,
    )
    rendered = plistlib.loads(render_plist(paths, project.logs, TEMPLATE_DIR / PLIST_TEMPLATE))
    assert rendered["WorkingDirectory"] == str(odd)
    assert rendered["EnvironmentVariables"]["OPENCLAW_CONFIG"] == str(odd / "openclaw.toml")


# --- launchd: the commands ------------------------------------------------------------


def test_install_bootstraps_when_not_loaded(project: Project) -> None:
    runner = FakeRunner({("launchctl", "print"): Completed(113)})
    assert project.run("install", runner) == 0
    assert runner.calls == [
        ["launchctl", "print", "gui/501/ai.openclaw.gateway"],
        ["launchctl", "bootstrap", "gui/501", str(project.plist)],
    ]


def test_install_boots_out_a_loaded_agent_first(project: Project) -> None:
    runner = FakeRunner()  # print answers 0: loaded
    assert project.run("install", runner) == 0
    assert runner.calls == [
        ["launchctl", "print", "gui/501/ai.openclaw.gateway"],
        ["launchctl", "bootout", "gui/501/ai.openclaw.gateway"],
        ["launchctl", "bootstrap", "gui/501", str(project.plist)],
    ]


def test_a_failed_bootstrap_says_how_to_check_the_plist(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = FakeRunner(
        {
            ("launchctl", "print"): Completed(113),
            ("launchctl", "bootstrap"): Completed(5, "", "Bootstrap failed: 5: Input/output error"),
        }
    )
    assert project.run("install", runner) == 1
    err = capsys.readouterr().err
    assert "Input/output error" in err
    assert f"plutil -lint {project.plist}" in err


def test_install_without_the_venv_script_says_how_to_fix_it(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.venv_bin / "openclaw").unlink()
    runner = FakeRunner()
    assert project.run("install", runner) == 1
    assert ".venv/bin/openclaw service install" in capsys.readouterr().err
    assert runner.calls == []
    assert not project.plist.exists()


def test_dry_run_prints_the_plist_and_commands_and_changes_nothing(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = FakeRunner()
    assert project.run("install", runner, dry_run=True, platform="linux") == 0

    out = capsys.readouterr().out
    assert runner.calls == []
    assert list(project.home.iterdir()) == []
    assert "<key>ProgramArguments</key>" in out
    assert str(project.root / ".venv" / "bin" / "openclaw") in out
    assert "launchctl bootout gui/501/ai.openclaw.gateway  # only if already loaded" in out
    assert f"launchctl bootstrap gui/501 {project.plist}" in out
    _no_secrets(out)


@pytest.mark.parametrize("action", ["install", "uninstall", "status"])
def test_launchd_on_linux_points_to_systemd(
    project: Project, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    runner = FakeRunner()
    assert project.run(action, runner, platform="linux") == 2
    assert f"`openclaw service {action} --systemd`" in capsys.readouterr().err
    assert runner.calls == []
    assert list(project.home.iterdir()) == []


def test_uninstall_boots_out_and_removes_the_plist(project: Project) -> None:
    project.run("install", FakeRunner())
    runner = FakeRunner()
    assert project.run("uninstall", runner) == 0
    assert runner.calls == [["launchctl", "bootout", "gui/501/ai.openclaw.gateway"]]
    assert not project.plist.exists()
    assert project.logs.is_dir()  # logs are kept


def test_uninstall_of_nothing_is_fine(project: Project) -> None:
    runner = FakeRunner({("launchctl", "bootout"): Completed(3, "", "No such process")})
    assert project.run("uninstall", runner) == 0


def test_status_of_a_running_agent(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner({("launchctl", "print"): Completed(0, LAUNCHCTL_RUNNING)})
    assert project.run("status", runner) == 0
    assert runner.calls == [["launchctl", "print", "gui/501/ai.openclaw.gateway"]]
    out = capsys.readouterr().out
    assert "ai.openclaw.gateway: loaded\nstate: running\npid: 4242\nlast exit code: 1\n" in out


def test_status_of_an_exited_agent(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner({("launchctl", "print"): Completed(0, LAUNCHCTL_EXITED)})
    assert project.run("status", runner) == 3
    out = capsys.readouterr().out
    assert "state: not running\npid: -\nlast exit code: 78: EX_CONFIG\n" in out


def test_status_when_not_loaded(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner({("launchctl", "print"): Completed(113, "", "Could not find service")})
    assert project.run("status", runner) == 3
    assert capsys.readouterr().out == "ai.openclaw.gateway: not loaded\n"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (LAUNCHCTL_RUNNING, {"state": "running", "pid": "4242", "last exit code": "1"}),
        (LAUNCHCTL_EXITED, {"state": "not running", "last exit code": "78: EX_CONFIG"}),
        ("\tlast exit code = (never exited)\n", {"last exit code": "(never exited)"}),
        ("", {}),
    ],
)
def test_parse_launchctl_print(output: str, expected: dict[str, str]) -> None:
    assert parse_launchctl_print(output) == expected


# --- systemd --------------------------------------------------------------------------


def test_install_writes_the_unit_and_enables_it(project: Project) -> None:
    runner = FakeRunner()
    assert project.run("install", runner, systemd=True, platform="linux") == 0

    root = project.root
    lines = project.unit.read_text().splitlines()
    sections = [line for line in lines if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    settings = [line for line in lines if line and not line.startswith(("#", "["))]
    assert settings == [
        "Description=OpenClaw gateway (openclaw serve)",
        "After=network-online.target",
        "Type=simple",
        f"WorkingDirectory={root}",
        f"ExecStart={root}/.venv/bin/openclaw serve",
        f"Environment=OPENCLAW_CONFIG={root}/openclaw.toml",
        f"Environment=OPENCLAW_DB={root}/data/openclaw.db",
        f"EnvironmentFile=-{root}/.env",
        "Restart=on-failure",
        "RestartSec=5",
        "RestartPreventExitStatus=78",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "UMask=0077",
        "WantedBy=default.target",
    ]
    assert stat.S_IMODE(project.unit.stat().st_mode) == 0o644
    assert runner.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "openclaw.service"],
    ]
    _no_secrets(project.unit.read_text())


def test_the_unit_quotes_and_escapes_odd_paths(tmp_path: Path) -> None:
    # what systemd-analyze verify accepts: systemd refuses quotes in an executable's name
    venv = tmp_path / "my venv 100% $HOME" / "bin"
    odd = tmp_path / 'my "bots" 100%'
    paths = ServicePaths.resolve(
        config_path=odd / "openclaw.toml",
        db_path=odd / "db",
        env_file=odd / ".env",
        venv_bin=venv,
    )
    text = render_unit(paths, TEMPLATE_DIR / "openclaw.service")
    escaped = str(odd).replace("%", "%%")
    quoted = escaped.replace('"', '\\"')
    assert f'ExecStart="{tmp_path}/my venv 100%% $HOME/bin/openclaw" serve\n' in text
    assert f'Environment="OPENCLAW_CONFIG={quoted}/openclaw.toml"\n' in text
    assert f'Environment="OPENCLAW_DB={quoted}/db"\n' in text
    assert f"WorkingDirectory={escaped}\n" in text
    assert f"EnvironmentFile=-{escaped}/.env\n" in text


def test_systemd_cannot_run_a_venv_whose_path_holds_a_quote(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tmp_path / "bob's" / "bin"
    venv.mkdir(parents=True)
    (venv / "openclaw").write_text("")
    code = service_command(
        "install",
        systemd=True,
        dry_run=True,
        config_path=project.root / "openclaw.toml",
        db_path=project.root / "db",
        env_file=project.root / ".env",
        venv_bin=venv,
        runner=FakeRunner(),
        home=project.home,
        uid=UID,
    )
    assert code == 1
    assert "move the virtualenv" in capsys.readouterr().err


def test_a_failed_enable_points_to_the_journal(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = FakeRunner({("systemctl", "--user", "enable"): Completed(1, "", "Failed to start")})
    assert project.run("install", runner, systemd=True, platform="linux") == 1
    assert "journalctl --user -u openclaw.service" in capsys.readouterr().err


def test_systemd_dry_run_prints_the_unit_and_commands(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = FakeRunner()
    assert project.run("install", runner, systemd=True, dry_run=True, platform="darwin") == 0
    out = capsys.readouterr().out
    assert runner.calls == []
    assert list(project.home.iterdir()) == []
    assert f"ExecStart={project.root}/.venv/bin/openclaw serve" in out
    assert out.endswith(
        "# would run:\n"
        "systemctl --user daemon-reload\n"
        "systemctl --user enable --now openclaw.service\n"
    )
    _no_secrets(out)


def test_systemd_on_macos_points_to_launchd(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = FakeRunner()
    assert project.run("install", runner, systemd=True, platform="darwin") == 2
    assert "`openclaw service install` (launchd)" in capsys.readouterr().err
    assert runner.calls == []


def test_systemd_uninstall(project: Project) -> None:
    project.run("install", FakeRunner(), systemd=True, platform="linux")
    runner = FakeRunner()
    assert project.run("uninstall", runner, systemd=True, platform="linux") == 0
    assert runner.calls == [
        ["systemctl", "--user", "disable", "--now", "openclaw.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert not project.unit.exists()


@pytest.mark.parametrize(
    ("show", "code", "printed"),
    [
        (
            "ActiveState=active\nSubState=running\nMainPID=4242\nExecMainStatus=0\n",
            0,
            "openclaw.service: active (running)\npid: 4242\nlast exit status: 0\n",
        ),
        (
            "ActiveState=failed\nSubState=failed\nMainPID=0\nExecMainStatus=78\n",
            3,
            "openclaw.service: failed (failed)\npid: -\nlast exit status: 78\n",
        ),
    ],
)
def test_systemd_status(
    project: Project, capsys: pytest.CaptureFixture[str], show: str, code: int, printed: str
) -> None:
    project.run("install", FakeRunner(), systemd=True, platform="linux")
    capsys.readouterr()
    runner = FakeRunner({("systemctl", "--user", "show"): Completed(0, show)})
    assert project.run("status", runner, systemd=True, platform="linux") == code
    assert runner.calls == [
        [
            "systemctl",
            "--user",
            "show",
            "openclaw.service",
            "--property=ActiveState,SubState,MainPID,ExecMainStatus",
        ]
    ]
    assert capsys.readouterr().out.startswith(printed)


def test_systemd_status_says_when_the_unit_is_not_installed(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    show = "ActiveState=inactive\nSubState=dead\nMainPID=0\nExecMainStatus=0\n"
    runner = FakeRunner({("systemctl", "--user", "show"): Completed(0, show)})
    assert project.run("status", runner, systemd=True, platform="linux") == 3
    assert "openclaw.service: inactive (dead) (not installed)" in capsys.readouterr().out


def test_parse_systemctl_show() -> None:
    assert parse_systemctl_show("A=1\nB=x=y\n\n") == {"A": "1", "B": "x=y"}


def test_an_unknown_action_is_a_usage_error(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert project.run("restart", FakeRunner()) == 2
    assert "install, uninstall, status" in capsys.readouterr().err


def test_launchd_warns_when_the_env_file_is_not_where_serve_reads_it(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = service_command(
        "install",
        systemd=False,
        dry_run=True,
        config_path=project.root / "openclaw.toml",
        db_path=project.root / "db",
        env_file=tmp_path / "elsewhere.env",
        venv_bin=project.venv_bin,
        runner=FakeRunner(),
        home=project.home,
        uid=UID,
    )
    assert code == 0
    assert f"reads secrets from {project.root / '.env'}" in capsys.readouterr().out


def test_run_command_captures_output_and_never_raises() -> None:
    done = run_command([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"])
    assert (done.returncode, done.stdout) == (3, "hi\n")
    assert run_command(["openclaw-no-such-command"]).returncode == 127


def test_cli_service_dry_run_prints_the_plist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main

    cfg = tmp_path / "openclaw.toml"
    cfg.write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "never-in-a-plist-123")
    assert main(["--config", str(cfg), "service", "install", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "<string>ai.openclaw.gateway</string>" in out and str(cfg) in out
    assert "never-in-a-plist-123" not in out
    assert main(["--config", str(cfg), "service", "install", "--systemd", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "RestartPreventExitStatus=78" in out and "never-in-a-plist-123" not in out
