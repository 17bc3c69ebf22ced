"""Screenshots of a running desk for the docs, taken with Debian's chromium via Playwright.

    python -m webcare.devtools.screenshot --user lead --password webcare-demo \
        --page /=docs/screenshots/inbox.png
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

# Chromium must not reach out to Google's services: this machine has no network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--page", action="append", required=True, help="PATH=OUTPUT.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=760)
    args = parser.parse_args()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(f"{args.base}/login/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        for spec in args.page:
            path, _, output = spec.rpartition("=")
            page.goto(f"{args.base}{path}")
            page.wait_for_load_state("networkidle")
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=output)
            print(f"saved {output}")
        browser.close()


if __name__ == "__main__":
    main()
