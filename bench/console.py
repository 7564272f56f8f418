"""Console page cost, measured in a real browser: server time and bytes per page.

Starts ``openclaw serve`` on a one-tier config against the loopback upstream, with a few
agents and a spend cap; runs the agents ``--runs`` times through the API so the pages have
rows and the charts data; then a headless Chromium (Debian's, through its chromedriver:
nothing is downloaded) logs in and loads every console page ``--loads`` times.

Per page (medians over the loads): the server's own time (its ``Server-Timing: app``
header, as the browser's Performance API reports it), the time to the document's last
byte and to ``load`` (navigation timing, loopback), the document's bytes on the wire
(``transferSize``; the page is never cached) and, on the first load only, the bytes of
the stylesheet and script (cached afterwards).

    .venv/bin/python bench/console.py [--runs 30] [--loads 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import (
    machine_info,
    one_tier_config,
    start_gateway,
    start_upstream,
    stop,
    write_results,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "console.json"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PAGES = [
    "/ui/",
    "/ui/agents",
    "/ui/agents/digest",
    "/ui/runs",
    "/ui/runs/1",
    "/ui/approvals",
    "/ui/usage",
    "/ui/budgets",
    "/ui/schedule",
    "/ui/deliveries",
]
EXTRA = """
[budgets]
total = { day = 5.0, month = 50.0 }

[[agents]]
name = "digest"
task = "chat"
message = "Summarize the day"
schedule = "0 * * * *"
deliver = ["log"]

[[agents]]
name = "check"
task = "chat"
message = "Check the queue"
schedule = "*/15 * * * *"
deliver = ["log"]
"""
NAV = """
const n = performance.getEntriesByType('navigation')[0];
const app = (n.serverTiming || []).find(t => t.name === 'app');
const res = performance.getEntriesByType('resource')
  .filter(r => r.name.includes('/ui/static/'))
  .reduce((a, r) => a + r.transferSize, 0);
return {server_ms: app ? app.duration : null, ttlb_ms: n.responseEnd - n.requestStart,
        load_ms: n.loadEventEnd - n.startTime, doc_bytes: n.transferSize,
        body_bytes: n.decodedBodySize, static_bytes: res};
"""


def api(port: int, token: str, path: str, method: str = "GET") -> bytes:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {token}"},
        data=b"" if method == "POST" else None,
    )
    with OPENER.open(req, timeout=30) as r:
        body: bytes = r.read()
        return body


def browser(scratch: Path) -> Any:
    """Debian's Chromium through its chromedriver; its profile and temporary files under
    ``scratch`` (removed with the run's temp dir)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={scratch / 'profile'}")
    env = {**os.environ, "TMPDIR": str(scratch)}
    return webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver", env=env), options=options
    )


def measure(port: int, token: str, loads: int, scratch: Path) -> dict[str, dict[str, float]]:
    from selenium.webdriver.common.by import By

    driver = browser(scratch)
    try:
        base = f"http://127.0.0.1:{port}"
        driver.get(f"{base}/ui/login")
        login_page = driver.execute_script(NAV)  # the first visit: the stylesheet comes too
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "login").click()
        out: dict[str, dict[str, float]] = {"/ui/login (first visit)": login_page}
        for page in PAGES:
            samples = []
            for _ in range(loads):
                driver.get(base + page)
                samples.append(driver.execute_script(NAV))
            # the stylesheet comes once, then from the cache: the first load's bytes count
            med = {k: statistics.median(float(s[k] or 0) for s in samples) for k in samples[0]}
            med["static_bytes"] = float(samples[0]["static_bytes"] or 0)
            out[page] = med
        return out
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="agent runs before measuring")
    parser.add_argument("--loads", type=int, default=5, help="loads of each page")
    parser.add_argument("--timeout-s", type=float, default=300)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout_s
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-console-"))
    token = secrets.token_urlsafe(24)
    upstream = gateway = None
    try:
        upstream, up_port = start_upstream(tmp, deadline)
        gateway, port = start_gateway(one_tier_config(up_port) + EXTRA, tmp, token, deadline)
        for i in range(args.runs):
            api(port, token, f"/api/agents/{'digest' if i % 2 else 'check'}/run", "POST")
        while b'"queued"' in api(port, token, "/api/runs?limit=500") or b'"running"' in api(
            port, token, "/api/runs?limit=500"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the runs did not finish in time")
            time.sleep(0.1)
        figures = measure(port, token, args.loads, tmp)
    finally:
        stop(gateway)
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    head = ("page", "server ms", "TTLB ms", "load ms", "doc B", "html B", "static B")
    print(f"{head[0]:<24}" + "".join(f" {h:>9}" for h in head[1:]))
    for page, m in figures.items():
        print(
            f"{page:<24} {m['server_ms'] or 0:>9.2f} {m['ttlb_ms']:>9.1f} {m['load_ms']:>9.1f}"
            f" {m['doc_bytes']:>9.0f} {m['body_bytes']:>9.0f} {m['static_bytes']:>9.0f}"
        )
    write_results(
        RESULTS_PATH,
        {"machine": machine_info(), "runs": args.runs, "loads": args.loads, "pages": figures},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
