"""What the console's browser tests stand on: a live `lgql dev` child process, a headless
Chromium driven by Selenium (with a screenshot per step, written out when the test fails), and
the server's own replay of a run's events to compare with what the page shows."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest

from tests.conftest import ROOT, EngineUrls, free_port, scratch_database

T = TypeVar("T")


# -- the server -------------------------------------------------------------------------------


@dataclass
class DevServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in a session of its own (stopped with its whole group), logging to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.asynccontextmanager
async def lgql_dev(engines: EngineUrls, config: Path, name: str, **env: str) -> Any:
    """`lgql dev` on `config`, a database and a Redis prefix of its own; stopped afterwards."""
    async with scratch_database(engines.database_uri, prefix=f"lgql_{name}") as database_uri:
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix=f"lgql-{name}-")) / "dev.log"
        scrub = ("DATABASE_URL", "POSTGRES_URI", "REDIS_URL", "LGQL_PORT", "LGQL_HOST")
        child_env = {k: v for k, v in os.environ.items() if k not in scrub}
        child_env.update(
            {
                "DATABASE_URI": database_uri,
                "REDIS_URI": engines.redis_uri,
                "REDIS_KEY_PREFIX": f"lgql_test_{name}_{port}",
                "LGQL_CONFIG": str(config),
                "LGQL_DB_POOL_SIZE": "4",
                "LGQL_DATA_DIR": str(log.parent / "data"),
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        proc = _spawn([sys.executable, "-m", "lgql", "dev", "--port", str(port)], child_env, log)
        server = DevServer(f"http://127.0.0.1:{port}", proc, log)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                deadline = time.monotonic() + 60
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"lgql dev exited:\n{server.log_text()[-3000:]}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{server.url}/ok")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"lgql dev never answered:\n{server.log_text()[-3000:]}")
                    await asyncio.sleep(0.1)
            yield server
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 10)
            shutil.rmtree(log.parent, ignore_errors=True)


# -- the browser ------------------------------------------------------------------------------


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "the console tests need Chromium and its driver: "
            "apt-get install -y chromium chromium-driver (CI's .ci/run installs them)"
        )
    return browser, driver


@dataclass
class Browser:
    """A headless Chromium, with the steps of the test it serves."""

    driver: Any
    base: str
    shots: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    def step(self, name: str) -> None:
        """Remember how the page looks now (written out only if the test fails)."""
        with contextlib.suppress(Exception):
            self.shots.append((name, self.driver.get_screenshot_as_png()))

    def open(self, path: str) -> None:
        self.driver.get(f"{self.base}{path}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 20) -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
        end = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                value = probe()
                if value:
                    return value
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what} ({timeout:.0f} s)")
            time.sleep(0.05)

    def wait_css(self, selector: str, timeout: float = 20) -> Any:
        return self.wait(selector, lambda: self.all(selector) and self.all(selector)[0], timeout)

    def fill(self, selector: str, text: str) -> None:
        element = self.css(selector)
        # Set through the DOM and announce it as Preact listens for it: typing JSON with
        # send_keys fights the browser's auto-indentation of nothing, but is slow and flaky.
        self.js(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            element,
            text,
        )

    def run_id(self) -> str:
        return str(
            self.wait("a run page", lambda: self.css("[data-run]").get_attribute("data-run"))
        )

    def run_status(self) -> str:
        return str(self.css("[data-run]").get_attribute("data-run-status"))

    def wait_ended(self, timeout: float = 30) -> str:
        self.wait(
            "the run to end",
            lambda: self.css("[data-run]").get_attribute("data-ended") == "true",
            timeout,
        )
        return self.run_status()

    def chat_text(self, role: str = "ai") -> str:
        texts = [e.text for e in self.all(f"#chat .message[data-role='{role}'] .text")]
        return texts[-1] if texts else ""

    def event_ids(self) -> list[str]:
        return [str(e.get_attribute("data-event-id")) for e in self.all("#events tbody tr")]

    def stored_events(self, run_id: str) -> list[dict[str, Any]]:
        raw = self.js("return sessionStorage.getItem(arguments[0])", f"lgql.console.run.{run_id}")
        return list(json.loads(raw)["events"]) if raw else []

    def stats(self) -> dict[str, Any]:
        return dict(self.js("return window.__lgqlConsole || {}"))


def open_browser(
    request: pytest.FixtureRequest, tmp_path: Path, server: DevServer
) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    b = Browser(driver, server.url)
    # The call's report is logged before teardown: a failure has counted by then.
    failures_before = request.session.testsfailed
    try:
        yield b
    finally:
        if request.session.testsfailed > failures_before:
            _write_shots(b, tmp_path)
        driver.quit()


def _write_shots(b: Browser, tmp_path: Path) -> None:
    b.step("failure")
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    for i, (name, png) in enumerate(b.shots):
        slug = re.sub(r"[^\w-]+", "-", name)
        (folder / f"{i:02d}-{slug}.png").write_bytes(png)
    print(f"console screenshots: {folder}")


def server_events(server: DevServer, run_id: str) -> list[dict[str, Any]]:
    """The run's events as the server replays them from the start (while retained)."""
    from tests.helpers import JOIN, collect

    def replay() -> list[dict[str, Any]]:
        # collect() needs only `graphql_url`, which DevServer has too.
        return asyncio.run(collect(cast(Any, server), JOIN, {"id": run_id}, "joinRunStream"))

    # In a thread of its own: asyncio.run must not touch the test session's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(replay).result(timeout=60)
