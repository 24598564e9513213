"""Browser tests of the web console: a real server (demo district, the real access
rules) with its HTTPS console, driven by Playwright in Debian's Chromium.

Screenshots of the main pages go to test-artifacts/web/ (kept by CI as artifacts).
Without Chromium the tests are skipped on a developer machine and fail under CI=true
(scripts/test installs it when run as root)."""
import os
import shutil
from pathlib import Path

import pytest
import yaml

from directory.demo import demo_ldif
from tests.conftest import ROOT, SUFFIX, ServerProcess, free_port

ARTIFACTS = ROOT / "test-artifacts" / "web"
SCHEMA = [str(ROOT / "schema" / f"{n}.schema")
          for n in ("core", "cosine", "inetorgperson", "nis", "eduperson", "rollcall", "rollcall-photos")]
CHROMIUM = os.environ.get("ROLLCALL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def console_config(web_port, **web):
    with open(ROOT / "config.yaml") as fh:
        real = yaml.safe_load(fh)
    return {"schema": SCHEMA, "access": real["access"], "indexes": real["indexes"],
            "requests": {"anonymous_limit": 1000},
            "password_policy": {"min_length": 8, "history": 2, "max_failures": 5, "failure_window": 300,
                                "lockout_duration": 60, "source_max_failures": 1000, "source_window": 60},
            "web": {"listen": f"https://127.0.0.1:{web_port}", **web}}


class Console:
    def __init__(self, workdir: Path, extra=None, **web):
        self.web_port = free_port()
        self.server = ServerProcess(workdir, extra_config={**console_config(self.web_port, **web), **(extra or {})},
                                    ldif=demo_ldif(SUFFIX))
        self.base = f"https://127.0.0.1:{self.web_port}"

    def start(self):
        from tests.conftest import wait_port

        self.server.start()
        wait_port(self.web_port, proc=self.server.proc)
        return self

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = Console(tmp_path_factory.mktemp("console")).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}: scripts/test installs Debian's chromium as root")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    """new_page(viewport=DESKTOP) -> a page in a fresh browser context (own cookies)."""
    contexts = []

    def make(viewport=DESKTOP):
        ctx = browser.new_context(ignore_https_errors=True, viewport=viewport)
        ctx.set_default_timeout(15000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for c in contexts:
        c.close()


def sign_in(page, console, username, password, expect_ok=True):
    page.goto(console.base + "/signin")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    if expect_ok:
        page.wait_for_selector("form.signout")
    return page


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def unlabelled_controls(page) -> list:
    """Form controls with no accessible label (label[for], aria-label or a wrapping label)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')).filter(el => {
          if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return false;
          if (el.id && document.querySelector(`label[for="${el.id}"]`)) return false;
          return !el.closest('label');
        }).map(el => el.name || el.outerHTML)""")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
