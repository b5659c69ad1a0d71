"""How the tests and benchmarks start Debian's Chromium: Playwright cannot download a browser here,
and without these switches its start hangs on a closed network."""

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
