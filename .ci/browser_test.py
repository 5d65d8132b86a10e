"""Browser test: headless Chromium opens /api/docs and finds every operation rendered.

Run by .ci/live.sh against the live server: `python .ci/browser_test.py http://127.0.0.1:PORT`.
The expected operations come from the server's own /api/openapi.json; the page passes
when Swagger UI has rendered one operation block (`opblock`) for each of them, which
needs its JavaScript and CSS served by the app (the machine has no internet access).
Standard library only; every step has a timeout.
"""

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ATTEMPTS = ((8_000, 60), (20_000, 120))  # (virtual time budget in ms, wall-clock timeout in s)


# An operation block opens with `<div class="opblock opblock-post ...">`; its summary
# carries the documented path in `data-path="/api/register"`.
OPBLOCK_OR_PATH = re.compile(
    r'class="opblock opblock-(?P<method>[a-z]+)[\s"]|data-path="(?P<path>[^"]*)"'
)


def rendered_operations(dom: str) -> set[tuple[str, str]]:
    """(method, path) of every rendered Swagger UI operation block, in document order."""
    operations = set()
    method = None
    for match in OPBLOCK_OR_PATH.finditer(dom):
        if match["method"]:
            method = match["method"] if match["method"] in HTTP_METHODS else None
        elif method:
            operations.add((method, html.unescape(match["path"])))
            method = None
    return operations


def documented_operations(base: str) -> set[tuple[str, str]]:
    with urllib.request.urlopen(f"{base}/api/openapi.json", timeout=15) as response:
        document = json.load(response)
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def dump_dom(url: str, budget_ms: int, timeout: int) -> str:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def main(base: str) -> int:
    base = base.rstrip("/")
    expected = documented_operations(base)
    if not any(path.endswith("/register") and method == "post" for method, path in expected):
        print("FAIL: /api/openapi.json does not document POST /api/register")
        return 1
    rendered: set[tuple[str, str]] = set()
    for budget_ms, timeout in ATTEMPTS:
        dom = dump_dom(f"{base}/api/docs", budget_ms, timeout)
        rendered = rendered_operations(dom)
        if rendered >= expected:
            break
    missing = sorted(expected - rendered)
    if missing or 'class="swagger-ui' not in dom:
        print(f"FAIL: /api/docs rendered {len(rendered)} of {len(expected)} operations")
        for method, path in missing:
            print(f"  missing: {method.upper()} {path}")
        return 1
    print(f"ok: /api/docs rendered all {len(expected)} documented operations in Chromium")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: browser_test.py BASE_URL (e.g. http://127.0.0.1:5000)")
    sys.exit(main(sys.argv[1]))
