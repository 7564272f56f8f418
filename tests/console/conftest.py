"""A real gateway (with the console) and a real headless Chromium driven by Selenium.

The gateway, its App and the fake LLM server run on an event loop of their own in a
thread, because Selenium blocks: a browser waiting for a page would otherwise stop the
very loop that serves it. Tests are plain functions; ``Served.call`` runs a coroutine on
the server's loop and returns its result.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.engine.approvals import ApprovalRecord, CopyShown
from core.gateway import Gateway
from tests.agents.conftest import set_seen
from tests.configs import pyramid, pyramid_urls
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).parent / "screenshots"  # gitignored: written by every run
TOKEN = "console-test-token-0123456789"
XSS = "<script>window.pwned = 1</script><b>not bold</b>"
T = TypeVar("T")

AGENTS = [
    {"name": "hello", "task": "chat", "message": "say hello", "deliver": ["log"]},
    # the fake answers SLOW after a pause: the run page is open while it runs
    {"name": "slow", "task": "chat", "message": "SLOW please", "deliver": ["log"]},
    {"name": "xss", "task": "chat", "message": "XSS please", "deliver": ["log"]},
    # never fired here (the scheduler is not started, but is recorded as having started
    # it long ago): its fires show as "no run"
    {"name": "hourly", "task": "chat", "message": "hourly", "schedule": "0 * * * *"},
    # tier 3: waits for an admin's approval
    {"name": "boss", "task": "strategy", "message": "plan the quarter", "deliver": ["log"]},
]


def answer(request: RecordedRequest) -> Reply:
    """The fake's answers, by what the prompt says."""
    text = request.last_user_text
    if "SLOW" in text:
        return Reply(text="slow answer arrived", delay_s=2.0)
    if "XSS" in text:
        return Reply(text=XSS)
    return Reply(text=f"answer to: {text}")


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        return "chromium and chromium-driver are missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def require_browser() -> None:
    """Skip without a browser, unless CI said it must be there (then fail)."""
    why = browser_missing()
    if why is None:
        return
    if os.environ.get("OPENCLAW_REQUIRE_BROWSER"):
        pytest.fail(f"OPENCLAW_REQUIRE_BROWSER is set but {why}")
    pytest.skip(why)


@dataclass
class Served:
    """The running gateway and its App, on the server thread's loop."""

    loop: asyncio.AbstractEventLoop
    app: App
    gateway: Gateway
    fake: FakeLLM
    copies: list[int] = field(default_factory=list)  # approvals "shown in Telegram"

    @property
    def url(self) -> str:
        return self.gateway.url

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


class ServerThread:
    """Starts the fake LLM, the App and the gateway on a loop in a thread; stops them."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="console-server")
        self.served: Served | None = None

    def start(self) -> Served:
        self.thread.start()
        fut: Future[Served] = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        self.served = fut.result(30)
        return self.served

    async def _start(self) -> Served:
        fake = await FakeLLM().start()
        try:
            return await self._start_app(fake)
        except BaseException:
            await fake.close()
            raise

    async def _start_app(self, fake: FakeLLM) -> Served:
        fake.default = answer
        doc = pyramid(
            pyramid_urls(fake.base_url),
            agents=AGENTS,
            approvals={"default": "deny", "timeout_s": 120},
            budgets={"total": {"day": 1.0}, "tier": {"3": {"month": 20.0}}},
        )
        for provider in doc["providers"].values():
            provider["timeout_s"] = 30  # the slow answer must not fail over
        cfg = parse_config(doc, warnings=[])
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        app = await App.open(cfg, settings, self.db)
        await set_seen(app, "hourly", None)
        served = Served(self.loop, app, None, fake)  # type: ignore[arg-type]

        async def notify(record: ApprovalRecord, shown: CopyShown) -> list[str]:
            served.copies.append(record.id)
            await shown(1, record.id)  # as the bot would: one admin was shown it
            return []

        async def close(record: ApprovalRecord, copies: Any = None) -> None:
            return None

        app.facade.set_approval_notifier(notify, close)
        gw = Gateway(app.facade, TOKEN, "127.0.0.1", 0)
        try:
            await gw.start()
        except BaseException:
            await app.close()
            raise
        served.gateway = gw
        return served

    def stop(self) -> None:
        if self.served is not None:
            s = self.served

            async def stop() -> None:
                await s.gateway.stop()
                await s.app.close()
                await s.fake.close()

            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = ServerThread(tmp_path_factory.mktemp("console") / "store.db")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module (Selenium Manager downloads nothing: both
    paths are given). Its profile and its temporary files (Chromium leaves a singleton
    socket folder in TMPDIR) live under pytest's temporary directory."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    scratch = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument(f"--user-data-dir={scratch / 'profile'}")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports land here
    env = {**os.environ, "TMPDIR": str(scratch)}
    service = Service(executable_path=str(CHROMEDRIVER), env=env)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    """A screenshot of the page as it is, under tests/console/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def login(driver: Any, url: str, token: str = TOKEN) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
