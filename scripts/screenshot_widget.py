"""Screenshot the demo page (trial summary + the ``<related-trials>`` widget) with headless Chromium.

    python scripts/screenshot_widget.py --index indexes/demo --out benchmarks/widget.png

Serves ``--index`` on 127.0.0.1 (a free port) in a subprocess with
:func:`similarity.service.server_process`, opens ``/demo/NCT_ID`` in
Debian's ``/usr/bin/chromium`` through Playwright, waits for the widget to render and saves a
full-page PNG. Needs ``pip install -e '.[dev]'`` and ``apt-get install chromium``; it never runs
``playwright install``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument("--nct-id", default="NCT02213705", help="trial whose demo page is shot")
    parser.add_argument("--out", default="benchmarks/widget.png", help="PNG to write")
    parser.add_argument("--width", type=int, default=1000, help="viewport width in CSS pixels")
    parser.add_argument("--scale", type=float, default=1.5, help="device scale factor (sharper text)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from playwright.sync_api import sync_playwright

    from similarity.service import server_process

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with server_process(args.index) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 800}, device_scale_factor=args.scale)
        page.goto(f"{server.url}/demo/{args.nct_id}")
        page.wait_for_selector("related-trials:is([state=ready], [state=empty], [state=error])", timeout=30_000)
        state = page.get_attribute("related-trials", "state")
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out} (widget state: {state})")
    return 0 if state == "ready" else 1


if __name__ == "__main__":
    sys.exit(main())
