"""Monitoring end to end, as a user meets it: serve the digits model, send normal
traffic, then traffic whose images are changed (inverted, rotated, noised), send the
true labels back, and see the drift on the second window only, the accuracy fall, and
an alert fire once to a real webhook listener on loopback."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import Cli
from tests.integration.serving_models import ServerProcess

ROOT = Path(__file__).parents[2]
MODEL = "digits-image-classifier"
WINDOW_S = 3  # the monitor's window; the two kinds of traffic are further apart than this
SETUP = [
    "conveyor init my-project",
    "conveyor data ingest ../digits --name digits",
    "conveyor data split digits@latest --train 0.8 --val 0.1 --test 0.1 --stratify label --seed 0",
    "conveyor train image-classifier --data digits@latest --epochs 6",
    f"conveyor models promote {MODEL}@v1 --to production --reason first",
]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP listener on loopback that keeps every payload posted to it."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers["content-length"])
            received.append(json.loads(self.rfile.read(size)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _changed(png: bytes, how: str, rng: np.random.Generator) -> bytes:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    if how == "inverted":
        pixels = 255 - pixels
    elif how == "rotated":
        pixels = np.rot90(pixels)
    else:
        pixels = pixels + rng.normal(0, 70, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(out, "PNG")
    return out.getvalue()


def _send(url: str, images: list[tuple[bytes, str]], prefix: str) -> dict[str, str]:
    """One image per request; returns request id -> true label."""
    truth = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, (png, label) in enumerate(images):
            rid = f"{prefix}-{i}"
            r = client.post(
                f"/predict/{MODEL}",
                content=png,
                headers={"content-type": "image/png", "x-request-id": rid},
            )
            assert r.status_code == 200, r.text
            truth[rid] = label
    return truth


def _iso(at: datetime) -> str:
    return at.isoformat()


def test_changed_images_drift_lower_accuracy_and_fire_one_alert(
    cli: Cli, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    write = [sys.executable, str(ROOT / "examples" / "digits.py"), "digits", "--corrupt", "0"]
    subprocess.run(write, cwd=tmp_path, check=True, capture_output=True)
    project = tmp_path / "my-project"
    for line in SETUP:
        cwd = tmp_path if line.startswith("conveyor init") else project
        result = cli(*line.split()[1:], cwd=cwd)
        assert result.returncode == 0, (line, result.stderr[-2000:])
    files = sorted((tmp_path / "digits").glob("*/[0-9]*.png"))
    rng = np.random.default_rng(0)
    picked = random.Random(0).sample(files, 300)
    normal = [(f.read_bytes(), f.parent.name) for f in picked]
    kinds = ["inverted", "rotated", "noised"]
    changed = [(_changed(png, kinds[i % 3], rng), label) for i, (png, label) in enumerate(normal)]

    url, received = webhook
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"model: {MODEL}:production\nwindow: {WINDOW_S}s\nevery: 1s\n"
        f"webhooks:\n  - url: {url}\n    timeout: 5s\n"
        "rules:\n  - drift.share > 0.2\n  - accuracy < 0.8 min_labels 50\n"
    )
    with ServerProcess([f"{MODEL}:production", "--log-flush", "0.2"], workspace=project) as s:
        start = datetime.now(UTC)
        truth = _send(s.url, normal, "normal")
        first_end = datetime.now(UTC)
        time.sleep(WINDOW_S + 0.5)  # no window of the monitor holds both kinds of traffic
        second_start = datetime.now(UTC)
        truth |= _send(s.url, changed, "changed")
        second_end = datetime.now(UTC)
        labels = [{"request_id": rid, "label": label} for rid, label in truth.items()]
        answer = httpx.post(f"{s.url}/feedback/{MODEL}", json=labels, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 600 and answer.json()["unmatched"] == []

    def report(since: datetime, until: datetime) -> dict[str, Any]:
        args = ["monitor", "report", f"{MODEL}:production", "--since", _iso(since)]
        done = cli(*args, "--until", _iso(until), "--json", cwd=project)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    before, after = report(start, first_end), report(second_start, second_end)
    assert before["health"]["requests"] == after["health"]["requests"] == 300
    assert before["drift"]["drift"] is False, before["drift"]
    assert after["drift"]["drift"] is True
    moved = {c["name"] for c in after["drift"]["columns"] if c["drift"]}
    assert "pixel_mean" in moved  # inverted digits are bright
    for c in after["drift"]["columns"]:
        assert {"test", "statistic", "p_value", "effect", "threshold", "drift"} <= set(c)
    assert before["accuracy"]["labelled"] == after["accuracy"]["labelled"] == 300
    # the fall is larger than both intervals: not noise
    assert after["accuracy"]["ci"][1] < before["accuracy"]["ci"][0]

    # the same engine, any two things: the dataset against each window, two windows
    def drift(*args: str) -> dict[str, Any]:
        done = cli("monitor", "drift", *args, "--json", cwd=project)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    served = f"{MODEL}:production"
    first = ["--since", _iso(start), "--until", _iso(first_end)]
    second = ["--since", _iso(second_start), "--until", _iso(second_end)]
    assert drift("--reference", "digits@v2", "--current", served, *first)["drift"] is False
    assert drift("--reference", "digits@v2", "--current", served, *second)["drift"] is True
    windows = drift(
        "--reference", served, "--reference-since", _iso(start), "--reference-until",
        _iso(first_end), "--current", served, *second,
    )  # fmt: skip
    assert windows["drift"] is True and windows["n_reference"] == windows["n_current"] == 300

    page = tmp_path / "report.html"
    args = ["monitor", "report", f"{MODEL}@v1", "--since", _iso(second_start)]
    html = cli(*args, "--until", _iso(second_end), "--out", str(page), cwd=project)
    assert html.returncode == 0, html.stderr
    assert "pixel_mean" in page.read_text() and "<svg" in page.read_text()

    def check(at: datetime) -> dict[str, Any]:
        done = cli("monitor", "check", str(config), "--at", _iso(at), "--json", cwd=project)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    assert check(first_end)["events"] == []  # normal traffic: nothing fires
    fired = check(second_end)
    assert {e["rule"] for e in fired["events"]} == {
        "drift.share > 0.2",
        "accuracy < 0.8 min_labels 50",
    }
    assert {e["kind"] for e in fired["events"]} == {"firing"}
    assert check(second_end)["events"] == []  # still true: no repeat
    assert check(second_end + timedelta(minutes=5))["events"] == []  # no traffic: no data
    assert sorted(p["rule"] for p in received) == sorted(e["rule"] for e in fired["events"])
    _scrape_a_running_monitor(config, project)
    status = cli("monitor", "status", "--window", "24h", "--json", cwd=project)
    assert status.returncode == 0, status.stderr
    (served,) = json.loads(status.stdout)["versions"]
    assert {a["rule"] for a in served["alerts"]} == {e["rule"] for e in fired["events"]}


def _scrape_a_running_monitor(config: Path, project: Path) -> None:
    """`monitor run` serves its figures on /metrics and stops cleanly on SIGTERM."""
    port = _free_port()
    args = ["monitor", "run", str(config), "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args], cwd=project, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while not _checked_once(text) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                time.sleep(0.2)
        assert f'conveyor_monitor_alerts_open{{model="{MODEL}"' in text
        assert "conveyor_monitor_window_requests" in text
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def _checked_once(metrics: str) -> bool:
    done = [
        line for line in metrics.splitlines() if line.startswith("conveyor_monitor_checks_total")
    ]
    return bool(done) and float(done[0].split()[-1]) >= 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
