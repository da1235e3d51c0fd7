"""`actopo report` in a real browser: headless Chromium (Debian's) loads the page and must show no
console error, no failed or outside load, and every figure rendered.

Makes a small run with an attack and subgraphs (Fashion-MNIST), runs `actopo analyze subgraphs`
and `actopo report`, then drives Chromium over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: no network port is opened, no Python package is needed). Checks:
- no Runtime exception, no console.error, no Log entry of level error (failed loads land there);
- no resource was fetched (performance entries) and the page has no <script>, no http(s) URL but
  the SVG namespace;
- every <figure> holds an <svg> with a laid-out size of at least 300 x 200 px and at least 50
  drawn elements, and every SVG's text elements are non-empty;
- a screenshot of the page is not blank (several distinct colours), and with --screenshot it is
  kept (scaled down) as docs/report-screenshot.png.

    .venv/bin/python tests/python/report_browser.py --bin target/release/actopo [--screenshot docs/report-screenshot.png]
"""

import argparse
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLASS_NAMES = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("report_browser: no Chromium; install Debian's `chromium` (scripts/setup.sh --browser)")


class DevTools:
    """The DevTools protocol over Chromium's pipe: NUL-terminated JSON messages on fds 3 (in) / 4 (out)."""

    def __init__(self, binary, profile):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def setup_fds():
            # Copies first, so that placing one end cannot overwrite the other.
            read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-sync", "--disable-component-update",
             f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, preexec_fn=setup_fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method, timeout=30):
        deadline = time.time() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._read_message(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


FIGURE_PROBE = """JSON.stringify({
  figures: [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg');
    if (!svg) return {id: f.id, svg: false};
    const r = svg.getBoundingClientRect();
    return {id: f.id, svg: true, width: r.width, height: r.height,
            elements: svg.querySelectorAll('*').length,
            texts: svg.querySelectorAll('text').length,
            emptyTexts: [...svg.querySelectorAll('text')].filter(t => !t.textContent.trim()).length};
  }),
  resources: performance.getEntriesByType('resource').map(e => e.name),
  scripts: document.querySelectorAll('script').length,
  height: document.documentElement.scrollHeight,
})"""


def make_report(binary, out):
    run = [binary, "run", str(ROOT / "config/fashion-mnist-subgraphs.toml"),
           "--set", "data.limit=40", "--set", f'output.dir="{out}"',
           "--set", 'attacks=[{kind="fgsm", eps=0.1}]']
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([binary, "analyze", "subgraphs", str(out), "--min-fraction", "0.2"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([binary, "analyze", "uncertainty", str(out)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([binary, "report", str(out), "--index", "1", "--class-names", CLASS_NAMES],
                   check=True, stdout=subprocess.DEVNULL)
    return out / "report.html"


def check_static(html):
    problems = []
    if "<script" in html.lower():
        problems.append("the page has a <script>")
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html)) - {"http://www.w3.org/2000/svg"}
    if urls:
        problems.append(f"the page names URLs: {sorted(urls)[:5]}")
    return problems


def errors_in(events):
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console.{p['type']}: {p.get('args')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    return out


def load(binary, page, screenshot_path):
    with tempfile.TemporaryDirectory() as profile:
        dt = DevTools(binary, profile)
        try:
            target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                dt.call(f"{domain}.enable", session=session)
            dt.call("Emulation.setDeviceMetricsOverride",
                    {"width": 1300, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
            dt.call("Page.navigate", {"url": page.as_uri()}, session=session)
            dt.wait_event("Page.loadEventFired")
            time.sleep(0.5)  # late console messages
            probe = json.loads(dt.call("Runtime.evaluate", {"expression": FIGURE_PROBE, "returnByValue": True},
                                       session=session)["result"]["value"])
            shot = dt.call("Page.captureScreenshot",
                           {"format": "png", "captureBeyondViewport": True,
                            "clip": {"x": 0, "y": 0, "width": 1300, "height": min(probe["height"], 2600), "scale": 1}},
                           session=session)
            png = base64.b64decode(shot["data"])
            return probe, errors_in(dt.events), png
        finally:
            dt.close()


def check_screenshot(png, keep):
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = img.resize((260, 520)).tobytes()
    colours = len({pixels[i:i + 3] for i in range(0, len(pixels), 3)})
    problems = [] if colours >= 20 else [f"the screenshot is blank ({colours} distinct colours)"]
    if keep:
        small = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
        small.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(keep, optimize=True)
        print(f"screenshot: {keep} ({small.width} x {small.height}, {Path(keep).stat().st_size} bytes)")
    return problems, img.size, colours


def detector_self_check(binary, tmp):
    """The checks can fail: a page with a console error and a missing image must be caught."""
    bad = tmp / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png">'
                   '<script>console.error("probe")</script></body></html>')
    probe, errors, _ = load(binary, bad, None)
    if not any("probe" in e for e in errors) or not any("missing.png" in e for e in errors) \
            or not probe["scripts"]:
        sys.exit(f"report_browser: the detector missed a console error, a failed load or a script: {errors} {probe}")
    print(f"detector self-check: caught {len(errors)} errors (console.error, failed load) on a bad page")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    ap.add_argument("--screenshot", help="keep the screenshot here (e.g. docs/report-screenshot.png)")
    args = ap.parse_args()
    binary = chromium_binary()
    with tempfile.TemporaryDirectory() as tmp:
        detector_self_check(binary, Path(tmp))
        page = make_report(args.bin, Path(tmp) / "run")
        html = page.read_text()
        problems = check_static(html)
        probe, errors, png = load(binary, page, None)
        problems += errors
        if probe["resources"]:
            problems.append(f"resources were fetched: {probe['resources'][:5]}")
        if probe["scripts"]:
            problems.append("the page has scripts")
        figures = probe["figures"]
        # diagram, Betti per variant (clean, fgsm), total persistence, 3 subgraph charts
        if len(figures) < 7:
            problems.append(f"{len(figures)} figures, expected at least 7")
        for f in figures:
            ok = f.get("svg") and f["width"] >= 300 and f["height"] >= 200 and f["elements"] >= 50 \
                and f["texts"] >= 5 and f["emptyTexts"] == 0
            print(f"figure {f['id']}: {f}")
            if not ok:
                problems.append(f"figure {f['id']} did not render: {f}")
        shot_problems, size, colours = check_screenshot(png, args.screenshot)
        problems += shot_problems
        print(f"page: {len(html)} bytes, {len(figures)} figures, screenshot {size} with {colours} colours, "
              f"{len(errors)} console errors")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("report_browser: ok")


if __name__ == "__main__":
    main()
