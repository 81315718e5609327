"""Screenshot the labeling page in headless Chromium and check its layout and hotkeys.

Starts a throw-away Label Studio on 127.0.0.1, pushes one synthetic frame with a prediction,
logs in through the web form (Chrome DevTools Protocol), opens the task at the given window
size, presses a few of the config's hotkeys and checks that

* the image and every control are inside the window (no scrolling between them),
* the page is pre-filled from the project's prelabeling model, not the first model pushed,
* ``p`` ticks the polyp label and ``g``/``b``/``n`` pick the inset state,
* Submit with the inset cleared is refused (the inset choice is required),

then saves a PNG. Prints one JSON object with the measurements; exits 1 if a check fails.

    python scripts/screenshot_labeling.py --out docs/labeling_page.png [--width 1600 --height 1000]

Needs Debian's ``chromium`` and ``websocket-client`` (dev extra). Nothing leaves the machine:
Chromium runs with background networking, component updates and first-run tasks off, in a
fresh profile, and only loads pages from the local server.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
                  "--hide-scrollbars", "--mute-audio", "--no-default-browser-check")


class Browser:
    """A headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, width: int, height: int, chromium: str = "chromium"):
        import websocket  # websocket-client

        self.profile = Path(tempfile.mkdtemp(prefix="kvasir-chromium-"))
        self.proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import httpx

        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self._id = 0
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails'].get('text')}: {expression[:80]}")
        return out.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        time.sleep(0.3)
        self.wait_for("document.readyState === 'complete'")

    def wait_for(self, condition: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.js(f"!!({condition})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {condition}")
            time.sleep(0.25)

    def key(self, combo: str) -> None:
        """Press a key such as ``p`` or ``shift+p`` (keydown + keyup)."""
        *mods, key = combo.split("+")
        modifiers = 8 if "shift" in mods else 0
        text = key.upper() if "shift" in mods else key
        code = f"Key{key.upper()}" if key.isalpha() else key
        base = dict(key=text, code=code, windowsVirtualKeyCode=ord(key.upper()), modifiers=modifiers)
        self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **base)
        self.send("Input.dispatchKeyEvent", type="keyUp", **base)
        time.sleep(0.2)

    def screenshot(self, path: Path, max_kb: int = 300) -> None:
        """Save the page as PNG; a 256-colour palette when the full-colour file exceeds ``max_kb``."""
        import io

        from PIL import Image

        raw = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        if len(raw) > max_kb * 1024:
            buf = io.BytesIO()
            Image.open(io.BytesIO(raw)).convert("RGB").quantize(256).save(buf, "PNG", optimize=True)
            raw = buf.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


# Page measurements: every control's box against the window, and the state of the choices.
_MEASURE = """(() => {
  const rect = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const img = document.querySelector('.lsf-main-view img, .lsf-main-view canvas, img[alt="image"]');
  const boxes = [...document.querySelectorAll('.lsf-choice, .lsf-label')].filter(e => e.offsetParent);
  const checked = [...document.querySelectorAll('.lsf-choice input:checked')].map(
      e => e.name);
  return {window: [innerWidth, innerHeight], image: img ? rect(img) : null,
          controls: boxes.map(rect), n_controls: boxes.length, checked: checked,
          page_scrolls: document.scrollingElement.scrollHeight > innerHeight + 1};
})()"""


def _server_with_tasks(work: Path, template_dir: Path | None = None):
    """A local server, one project, two synthetic frames: the first with a prediction, the
    second without (to try an empty Submit on). Returns ``(server, client, project, task ids)``."""
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.synth import synthesize
    from kvasir_ml.labelstudio.client import LSClient, LSConnection
    from kvasir_ml.labelstudio.server import LabelStudioServer
    from kvasir_ml.labelstudio.sync import push_dataset, set_prelabeling_model

    ds = load_canonical(synthesize(work / "root", n=8, seed=3, size_range_px=(560, 640)))
    greens = [img for img in ds.images if img.get("inset") == "green"]
    ds.images = (greens + [img for img in ds.images if img not in greens])[:2]
    server = LabelStudioServer(work / "root", data_dir=work / "ls", template_dir=template_dir).start()
    client = LSClient(LSConnection(server.url, server.token), max_attempts=2)
    img = ds.images[0]
    w, h = img["width"], img["height"]
    pred = {img["file_name"]: {"labels": {"polyp": 0.7}, "predicted_labels": ["polyp"], "inset": {"state": "green"},
                               "boxes": [{"class": "polyp", "score": 0.6, "xywh_px": [w * 0.3, h * 0.3, w * 0.25, h * 0.25]}]}}
    # An older model first (Label Studio makes the first version it sees the prelabeling model),
    # then "demo", made the prelabeling model: the page must be pre-filled from "demo".
    old = {img["file_name"]: {"labels": {"ileum": 0.9}, "predicted_labels": ["ileum"], "inset": {"state": "black"}}}
    push_dataset(client, ds, work / "root", "screenshot", predictions=old, model_version="old")
    report = push_dataset(client, ds, work / "root", "screenshot", predictions=pred, model_version="demo")
    set_prelabeling_model(client, report.project_id, "demo")
    by_name = {t["data"]["file_name"]: t["id"] for t in client.list_tasks(report.project_id)}
    return server, client, report.project_id, [by_name[i["file_name"]] for i in ds.images]


def _login_and_open(browser: Browser, server, pid: int, tid: int) -> None:
    password = (server.data_dir / "web_password").read_text().strip()
    browser.goto(f"{server.url}/projects/{pid}/data?tab=&task={tid}")
    if browser.js("location.pathname.startsWith('/user/login')"):
        browser.js(f"""(() => {{ document.querySelector('input[name=email]').value = {json.dumps(server.username)};
            document.querySelector('input[name=password]').value = {json.dumps(password)};
            document.querySelector('form').submit(); }})()""")
        browser.wait_for("!location.pathname.startsWith('/user/login')")
        browser.goto(f"{server.url}/projects/{pid}/data?tab=&task={tid}")
    browser.wait_for("document.querySelectorAll('.lsf-choice').length > 0 && document.querySelector('.lsf-main-view')")
    time.sleep(2.0)  # image decode and first paint


def run(out: Path, width: int, height: int, chromium: str, template_dir: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="kvasir-shot-"))
    server = browser = None
    try:
        server, client, pid, (tid, tid_empty) = _server_with_tasks(work, template_dir)
        browser = Browser(width, height, chromium)
        # An unlabelled frame: tick a label but no inset, then Submit: must be refused.
        _login_and_open(browser, server, pid, tid_empty)
        browser.key("p")
        browser.js("[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Submit').click()")
        time.sleep(2.0)
        refused_text = browser.js("document.body.innerText.includes('Choose the inset state')")
        n_saved = len(client.call("list annotations", client.sdk.annotations.list, id=tid_empty))
        # The pre-annotated frame: layout, pre-fill, hotkeys.
        _login_and_open(browser, server, pid, tid)
        before = browser.js(_MEASURE)
        browser.key("n")
        after_n = browser.js(_MEASURE)["checked"]
        browser.key("g")
        browser.key("d")
        after = browser.js(_MEASURE)
        browser.key("shift+p")
        box_tool = browser.js("!!document.querySelector('.lsf-label_selected, [class*=label_selected]')")
        browser.key("d")
        browser.screenshot(out)
    finally:
        if browser is not None:
            browser.close()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    w, h = before["window"]
    inside = all(r[0] >= -1 and r[1] >= -1 and r[2] <= w + 1 and r[3] <= h + 1 for r in before["controls"])
    checks = {
        "image_visible": before["image"] is not None and before["image"][3] <= h + 1,
        "controls_inside_window": inside and before["n_controls"] > 0,
        "page_does_not_scroll": not before["page_scrolls"],
        "prelabeling_model_prefills_the_page": set(before["checked"]) == {"polyp", "green"},
        "hotkey_n_sets_inset_none": "none" in after_n and "green" not in after_n,
        "hotkeys_g_and_d": "green" in after["checked"] and "dyed" in after["checked"],
        "hotkey_shift_p_selects_polyp_box": box_tool,
        "submit_without_inset_refused": n_saved == 0 and refused_text,
    }
    lowest = max((r[3] for r in before["controls"]), default=0)
    image = before["image"] or [0, 0, 0, 0]
    return {"out": str(out), "window_px": [w, h], "n_controls": before["n_controls"],
            "image_px": [round(image[2] - image[0]), round(image[3] - image[1])],
            "lowest_control_px": round(lowest), "checked_before": before["checked"],
            "checked_after_keys": after["checked"], "checks": checks, "ok": all(checks.values()),
            "png_kb": round(out.stat().st_size / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/labeling_page.png"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--template-dir", type=Path, help="migrated empty Label Studio database to start from "
                        "(LabelStudioServer template_dir; the tests keep one in .pytest_cache)")
    args = parser.parse_args(argv)
    result = run(args.out, args.width, args.height, args.chromium, args.template_dir)
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
