"""``unetlab serve`` in a real browser: headless Chromium from the system's packages, driven by
Selenium through the system chromedriver (nothing is downloaded at test time).

The server runs as a real subprocess on a free loopback port, on a model trained here in
seconds and a tiny synthetic dataset; the page uploads images, draws the overlay, ranks the
split and opens its worst image; the server is stopped by its PID. Outside CI the test skips
with the reason when the browser is absent; in CI (``CI=true``) it fails instead.

``python tests/test_serve_browser.py --docs docs/serve.png`` makes the README's screenshot with
the same page-driving code, on the model ``unetlab demo`` trains (its preset's whole schedule
unless ``--minutes`` gives a time budget).
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
WINDOW = (1440, 960)
STARTUP_S = 240.0
"""Seconds the server may take to import torch and open the model (a loaded CI machine)."""
WAIT_S = 60.0
"""Seconds any one thing on the page may take to appear (each takes well under one here)."""


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail in CI where the browser must be there."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason} (.ci/run installs chromium and chromium-driver)")
    pytest.skip(reason)


def browser_paths() -> tuple[str, str]:
    """Paths of the system Chromium and chromedriver (skip or fail when absent)."""
    for module in ("selenium", "fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            unavailable(f"{module} is not installed (pip install -e '.[dev,web]')")
    names = ("chromium", "chromium-browser", "google-chrome")
    browser = next((shutil.which(name) for name in names if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(
            name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path
        )
        unavailable(f"{missing} not found (apt-get install chromium chromium-driver)")
    return browser, driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen


@contextmanager
def running_server(
    model: Path, data: Path, log: Path, extra: tuple[str, ...] = (), startup_s: float = STARTUP_S
) -> Iterator[Server]:
    """``unetlab serve`` as a subprocess; yields it once it answers; stops it by its PID, on
    failure too (SIGTERM, then SIGKILL after 30 s)."""
    port = free_port()
    command = [sys.executable, "-m", "unetlab.cli.main", "serve", str(model), "--data", str(data)]
    command += ["--port", str(port), "--device", "cpu", *extra]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + startup_s  # generous: a loaded CI machine imports slowly
        while True:
            if process.poll() is not None:
                code = process.returncode
                raise AssertionError(f"the server exited ({code}):\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/card", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the server did not answer within {startup_s:g} s:\n{log.read_text()}"
                )
            time.sleep(0.5)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """End the server by its PID: SIGTERM (uvicorn shuts down), SIGKILL if it lingers."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextmanager
def chromium(browser: str, driver: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser  # both paths given: Selenium Manager downloads nothing
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        session.set_page_load_timeout(WAIT_S)
        session.set_script_timeout(WAIT_S)
        yield session
    finally:
        session.quit()


class PageFailed(AssertionError):
    """The page reported a JavaScript error (body[data-error]): no use waiting on."""


def console(session: Any) -> str:
    lines = [f"  {entry['level']}: {entry['message']}" for entry in session.get_log("browser")]
    return "\n".join(lines) or "  (empty)"


def wait(session: Any, condition, what: str, timeout: float | None = None) -> Any:
    """Poll ``condition(session)`` until it is truthy. Fails at once when the page reports a
    JavaScript error, and after ``timeout`` seconds (:data:`WAIT_S`) with what it waited for,
    the page's visible error and the browser console: never hangs."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    timeout = WAIT_S if timeout is None else timeout

    def check(session: Any) -> Any:
        error = session.execute_script("return document.body.dataset.error || ''")
        if error:
            raise PageFailed(
                f"the page failed while waiting for {what}: {error}\nbrowser console:\n"
                + console(session)
            )
        return condition(session)

    try:
        return WebDriverWait(session, timeout, poll_frequency=0.2).until(check)
    except TimeoutException:
        shown = session.execute_script(
            "const box = document.getElementById('upload-error');"
            "return box && !box.hidden ? box.innerText : ''"
        )
        raise AssertionError(
            f"waited {timeout:g} s for {what}; the page shows the error {shown!r}; "
            f"browser console:\n{console(session)}"
        ) from None


READ_PIXELS = (
    "const canvas = document.getElementById(arguments[0]);"
    "const context = canvas.getContext('2d');"
    "return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)"
)
SET_OPACITY = (
    "const slider = document.getElementById('opacity'); slider.value = arguments[0];"
    "slider.dispatchEvent(new Event('input'))"
)


def pixels(session: Any, canvas_id: str) -> np.ndarray:
    """The RGB pixels a canvas of the page shows (``H x W x 3``)."""
    canvas = session.find_element("id", canvas_id)
    height, width = int(canvas.get_attribute("height")), int(canvas.get_attribute("width"))
    flat = np.array(session.execute_script(READ_PIXELS, canvas_id), np.uint8)
    return flat.reshape(height, width, 4)[:, :, :3]


def legend(session: Any) -> list[tuple[str, float, bool]]:
    """(name, pixel share in %, shown) per row of the legend."""
    from selenium.webdriver.common.by import By

    return [
        (
            row.find_element(By.CLASS_NAME, "legend-name").text,
            float(row.find_element(By.CLASS_NAME, "legend-share").text.rstrip("%")),
            "off" not in row.get_attribute("class").split(),
        )
        for row in session.find_elements(By.CSS_SELECTOR, "#legend .legend-row")
    ]


def toggle_class(session: Any, index: int) -> None:
    """Click a class's box in the legend and wait for the overlay drawn without/with it."""
    from selenium.webdriver.common.by import By

    row = f'#legend .legend-row[data-class="{index}"]'
    was_on = "off" not in session.find_element(By.CSS_SELECTOR, row).get_attribute("class")
    session.find_element(By.CSS_SELECTOR, f"{row} input").click()
    wait(
        session,
        lambda s: ("off" in s.find_element(By.CSS_SELECTOR, row).get_attribute("class")) == was_on,
        f"the legend and overlay redrawn with class {index} switched {'off' if was_on else 'on'}",
    )


def overlay_link(session: Any) -> str:
    return session.find_element("id", "download-overlay").get_attribute("href")


def drive_page(
    session: Any,
    url: str,
    images: list[Path],
    bad_file: Path,
    screenshots: Path,
    inspection_s: float = WAIT_S,
) -> dict:
    """What a person does: upload a file that is no image, then several images at once; read the
    legend; switch classes off and on; move the opacity slider; show a heat map; open the
    worst image of the inspection (given ``inspection_s`` seconds to score the split). The last
    of ``images`` is the one looked at. Returns what the page showed and writes ``predict.png``
    and ``inspect.png`` into ``screenshots``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    seen: dict[str, Any] = {}
    session.get(url)
    wait(
        session,
        lambda s: s.execute_script("return document.body.dataset.ready") == "1",
        "the model card to load (body[data-ready])",
    )
    seen["card"] = session.find_element(By.ID, "card").text
    upload = session.find_element(By.ID, "file-input")

    upload.send_keys(str(bad_file))
    alert = session.find_element(By.ID, "upload-error")
    wait(session, lambda s: alert.is_displayed() and alert.text, "the refusal of the text file")
    seen["error"] = alert.text

    upload.send_keys("\n".join(str(image) for image in images))  # several files at once
    canvas = session.find_element(By.ID, "overlay-canvas")

    def last_shown(session: Any) -> str | None:
        chips = session.find_elements(By.CSS_SELECTOR, "#queue .chip[data-result]")
        last = chips[-1].get_attribute("data-result") if len(chips) == len(images) else None
        return last if last and canvas.get_attribute("data-ready") == last else None

    seen["result"] = wait(session, last_shown, f"the overlays of {len(images)} uploaded images")
    seen["chips"] = len(session.find_elements(By.CSS_SELECTOR, "#queue .chip[data-result]"))
    seen["upload_error_shown"] = alert.is_displayed()
    seen["legend"] = legend(session)
    seen["overlay"] = pixels(session, "overlay-canvas")
    seen["image"] = pixels(session, "image-canvas")
    seen["downloads"] = {
        kind: session.find_element(By.ID, f"download-{kind}").get_attribute("href")
        for kind in ("mask", "overlay")
    }
    session.save_screenshot(str(screenshots / "predict.png"))

    toggle_class(session, 1)
    seen["overlay_without_1"] = pixels(session, "overlay-canvas")
    toggle_class(session, 1)
    toggle_class(session, 0)  # the background, left clear at first
    seen["overlay_with_background"] = pixels(session, "overlay-canvas")
    toggle_class(session, 0)

    session.execute_script(SET_OPACITY, 100)
    Select(session.find_element(By.ID, "mode")).select_by_value("heat")
    caption = session.find_element(By.ID, "overlay-caption")
    wait(
        session,
        lambda s: caption.text.startswith("Probability") and "alpha=1&" in overlay_link(s),
        "the heat map at full opacity",
    )
    seen["heat_caption"] = caption.text
    seen["heat"] = pixels(session, "overlay-canvas")
    Select(session.find_element(By.ID, "mode")).select_by_value("classes")
    session.execute_script(SET_OPACITY, 50)
    wait(
        session,
        lambda s: caption.text == "Prediction" and "alpha=0.5&" in overlay_link(s),
        "the classes again at half opacity",
    )

    session.find_element(By.ID, "tab-button-inspect").click()
    table = session.find_element(By.ID, "rank-table")
    wait(session, lambda s: table.get_attribute("data-ready"), "the inspection table", inspection_s)
    rows = session.find_elements(By.CSS_SELECTOR, "#rank-table tbody tr")
    seen["ranked"] = [row.find_element(By.CLASS_NAME, "id").text for row in rows]
    rows[0].click()
    detail = session.find_element(By.ID, "detail")
    first = rows[0].get_attribute("data-index")
    wait(
        session,
        lambda s: detail.get_attribute("data-ready") == first,
        f"the four panels of image {first}",
    )
    seen["panels"] = [
        session.execute_script("return arguments[0].naturalWidth", image)
        for image in session.find_elements(By.CSS_SELECTOR, ".panels img")
    ]
    seen["detail"] = session.find_element(By.ID, "detail-name").text
    seen["error_legend"] = session.find_element(By.ID, "error-legend").text
    seen["confusion_cells"] = len(session.find_elements(By.CSS_SELECTOR, "#confusion tbody td"))
    seen["class_score_rows"] = len(session.find_elements(By.CSS_SELECTOR, "#class-scores tbody tr"))
    session.save_screenshot(str(screenshots / "inspect.png"))
    seen["browser_errors"] = [
        entry for entry in session.get_log("browser") if entry["level"] == "SEVERE"
    ]
    return seen


def train_tiny(root: Path) -> tuple[Path, Path]:
    """A 3-class model trained for two epochs on 32 px shapes: a few seconds."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_train import tiny_config, tiny_dataset

    from unetlab.engine.trainer import train

    data = tiny_dataset(root / "data", n_train=8, n_val=4, num_classes=3)
    result = train(tiny_config(data, root / "runs"))
    return result.run_dir, data


def per_image_iou(predictor: Any, data: Path) -> dict[str, float]:
    """Independent reference: each val image's mIoU from numpy counts."""
    from unetlab.data.io import read_image, read_mask

    scores = {}
    for sample_id in (data / "splits" / "val.txt").read_text().split():
        labels = predictor.predict(read_image(data / "images" / f"{sample_id}.png")).labels
        truth = read_mask(data / "masks" / f"{sample_id}.png")
        k = predictor.num_classes
        matrix = np.bincount(truth.ravel() * k + labels.ravel(), minlength=k * k).reshape(k, k)
        tp = np.diag(matrix)
        union = matrix.sum(0) + matrix.sum(1) - tp
        scores[sample_id] = float(np.mean(tp[union > 0] / union[union > 0]))
    return scores


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """A GET with the path sent exactly as written (no client-side normalisation of '..')."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.mark.slow
def test_serve_in_a_real_browser(tmp_path: Path) -> None:
    browser, driver = browser_paths()
    import matplotlib

    from unetlab.inference.predictor import Predictor

    run, data = train_tiny(tmp_path)
    image_path = data / "images" / "shape_0009.png"
    bad_file = tmp_path / "notes.png"
    bad_file.write_text("this is text, not a picture\n")
    shots = tmp_path / "shots"
    shots.mkdir()

    with running_server(run, data, tmp_path / "server.log") as server:
        url = server.url
        for path in (
            "/static/../../../../../etc/passwd",
            "/static/%2e%2e/%2e%2e/pyproject.toml",
            "/static/..%2f..%2f..%2fpyproject.toml",
            "/../../../etc/passwd",
        ):
            status, body = raw_get(url, path)
            assert status in (400, 404), path
            assert b"root:" not in body and b"[project]" not in body, path
        with chromium(browser, driver) as session:
            seen = drive_page(
                session, url, [data / "images" / "shape_0008.png", image_path], bad_file, shots
            )
        result = seen["result"]
        downloads = {kind: fetch(link) for kind, link in seen["downloads"].items()}
        probability = fetch(f"{url}/api/results/{result}/probability/1")
    assert server.process.poll() is not None  # stopped by its PID
    copy_to = os.environ.get("UNETLAB_SCREENSHOTS")
    if copy_to:  # keep the pictures for a look
        for name in ("predict.png", "inspect.png"):
            shutil.copy(shots / name, Path(copy_to) / name)

    assert "notes.png: not an image" in seen["error"]
    assert not seen["upload_error_shown"]  # the next good upload cleared it
    assert seen["browser_errors"] == [] or all(
        "/api/predict" in entry["message"] for entry in seen["browser_errors"]
    )  # the refused upload's 415 is the only error the console may show

    predictor = Predictor.from_checkpoint(run, device="cpu")
    names = predictor.class_names
    assert "unet" in seen["card"] and all(name in seen["card"] for name in names)
    image = np.array(Image.open(image_path).convert("RGB"))
    labels = predictor.predict(image).labels
    assert seen["chips"] == 2
    shares = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
    assert [name for name, _, _ in seen["legend"]] == names
    np.testing.assert_allclose([share for _, share, _ in seen["legend"]], 100 * shares, atol=0.051)
    # the background starts switched off: the overlay tints what was found, as predict's does
    assert [shown for _, _, shown in seen["legend"]] == [False, True, True]

    # the overlay the page drew: (1 - 0.5) * image + 0.5 * class colour, the background clear
    assert seen["image"].shape[:2] == labels.shape
    np.testing.assert_array_equal(seen["image"], image)
    colors = np.array(predictor.class_colors, float)[labels]
    tinted = 0.5 * image + 0.5 * colors
    drawn = seen["overlay"]
    np.testing.assert_allclose(drawn[labels != 0], tinted[labels != 0], atol=1.01)
    np.testing.assert_array_equal(drawn[labels == 0], image[labels == 0])
    # class 1 switched off: its pixels show the image, the others stay as they were
    off = seen["overlay_without_1"]
    assert (labels == 1).any() and (labels == 0).any()
    np.testing.assert_array_equal(off[labels == 1], image[labels == 1])
    np.testing.assert_array_equal(off[labels != 1], drawn[labels != 1])
    # the background switched on: every pixel tinted
    np.testing.assert_allclose(seen["overlay_with_background"], tinted, atol=1.01)
    # the heat map at full opacity: matplotlib's viridis of the class-1 probability (the page
    # draws a polynomial fit of it, at most 4 levels off)
    assert seen["heat_caption"] == f"Probability of {names[1]}"
    p = np.frombuffer(probability, np.uint8).reshape(labels.shape)
    reference = np.round(255 * matplotlib.colormaps["viridis"](p / 255)[:, :, :3])
    np.testing.assert_allclose(seen["heat"], reference, atol=4.01)
    # the downloads: the index mask, and the overlay as the page drew it
    with Image.open(io.BytesIO(downloads["mask"])) as mask:
        np.testing.assert_array_equal(np.asarray(mask), labels)
    with Image.open(io.BytesIO(downloads["overlay"])) as overlay:
        np.testing.assert_allclose(np.asarray(overlay.convert("RGB")), drawn, atol=1.01)

    ious = per_image_iou(predictor, data)
    assert sorted(seen["ranked"]) == sorted(ious)
    assert [ious[i] for i in seen["ranked"]] == sorted(ious.values())  # worst first
    assert seen["detail"] == seen["ranked"][0]
    assert all(width > 0 for width in seen["panels"]) and len(seen["panels"]) == 4
    assert "false positives" in seen["error_legend"] and "false negatives" in seen["error_legend"]
    assert seen["confusion_cells"] == len(names) ** 2
    assert seen["class_score_rows"] == len(names)
    for name in ("predict.png", "inspect.png"):
        with Image.open(shots / name) as screenshot:
            assert screenshot.width == WINDOW[0]  # the height is the window's less its frame
            # not a blank page: the screenshot holds many colours
            assert len(screenshot.convert("RGB").getcolors(1 << 20) or []) > 200


def make_docs_screenshot(out: Path, workdir: Path, minutes: float | None) -> None:
    """The README's picture: the inspection page of the model ``unetlab demo`` trains (in
    ``workdir``; reused when it is there), after the same steps as the browser test.

    ``minutes`` None trains the demo preset's whole schedule rather than a time budget, so a
    busy machine still gets the model an idle laptop gets in about a minute."""
    from unetlab.artifacts.checkpoint import resolve_checkpoint
    from unetlab.engine.demo import run_demo

    browser, driver = browser_paths()
    runs = sorted((workdir / "runs").glob("*/checkpoints/best.pt"))
    if runs:
        run, data = runs[-1].parent.parent, workdir / "shapes"
    else:
        budget = ("train.time_limit_minutes=null",) if minutes is None else ()
        summary = run_demo(workdir, minutes=minutes or 1.0, device="cpu", overrides=budget)
        print(summary.text)
        if summary.report is None:
            raise SystemExit(f"the demo stopped; resume it or delete {workdir}")
        run, data = summary.result.run_dir, summary.data_root
    print(f"serving {resolve_checkpoint(run)} on {data}")
    bad_file = workdir / "notes.png"
    bad_file.write_text("text\n")
    shots = workdir / "shots"
    shots.mkdir(exist_ok=True)
    val = (data / "splits" / "val.txt").read_text().split()
    images = [data / "images" / f"{sample_id}.png" for sample_id in val[:2]]
    log = workdir / "server.log"
    with running_server(run, data, log) as server, chromium(browser, driver) as session:
        drive_page(session, server.url, images, bad_file, shots, inspection_s=1800)
    with Image.open(shots / "inspect.png") as picture:
        small = picture.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
    temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    temp.write_bytes(buffer.getvalue())
    os.replace(temp, out)  # atomic: a half-written picture never replaces the old one
    print(f"wrote {out} ({len(buffer.getvalue()) / 1024:.0f} KB); all shots in {shots}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Make the README's screenshot of unetlab serve.")
    parser.add_argument("--docs", type=Path, required=True, help="where to write the PNG")
    parser.add_argument("--workdir", type=Path, default=Path("serve-screenshot"))
    parser.add_argument(
        "--minutes", type=float, default=None, help="the demo's time budget (default: none)"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    make_docs_screenshot(args.docs, args.workdir, args.minutes)
