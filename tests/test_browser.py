"""Generated reports open in a real headless Chromium with WebGL disabled, as a researcher sees them.

Chromium runs with ``--disable-3d-apis`` (no WebGL, as on VMs, remote desktops and browsers
with acceleration off) and is driven over the DevTools protocol on ``--remote-debugging-pipe``
(fd 3 in, fd 4 out, JSON messages ended by NUL), so no websocket package and no TCP port are
needed. Each test collects console errors, uncaught exceptions, log errors and JavaScript
dialogs (an ``alert`` from an injected class name would open one), counts one SVG
``.main-svg`` per figure div and no WebGL canvas, and measures overflow: at 1,280 px no table
scrolls sideways, at 800 px the page itself does not.

Set ``UMAE_SCREENSHOTS=/some/folder`` to also save full-page screenshots for a human look.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ckpt_factory as CF

from umae_eval.report import figures as F
from umae_eval.report.writer import HtmlReport

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--remote-debugging-pipe", "--disable-3d-apis", "--hide-scrollbars",
]
EVIL = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>", "plain cat"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevToolsPipe:
    """A minimal DevTools-protocol client over Chromium's ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, from_chrome_w = os.pipe()

        def _child_fds() -> None:  # runs in the child before exec: fd 3 = commands, fd 4 = replies
            # copy both ends above fd 10 first, so neither dup2 clobbers the other, and dup2 onto
            # 3 and 4 (inheritable) even when a pipe end already sits on 3 or 4 (close-on-exec)
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_child_fds, close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no DevTools message from Chromium in time")
            ready, _, _ = select.select([self._from_chrome_r], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Send one command and return its ``result`` (events seen meanwhile are kept)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until an event named ``method`` has arrived (or already had)."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("method") == method:
                    return ev
            self.events.append(self._read_message(deadline))

    def close(self) -> str:
        """Close the browser; return what it wrote to stderr (for failure messages)."""
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        os.close(self._to_chrome_w)
        os.close(self._from_chrome_r)
        return (err or b"").decode(errors="replace")[-2000:]


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions, log errors and dialogs among DevTools events."""
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                   for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log error: " + str(p["entry"].get("text")) + " " + str(p["entry"].get("url", "")))
        elif method == "Page.javascriptDialogOpening":
            out.append("dialog opened: " + str(p.get("message")))
    return out


_STATE_JS = """JSON.stringify({
  figures: document.querySelectorAll('.umae-figure').length,
  drawn: Array.from(document.querySelectorAll('.umae-figure')).filter(d => d.querySelector('svg.main-svg') !== null).length,
  webgl: document.querySelectorAll('.umae-figure canvas').length,
  plotly: typeof Plotly, injected: document.querySelectorAll('img:not(.umae-picture)').length,
  tables: document.querySelectorAll('table').length,
  scrolling_tables: Array.from(document.querySelectorAll('.tablewrap')).filter(w => w.scrollWidth > w.clientWidth + 1)
      .map(w => (w.previousElementSibling ? w.previousElementSibling.textContent : '') + ' ' + w.scrollWidth + '>' + w.clientWidth),
  page_width: document.documentElement.scrollWidth, viewport: window.innerWidth,
  first_h2: (document.querySelector('h2') || {}).textContent || '',
  toc_links: document.querySelectorAll('nav.toc a').length,
  broken_anchors: Array.from(document.querySelectorAll('nav.toc a')).filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length,
  viewport_meta: !!document.querySelector('meta[name=viewport]'),
  trace_colors: Array.from(document.querySelectorAll('.plotly-graph-div')).flatMap(d => (d.data || [])
      .filter(t => t.name && t.showlegend !== false)
      .map(t => [t.name, (t.mode || '').includes('lines') && t.line && t.line.color ? t.line.color
                 : (t.marker && typeof t.marker.color === 'string' ? t.marker.color : null)])
      .filter(p => p[1] !== null)),
  intervals: Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => {
    // per figure: the error bars and 95% bands plotly draws (a point with a number and an error)
    const ok = v => v !== null && v !== undefined && v !== '' && (typeof v === 'string' || Number.isFinite(Number(v)));
    let bars = 0, bands = 0;
    for (const t of (d._fullData || [])) {
      if (t.visible !== true) continue;
      if (t.fill === 'toself') { bands += 1; continue; }
      for (const k of ['error_x', 'error_y']) {
        const e = t[k];
        if (!e || !e.visible || !e.array) continue;
        const xs = t.x || [], ys = t.y || [], n = Math.max(xs.length || 0, ys.length || 0);
        for (let i = 0; i < n; i++) {
          if (ok(xs[i]) && ok(ys[i]) && Number.isFinite(Number(e.array[i]))) bars += 1;
        }
      }
    }
    return [((d._context || {}).toImageButtonOptions || {}).filename || null, bars, bands];
  }),
  checkpoints_table_width: (() => { const h = Array.from(document.querySelectorAll('h2'))
      .find(e => e.textContent.startsWith('Checkpoints')); const w = h && h.nextElementSibling;
      return w ? [w.scrollWidth, w.clientWidth] : null; })(),
})"""


_PRINT_JS = """JSON.stringify({
  modebars_shown: Array.from(document.querySelectorAll('.modebar-container, .modebar'))
      .filter(m => getComputedStyle(m).display !== 'none').length,
  figures_that_may_split: Array.from(document.querySelectorAll('.umae-figure'))
      .filter(f => getComputedStyle(f).breakInside !== 'avoid').length,
})"""


def render_in_chromium(html_path: Path, user_data_dir: Path, *, width: int = 1280,
                       screenshot: Path | None = None, print_media: bool = False,
                       pdf_path: Path | None = None) -> dict[str, Any]:
    """Load ``html_path`` in headless Chromium at ``width`` px; return counts, overflow and problems."""
    binary = _chromium()
    assert binary is not None
    cdp = DevToolsPipe(binary, user_data_dir)
    state: dict[str, Any] = {}
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        cdp.send("Page.navigate", {"url": html_path.resolve().as_uri()}, session=session)
        cdp.wait_event("Page.loadEventFired", timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            res = cdp.send("Runtime.evaluate", {"expression": _STATE_JS, "returnByValue": True}, session=session)
            state = json.loads(res["result"]["value"])
            if state["drawn"] == state["figures"]:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # responsive plots settle to the viewport width
        res = cdp.send("Runtime.evaluate", {"expression": _STATE_JS, "returnByValue": True}, session=session)
        state = json.loads(res["result"]["value"])
        if print_media:
            cdp.send("Emulation.setEmulatedMedia", {"media": "print"}, session=session)
            res = cdp.send("Runtime.evaluate", {"expression": _PRINT_JS, "returnByValue": True}, session=session)
            state["print"] = json.loads(res["result"]["value"])
            pdf = cdp.send("Page.printToPDF", {"printBackground": False}, session=session, timeout=120)
            state["print"]["pdf_bytes"] = len(base64.b64decode(pdf["data"]))
            if pdf_path is not None:
                pdf_path.write_bytes(base64.b64decode(pdf["data"]))
        if screenshot is not None:
            shot = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                            session=session, timeout=60)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.3)  # let late console messages arrive
        cdp.send("Runtime.evaluate", {"expression": "1"}, session=session)
        state["problems"] = _problems(cdp.events)
    finally:
        state_err = cdp.close()
    state["stderr"] = state_err
    return state


_TEXT_BOXES_JS = """JSON.stringify(Array.from(document.querySelectorAll('text')).map(t => {
  const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.top, r.right, r.bottom]; })
  .filter(b => b[0].trim() && b[3] > b[1] && b[4] > b[2]))"""


def svg_text_overlaps(svgs: list[Path], user_data_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Pairs of text elements whose boxes overlap (by more than a fifth of the smaller box), per SVG,
    as Chromium lays them out. Neighbouring pieces of one mathtext formula (drawn as several text
    elements on one baseline) are not a collision."""
    binary = _chromium()
    assert binary is not None
    cdp = DevToolsPipe(binary, user_data_dir)
    out: dict[str, list[tuple[str, str]]] = {}
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        cdp.send("Page.enable", session=session)
        for svg in svgs:
            cdp.events.clear()
            cdp.send("Page.navigate", {"url": svg.resolve().as_uri()}, session=session)
            cdp.wait_event("Page.loadEventFired", timeout=60)
            res = cdp.send("Runtime.evaluate", {"expression": _TEXT_BOXES_JS, "returnByValue": True}, session=session)
            boxes = json.loads(res["result"]["value"])
            bad = []
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    w = min(a[3], b[3]) - max(a[1], b[1])
                    h = min(a[4], b[4]) - max(a[2], b[2])
                    if w <= 0 or h <= 0:
                        continue
                    smaller = min((a[3] - a[1]) * (a[4] - a[2]), (b[3] - b[1]) * (b[4] - b[2]))
                    if w * h > 0.2 * smaller:
                        bad.append((a[0], b[0]))
            out[svg.name] = bad
    finally:
        cdp.close()
    return out


def _shot(name: str) -> Path | None:
    folder = os.environ.get("UMAE_SCREENSHOTS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / name


def _check_page(state: dict[str, Any], n_figures: int | None = None) -> None:
    """What every report must satisfy in the browser, whatever its width."""
    assert state["problems"] == [], state["problems"]
    assert state["plotly"] == "object", state
    if n_figures is not None:
        assert state["figures"] == n_figures, state
    assert state["drawn"] == state["figures"], f"only {state['drawn']} of {state['figures']} figures drew an SVG"
    assert state["webgl"] == 0, "a plot needs WebGL (scattergl); with WebGL off it shows a grey box"
    assert state["injected"] == 0, "a class name was parsed as an <img> element"
    assert state["viewport_meta"] and state["toc_links"] > 0 and state["broken_anchors"] == 0, state


def _demo_report(path: Path) -> int:
    """A report with every kind of figure, and class/checkpoint names that try to inject markup."""
    rng = np.random.default_rng(0)
    rep = HtmlReport("browser check <b>not bold</b>", command="collapse-report")
    rep.add_settings({"data": "/tmp/<img src=x onerror=alert(1)>", "pool": "cls", "seed": 0})
    sv = {name: np.sort(rng.random(32))[::-1] / 1.0 for name in ("random init", EVIL[0], "mae")}
    sv = {k: v / v[0] for k, v in sv.items()}
    settings = {"features": "test, cls", "seed": 0}
    rep.add_figure("Singular values", F.singular_values_figure(sv, settings_line="cls"), settings=settings)
    rep.add_figure("Ranks", F.rank_bars_figure({k: {"effective_rank": 10.0, "rankme": 11.0} for k in sv}))
    rep.add_figure("Accuracy", F.accuracy_figure({"a": {"linear_accuracy": 50.0, "knn_accuracy@10": 40.0}}))
    rep.add_figure("Alignment/uniformity", F.alignment_uniformity_figure({EVIL[1]: (0.5, -2.0), "b": (0.3, -3.0)}))
    labels = np.arange(60) % 3
    rep.add_figure("t-SNE", F.embedding_figure(rng.normal(size=(60, 2)), labels, EVIL, title="t-SNE"),
                   settings=settings)
    curves = {EVIL[1]: {"epoch": [1, 2, 3], "effective_rank": [5.0, 4.0, 3.0]},
              "u-mae": {"epoch": [1, 2, 3], "effective_rank": [5.0, 6.0, 7.0]}}
    rep.add_figure("Effective rank along training", F.training_curve_figure(
        curves, metric="effective_rank", y_title="effective rank", title="Fig. 1c"))
    rep.add_table("Accuracy", pd.DataFrame({"checkpoint": [EVIL[0], EVIL[1]], "linear_accuracy": [1.0, 2.0]}))
    rep.write(path)
    return rep.n_figures


def _needs_chromium() -> None:
    if _chromium() is None:
        pytest.skip("Chromium not installed (Debian: apt-get install -y chromium)")


@pytest.mark.timeout(120)
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    _needs_chromium()
    html_path = tmp_path / "report.html"
    n = _demo_report(html_path)
    state = render_in_chromium(html_path, tmp_path / "profile", screenshot=_shot("synthetic.png"))
    _check_page(state, n_figures=n)
    assert n == 6


# ----------------------------------------------------------------------------- real reports


def _images(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)[labels]
    x = base[:, None, None, :] + rng.normal(0, 45, size=(len(labels), size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def real_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A compare report (two checkpoints + random init, t-SNE, a run with metrics.jsonl) and a
    mask-ratio sweep, written by the commands themselves."""
    from umae_eval.cli import main

    if _chromium() is None:
        pytest.skip("Chromium not installed (Debian: apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("reports")
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(3), 30), np.repeat(np.arange(3), 20)
    npz = root / "tiny.npz"
    np.savez(npz, x_train=_images(rng, y_train, 32), y_train=y_train, x_test=_images(rng, y_test, 32),
             y_test=y_test, class_names=np.array(EVIL))
    run = root / "runs" / "u-mae"
    run.mkdir(parents=True)
    rows = [{"epoch": e, "loss": 1.0 / e, "effective_rank": 10.0 + e, "rankme": 11.0 + e,
             "linear_accuracy": 30.0 + 2 * e, "knn_accuracy": 28.0 + e} for e in (1, 2, 3, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.json").write_text(json.dumps({"train_config": {"eval_images": 500}, "data": {"test_images": 60}}))
    CF.make_umae(run / "checkpoint-4.pth", seed=1)
    CF.make_official_encoder(root / "mae_pretrain_vit_tiny.pth", seed=2)
    out = {"compare": root / "compare", "sweep": root / "sweep", "collapse": root / "collapse",
           "probe": root / "probe"}
    assert main(["compare", str(run / "checkpoint-4.pth"), str(root / "mae_pretrain_vit_tiny.pth"),
                 "--data", str(npz), "--random-init", "--embed", "tsne", "--per-class", "15", "--max-views", "20",
                 "--bootstrap", "200", "--device", "cpu", "--label", "U-MAE <i>tiny</i>", "--label", "MAE",
                 "--out", str(out["compare"])]) == 0
    assert main(["collapse-report", str(run / "checkpoint-4.pth"), str(root / "mae_pretrain_vit_tiny.pth"),
                 "--data", str(npz), "--random-init", "--embed", "tsne", "--per-class", "15", "--max-views", "20",
                 "--bootstrap", "200", "--device", "cpu", "--out", str(out["collapse"])]) == 0
    assert main(["probe", str(run / "checkpoint-4.pth"), "--data", str(npz), "--bootstrap", "200",
                 "--device", "cpu", "--out", str(out["probe"])]) == 0
    assert main(["mask-ratio-sweep", "--data", str(npz), "--ratios", "0:0.75:0.25", "--patch-size", "8",
                 "--pairs", "12", "--views", "2", "--bootstrap", "50", "--label-images", "9", "--graph-images", "6",
                 "--device", "cpu", "--out", str(out["sweep"])]) == 0
    return out


REPORTS = ["compare", "sweep", "collapse", "probe"]


@pytest.mark.timeout(900)  # the first one builds the four reports (minutes on a busy machine)
@pytest.mark.parametrize("which", REPORTS)
def test_real_report_at_1280_px_no_table_scrolls(real_reports: dict[str, Path], which: str, tmp_path: Path) -> None:
    state = render_in_chromium(real_reports[which] / "report.html", tmp_path / "profile", width=1280,
                               screenshot=_shot(f"{which}-1280.png"))
    _check_page(state)
    assert state["figures"] >= (1 if which == "probe" else 4)
    assert state["scrolling_tables"] == [], state["scrolling_tables"]
    assert state["page_width"] <= 1280, state
    # every analysis report opens with its verdict
    assert state["first_h2"].startswith("Summary"), state["first_h2"]


@pytest.mark.timeout(900)  # the first one builds the four reports (minutes on a busy machine)
@pytest.mark.parametrize("which", REPORTS)
def test_real_report_at_800_px_page_does_not_scroll(real_reports: dict[str, Path], which: str,
                                                    tmp_path: Path) -> None:
    state = render_in_chromium(real_reports[which] / "report.html", tmp_path / "profile", width=800,
                               screenshot=_shot(f"{which}-800.png"))
    _check_page(state)
    assert state["page_width"] <= 800, f"the page scrolls sideways at 800 px: {state['page_width']} px wide"


@pytest.mark.timeout(900)  # the first one builds the four reports (minutes on a busy machine)
def test_real_report_prints_without_modebars_or_split_figures(real_reports: dict[str, Path], tmp_path: Path) -> None:
    state = render_in_chromium(real_reports["compare"] / "report.html", tmp_path / "profile", width=1280,
                               print_media=True)
    _check_page(state)
    assert state["print"]["modebars_shown"] == 0, state["print"]
    assert state["print"]["figures_that_may_split"] == 0, state["print"]
    assert state["print"]["pdf_bytes"] > 10_000


@pytest.mark.timeout(300)
def test_reconstruct_report_in_chromium(tmp_path: Path) -> None:
    """`umae reconstruct`'s page: pictures as <img>, two plots drawn as SVG, names that try to inject markup."""
    from umae_eval.cli import main

    if _chromium() is None:
        pytest.skip("Chromium not installed (Debian: apt-get install -y chromium)")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=_images(rng, y, 32), y_train=y, x_test=_images(rng, y, 32), y_test=y,
             class_names=np.array(EVIL))
    CF.make_umae(tmp_path / "a.pth", {"decoder_num_heads": 2}, seed=1)
    CF.make_umae(tmp_path / "b.pth", {"decoder_num_heads": 2, "norm_pix_loss": True}, seed=3)
    out = tmp_path / "reconstruct"
    assert main(["reconstruct", str(tmp_path / "a.pth"), str(tmp_path / "b.pth"), "--data", str(npz), "--images", "3",
                 "--stat-images", "4", "--bootstrap", "20", "--label", EVIL[0], "--label", "MAE",
                 "--out", str(out)]) == 0
    state = render_in_chromium(out / "report.html", tmp_path / "profile", width=1280,
                               screenshot=_shot("reconstruct-1280.png"))
    _check_page(state, n_figures=2)
    assert state["scrolling_tables"] == [] and state["page_width"] <= 1280, state
    assert state["first_h2"].startswith("Summary"), state["first_h2"]


@pytest.mark.timeout(900)  # the first one builds the four reports (minutes on a busy machine)
@pytest.mark.parametrize("which", REPORTS)
def test_real_report_pages_are_small_and_keep_one_colour_per_checkpoint(real_reports: dict[str, Path], which: str,
                                                                       tmp_path: Path) -> None:
    """Each page is self-contained and at most 2 MB; a trace name (a checkpoint, a class, a curve) has
    one colour in every figure of the page; at 800 px the checkpoints table wraps instead of scrolling."""
    page = real_reports[which] / "report.html"
    assert page.stat().st_size <= 2_000_000, page.stat().st_size
    state = render_in_chromium(page, tmp_path / "profile", width=800)
    _check_page(state)
    colors: dict[str, set[str]] = {}
    for name, color in state["trace_colors"]:
        colors.setdefault(name, set()).add(color.lower())
    assert colors and all(len(c) == 1 for c in colors.values()), {n: c for n, c in colors.items() if len(c) > 1}
    if state["checkpoints_table_width"] is not None:
        scroll, client = state["checkpoints_table_width"]
        assert scroll <= client + 1, state["checkpoints_table_width"]


@pytest.mark.timeout(900)  # the first one builds the four reports (minutes on a busy machine)
@pytest.mark.parametrize("which", REPORTS)
def test_figure_files_have_no_overlapping_text(real_reports: dict[str, Path], which: str, tmp_path: Path) -> None:
    svgs = sorted((real_reports[which] / "figures").glob("*.svg"))
    assert svgs
    overlaps = svg_text_overlaps(svgs, tmp_path / "profile")
    assert all(not v for v in overlaps.values()), {k: v for k, v in overlaps.items() if v}


def svg_intervals(svg: Path) -> tuple[int, int]:
    """(error-bar segments, bands) drawn in an exported SVG (static_draw.INTERVAL_GID / BAND_GID)."""
    import xml.etree.ElementTree as ET

    from umae_eval.report.static_draw import BAND_GID, INTERVAL_GID

    ns = "{http://www.w3.org/2000/svg}"
    bars = bands = 0
    for g in ET.parse(svg).getroot().iter(f"{ns}g"):
        drawn = sum(1 for p in g.iter(f"{ns}path") if p.get("d"))  # a NaN segment is written without one
        bars += drawn if g.get("id") == INTERVAL_GID else 0
        bands += min(drawn, 1) if g.get("id") == BAND_GID else 0
    return bars, bands


@pytest.mark.timeout(300)
def test_interval_count_sees_a_missing_interval(tmp_path: Path) -> None:
    """The interval check on a page with known intervals: 2 error bars and 2 bands, counted alike on
    the page and in the file; one bar dropped from the file is caught."""
    from umae_eval.report import write_outputs

    _needs_chromium()
    rep = HtmlReport("intervals", command="probe")
    rep.add_figure("Accuracy", F.accuracy_figure(
        {"MAE": {"linear_accuracy": 35.0}, "U-MAE": {"linear_accuracy": 40.0}},
        intervals={"MAE": {"linear_accuracy": (32.4, 38.3)}, "U-MAE": {"linear_accuracy": (37.0, 44.0)}}),
        name="acc")
    curves = {n: {"epoch": [1, 2, 3], "linear_accuracy": [30.0, 35.0, 40.0]} for n in ("MAE", "U-MAE")}
    rep.add_figure("Fig. 3b", F.training_curve_figure(curves, metric="linear_accuracy", y_title="acc", title="3b",
                                                      eval_images={"MAE": 500, "U-MAE": 500}), name="curve")
    out = tmp_path / "out"
    write_outputs(out, "probe", {}, {}, None, rep)
    state = render_in_chromium(out / "report.html", tmp_path / "profile")
    page = {stem: (bars, bands) for stem, bars, bands in state["intervals"]}
    assert page == {"acc": (2, 0), "curve": (0, 2)}, page
    assert svg_intervals(out / "figures" / "acc.svg") == (2, 0)
    assert svg_intervals(out / "figures" / "curve.svg") == (0, 2)
    svg = (out / "figures" / "acc.svg").read_text()
    start = svg.index('<g id="umae-interval">')
    cut = svg.index("<path d=", start)
    (tmp_path / "cut.svg").write_text(svg[:cut] + "<path " + svg[svg.index("/>", cut):])
    assert svg_intervals(tmp_path / "cut.svg") == (1, 0)


@pytest.mark.timeout(900)  # the first one builds the four reports (minutes on a busy machine)
@pytest.mark.parametrize("which", REPORTS)
def test_every_interval_on_the_page_is_in_the_exported_figure(real_reports: dict[str, Path], which: str,
                                                              tmp_path: Path) -> None:
    """Each error bar and 95% band plotly draws on the page is drawn in that figure's figures/ SVG
    (counted per figure: the page's own data in Chromium against the file's interval elements)."""
    state = render_in_chromium(real_reports[which] / "report.html", tmp_path / "profile")
    page: dict[str, list[int]] = {}
    for stem, bars, bands in state["intervals"]:
        if bars or bands:
            assert stem, "a figure with intervals has no figures/ file name"
            page.setdefault(stem, [0, 0])
            page[stem][0] += bars
            page[stem][1] += bands
    if which != "probe":
        assert page, "no figure with an interval on the page: the check would be empty"
    for stem, (bars, bands) in page.items():
        svg = real_reports[which] / "figures" / f"{stem}.svg"
        assert svg.exists(), f"{stem}: intervals on the page, no exported figure"
        assert svg_intervals(svg) == (bars, bands), (stem, svg_intervals(svg), (bars, bands))


def page_fill(pdf: Path) -> list[float]:
    """Per printed page, the share of its height between its highest and lowest line of text
    (figures print their axis labels as text, so a figure counts as filled)."""
    from pypdf import PdfReader

    out = []
    for page in PdfReader(str(pdf)).pages:
        ys: list[float] = []

        def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
            if text.strip():
                ys.append(tm[4] * cm[1] + tm[5] * cm[3] + cm[5])

        page.extract_text(visitor_text=visit)
        height = float(page.mediabox.height)
        out.append((max(ys) - min(ys)) / height if len(ys) > 1 else 0.0)
    return out


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_demo_report_prints_without_near_blank_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """umae demo's page (t-SNE maps, curves, tables) printed to PDF: no page but the last is more than
    80% empty, and the page is at most 2 MB."""
    from umae_eval.cli import main
    from umae_eval.commands import demo as demo_cmd

    _needs_chromium()
    monkeypatch.setattr(demo_cmd, "DEMO_OVERRIDES", {
        "img_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2})
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--embed", "tsne", "--out", str(out), "--device", "cpu"]) == 0
    page = out / "report.html"
    assert page.stat().st_size <= 2_000_000, page.stat().st_size
    pdf = tmp_path / "demo.pdf"
    state = render_in_chromium(page, tmp_path / "profile", print_media=True, pdf_path=pdf)
    _check_page(state)
    fill = page_fill(pdf)
    assert len(fill) > 2 and all(f >= 0.2 for f in fill[:-1]), [round(f, 2) for f in fill]
