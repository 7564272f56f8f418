"""The console in a real headless Chromium: log in, walk every page, act, log out.

One browser and one gateway for the module (kept on one xdist worker by its group). Each
test makes the runs it looks at and logs in when it is not, so any one of them can run
alone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.agents.runs import Run, Trigger
from core.console.keys import COOKIE
from tests.console.conftest import TOKEN, XSS, Served, login, require_browser, shot

WAIT_S = 20.0  # a bound for the browser to see what it waits for, not a pace

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("console-browser")]


@pytest.fixture(autouse=True)
def _browser_here() -> None:
    require_browser()


def _by() -> Any:
    from selenium.webdriver.common.by import By

    return By


def wait(driver: Any, condition: Any) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the live stream replaces the run's HTML under the test's feet: look again
    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(driver, WAIT_S, 0.1, ignored).until(condition)


def text_of(driver: Any, element_id: str) -> str:
    return str(driver.find_element(_by().ID, element_id).text)


def logged_in(served: Served, driver: Any) -> None:
    if driver.get_cookie(COOKIE) is None:
        login(driver, served.url)
        wait(driver, lambda d: d.get_cookie(COOKIE) is not None)


def finished_run(served: Served, agent: str) -> Run:
    """A run of ``agent``, started through the facade and waited for."""

    async def run() -> Run:
        runner = served.app.facade.runner
        return await runner.wait(await runner.start(agent, Trigger.API))

    return served.call(run())


def cookie_of(driver: Any) -> str:
    found = driver.get_cookie(COOKIE)
    assert found is not None, "no console cookie in the browser"
    assert found["httpOnly"] is True and found["sameSite"] == "Strict"
    return str(found["value"])


def test_everything_is_refused_before_login(served: Served, browser: Any) -> None:
    browser.delete_all_cookies()
    browser.get(f"{served.url}/ui/runs")
    wait(browser, lambda d: "/ui/login" in d.current_url)
    shot(browser, "login")
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.post("/ui/agents/hello/run", data={"csrf": "x"}).status_code == 401
        events = http.get("/ui/runs/1/events", headers={"Accept": "text/event-stream"})
        assert events.status_code == 401
        # the API's bearer token works as before, and is needed as before
        assert http.get("/api/status").status_code == 401
        ok = http.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "tiers" in ok.json()
        # a bearer token is no console login
        page = http.get("/ui/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 303 and "/ui/login" in page.headers["Location"]


def test_a_wrong_token_is_refused(served: Served, browser: Any) -> None:
    browser.delete_all_cookies()
    login(browser, served.url, token="not-the-token")
    wait(browser, lambda d: "wrong token" in text_of(d, "error"))
    assert browser.get_cookie(COOKIE) is None


def test_login_lands_on_the_overview(served: Served, browser: Any) -> None:
    browser.delete_all_cookies()
    browser.get(f"{served.url}/ui/agents")  # login sends you back where you were going
    login_url = browser.current_url
    assert "next=/ui/agents" in login_url or "next=%2Fui%2Fagents" in login_url
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: d.current_url.endswith("/ui/agents"))
    cookie_of(browser)
    browser.get(f"{served.url}/ui/")
    models = text_of(browser, "models")
    assert "local/qwen3:14b" in models and "closed" in models
    assert "opus/claude-opus" in text_of(browser, "tiers")
    assert text_of(browser, "queues")
    shot(browser, "overview")
    cookies = {COOKIE: cookie_of(browser)}
    with httpx.Client(base_url=served.url, timeout=10, cookies=cookies) as http:
        resp = http.get("/ui/")
    assert resp.status_code == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
    assert resp.headers["Server-Timing"].startswith("app;dur=")


def test_run_now_and_the_run_page_updates_live(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/agents")
    shot(browser, "agents")
    browser.find_element(_by().ID, "run-slow").click()
    wait(browser, lambda d: "/ui/runs/" in d.current_url)
    # the answer takes 2 s at the fake: the page shows the run before it is done
    browser.execute_script("window.notReloaded = true;")
    status = browser.execute_script("return document.getElementById('run').dataset.status")
    assert status in ("queued", "running"), "done before its page opened: nothing to follow"
    shot(browser, "run-running")
    wait(browser, lambda d: text_of(d, "run-status") == "ok")
    assert text_of(browser, "run-output") == "slow answer arrived"
    assert browser.execute_script("return window.notReloaded === true;")  # no reload
    assert "local/qwen3:14b" in text_of(browser, "attempts")
    assert "log" in text_of(browser, "deliveries")
    shot(browser, "run")


def test_a_model_answer_with_script_shows_as_text(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/agents")
    browser.find_element(_by().ID, "run-xss").click()
    wait(browser, lambda d: "/ui/runs/" in d.current_url)
    wait(browser, lambda d: text_of(d, "run-status") == "ok")
    assert text_of(browser, "run-output") == XSS
    output = browser.find_element(_by().ID, "run-output")
    assert output.find_elements(_by().TAG_NAME, "b") == []
    assert output.find_elements(_by().TAG_NAME, "script") == []
    assert browser.execute_script("return window.pwned === undefined;")
    browser.refresh()  # rendered by the page itself this time, not the live stream
    assert text_of(browser, "run-output") == XSS
    assert browser.execute_script("return window.pwned === undefined;")
    shot(browser, "run-escaped")


def test_runs_list_filters_and_rerun(served: Served, browser: Any) -> None:
    finished_run(served, "hello")
    finished_run(served, "xss")
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/runs")
    listed = text_of(browser, "runs")
    assert "hello" in listed and "xss" in listed
    shot(browser, "runs")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(_by().ID, "filter-agent")).select_by_value("hello")
    browser.find_element(_by().ID, "filter").click()
    wait(browser, lambda d: "agent=hello" in d.current_url and "xss" not in text_of(d, "runs"))
    assert "hello" in text_of(browser, "runs")
    link = browser.find_element(_by().CSS_SELECTOR, "#runs a[href^='/ui/runs/']")
    old = link.get_attribute("href").rsplit("/", 1)[1]
    link.click()
    wait(browser, lambda d: d.current_url.endswith(f"/ui/runs/{old}"))
    browser.find_element(_by().ID, "rerun").click()
    wait(browser, lambda d: not d.current_url.endswith(f"/ui/runs/{old}"))
    wait(browser, lambda d: text_of(d, "run-status") == "ok")
    assert f"#{old}" in text_of(browser, "run-facts")  # linked to the run it repeats


def test_disable_and_enable_an_agent(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/agents")
    browser.find_element(_by().ID, "disable-hello").click()
    wait(browser, lambda d: "hello disabled" in text_of(d, "note"))
    assert "disabled from the console" in text_of(browser, "agent-hello")
    browser.find_element(_by().ID, "enable-hello").click()
    wait(browser, lambda d: "hello enabled" in text_of(d, "note"))
    assert browser.find_elements(_by().ID, "disable-hello")


def test_agent_page(served: Served, browser: Any) -> None:
    run = finished_run(served, "hello")
    served.call(served.app.facade.memory.put("hello", "last-topic", "quarterly <figures>"))
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/agents/hello")
    assert "quarterly <figures>" in text_of(browser, "memory")
    assert "say hello" in text_of(browser, "agent-config")
    assert f"#{run.id}" in text_of(browser, "agent-runs")
    shot(browser, "agent")


def test_approve_a_pending_approval(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/agents")
    browser.find_element(_by().ID, "run-boss").click()
    wait(browser, lambda d: "/ui/runs/" in d.current_url)
    run_url = browser.current_url
    wait(browser, lambda d: served.copies)  # the run asks for tier 3
    aid = served.copies[-1]
    browser.get(f"{served.url}/ui/approvals")
    assert "tier 3" in text_of(browser, f"approval-{aid}")
    shot(browser, "approvals")
    browser.find_element(_by().ID, f"approve-{aid}").click()
    wait(browser, lambda d: "approved" in text_of(d, "note"))
    assert not browser.find_elements(_by().ID, f"approval-{aid}")
    # the first decision won: a second one is told so
    taken, text = served.call(served.app.facade.approvals.resolve(aid, False, "telegram"))
    assert not taken and "already approved by console" in text
    browser.get(run_url)
    wait(browser, lambda d: text_of(d, "run-status") == "ok")
    assert "opus/claude-opus" in text_of(browser, "attempts")


def _bars(driver: Any, figure_id: str) -> int:
    figure = driver.find_element(_by().ID, figure_id)
    svg = figure.find_element(_by().TAG_NAME, "svg")
    assert svg.size["width"] > 0 and svg.size["height"] > 0
    return len(svg.find_elements(_by().TAG_NAME, "rect"))


def test_usage_charts_render(served: Served, browser: Any) -> None:
    finished_run(served, "hello")  # tier 0: free
    with httpx.Client(base_url=served.url, timeout=10) as http:  # tier 2: it costs something
        paid = http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"model": "tier:2", "messages": [{"role": "user", "content": "a paid one"}]},
        )
    assert paid.status_code == 200, paid.text
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/usage")
    assert _bars(browser, "chart-share") >= 3  # today's column (tiers 0 and 2), the target's
    assert _bars(browser, "chart-cost") >= 1
    assert _bars(browser, "chart-saving") >= 2
    assert "answered" in text_of(browser, "usage-summary")
    shot(browser, "usage")


def test_budgets_page(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/budgets")
    assert _bars(browser, "chart-budgets") >= 4  # two caps: the bar and the forecast of each
    titles = browser.find_elements(_by().CSS_SELECTOR, "#chart-budgets rect title")
    assert any("spent $" in t.get_attribute("textContent") for t in titles)
    assert "total" in text_of(browser, "caps").lower()
    shot(browser, "budgets")


def test_schedule_timeline(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/schedule")
    assert _bars(browser, "chart-schedule") >= 1  # the hourly agent's lane, and its fires
    assert "hourly" in browser.find_element(_by().ID, "chart-schedule").text
    assert "expected" in text_of(browser, "schedule-summary")
    shot(browser, "schedule")


async def _settle_by_hand(served: Served) -> tuple[int, int]:
    """Two of the runs' log deliveries, as a worker would have left them: one failed for
    good, one sent without a confirmation (no delivery worker runs here)."""
    rows = await served.app.store.fetchall(
        "SELECT id FROM outbox WHERE status = 'pending' ORDER BY id DESC LIMIT 2"
    )
    failed, unknown = int(rows[0][0]), int(rows[1][0])
    async with served.app.store.transaction() as tx:
        await tx.execute(
            "UPDATE outbox SET status = 'failed', last_error = ? WHERE id = ?",
            ("HTTP 400: <b>chat not found</b>", failed),
        )
        await tx.execute("UPDATE outbox SET status = 'unknown' WHERE id = ?", (unknown,))
    return failed, unknown


def test_deliveries_resend_and_mark_delivered(served: Served, browser: Any) -> None:
    finished_run(served, "hello")  # each puts one log row in the outbox
    finished_run(served, "hello")
    failed, unknown = served.call(_settle_by_hand(served))
    logged_in(served, browser)
    browser.get(f"{served.url}/ui/deliveries")
    assert "<b>chat not found</b>" in text_of(browser, f"delivery-{failed}")
    assert not browser.find_elements(_by().ID, f"delivered-{failed}")  # failed: resend only
    shot(browser, "deliveries")
    browser.find_element(_by().ID, f"delivered-{unknown}").click()
    wait(browser, lambda d: f"#{unknown} marked delivered" in text_of(d, "note"))
    browser.find_element(_by().ID, f"resend-{failed}").click()
    wait(browser, lambda d: f"#{failed} resent" in text_of(d, "note"))
    assert not browser.find_elements(_by().ID, f"delivery-{failed}")
    assert not browser.find_elements(_by().ID, f"delivery-{unknown}")
    rows = served.call(
        served.app.store.fetchall(
            "SELECT id, status FROM outbox WHERE id IN (?, ?)", (failed, unknown)
        )
    )
    assert {int(r[0]): r[1] for r in rows} == {failed: "pending", unknown: "delivered"}


PAGES = (
    "/ui/",
    "/ui/agents",
    "/ui/agents/hello",
    "/ui/runs",
    "/ui/approvals",
    "/ui/usage",
    "/ui/budgets",
    "/ui/schedule",
    "/ui/deliveries",
)


def test_every_page_loads_without_a_console_error(served: Served, browser: Any) -> None:
    """Nothing on any page breaks the CSP (an inline script or style would be reported)
    and nothing fails to load."""
    run = finished_run(served, "hello")
    logged_in(served, browser)
    browser.get_log("browser")  # start from an empty log
    for page in (*PAGES, f"/ui/runs/{run.id}"):
        browser.get(served.url + page)
        assert browser.find_element(_by().TAG_NAME, "h1").text, page
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []


def test_a_post_without_csrf_is_refused(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    cookie = cookie_of(browser)
    with httpx.Client(base_url=served.url, timeout=10, cookies={COOKIE: cookie}) as http:
        before = len(served.call(served.app.facade.runs.recent("hello", 100)))
        refused = http.post("/ui/agents/hello/run", data={})
        assert refused.status_code == 403 and "CSRF" in refused.text
        wrong = http.post("/ui/agents/hello/run", data={"csrf": "0" * 64})
        assert wrong.status_code == 403
        assert len(served.call(served.app.facade.runs.recent("hello", 100))) == before


def test_logout_and_be_refused(served: Served, browser: Any) -> None:
    logged_in(served, browser)
    cookie = cookie_of(browser)
    browser.get(f"{served.url}/ui/")
    browser.find_element(_by().ID, "logout").click()
    wait(browser, lambda d: "/ui/login" in d.current_url)
    assert browser.get_cookie(COOKIE) is None
    browser.get(f"{served.url}/ui/runs")
    wait(browser, lambda d: "/ui/login" in d.current_url)
    with httpx.Client(base_url=served.url, timeout=10, cookies={COOKIE: cookie}) as http:
        replayed = http.post("/ui/agents/hello/run", data={"csrf": "x"})
    assert replayed.status_code == 401  # the old cookie is dead, not only forgotten
