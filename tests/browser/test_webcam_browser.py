"""End-to-end test of notebook 06 in JupyterLab, headless Chromium and a fake camera.

The fake camera plays a video of real LFW and RMFRD faces (built from the
dataset mirror named by ``MFR_DATA_DIR``). The test runs every cell of the
demo notebook, presses Start in the webcam widget and checks that the
kernel's detections come back and are drawn. A second browser without the
fake camera device then checks the widget's missing-camera message. The final screenshot is written
to ``artifacts/webcam_demo.png`` and copied to ``docs/images/webcam_demo.png``.

Needs ``apt-get install -y chromium`` and ``pip install playwright``; a missing
one fails the test with that message.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from browser_helpers import chromium_args, jupyter_lab, require_browser, write_y4m

from course_lib.pipeline import build_demo_sequence

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "06_webcam_demo.ipynb"
ARTIFACT = REPOSITORY / "artifacts" / "webcam_demo.png"
README_IMAGE = REPOSITORY / "docs" / "images" / "webcam_demo.png"

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # require_browser() fails the test with the install command.
    PlaywrightTimeoutError = TimeoutError


def _read_state(page) -> dict:
    return page.eval_on_selector(".mfr-webcam", "(root) => ({...root.dataset})")


def _run_all_cells(page) -> None:
    """Choose Run > Run All Cells, retrying until a cell prompt shows ``[*]`` (the menu item is inactive until the notebook has focus)."""
    for _attempt in range(3):
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        item = page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel", has_text="Run All Cells").first
        item.wait_for(state="visible", timeout=10_000)
        item.click()
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-InputPrompt')].some((p) => p.textContent.includes('*'))", timeout=20_000
            )
            return
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
    raise AssertionError("Run > Run All Cells did not start the notebook's cells after 3 attempts.")


def _wait_for_idle_notebook(page, timeout_ms: int) -> None:
    """Wait until the kernel is connected and idle and no cell prompt shows ``[*]``."""
    page.wait_for_function(
        """() => {
            const status = document.querySelector('.jp-StatusBar-Widget, #jp-main-statusbar');
            if (!status || !status.textContent.includes('| Idle')) return false;
            const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
            const idle = indicator && indicator.getAttribute('data-status') === 'idle';
            const prompts = [...document.querySelectorAll('.jp-InputPrompt')].map((p) => p.textContent);
            return idle && !prompts.some((text) => text.includes('*'));
        }""",
        timeout=timeout_ms,
    )


def test_webcam_demo_browser(tmp_path):
    chromium = require_browser()
    from playwright.sync_api import sync_playwright

    sequence = build_demo_sequence(n_frames=40)
    video = write_y4m(tmp_path / "faces.y4m", sequence.frames, fps=10)
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    env = {"MFR_QUICK": "1", "PYTHONPATH": str(REPOSITORY) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    with jupyter_lab(tmp_path, tmp_path / "jupyter.log", env=env) as (base_url, token):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=chromium_args(video))
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{base_url}/lab/tree/{NOTEBOOK.name}?token={token}")
                page.wait_for_selector(".jp-NotebookPanel", timeout=90_000)
                _wait_for_idle_notebook(page, timeout_ms=90_000)

                _run_all_cells(page)
                # With an empty cache the notebook first trains the quick mask CNN and embedding model
                # (about 3 minutes on two CPU cores), before it shows the widget.
                page.wait_for_selector(".mfr-webcam", state="attached", timeout=600_000)
                _wait_for_idle_notebook(page, timeout_ms=600_000)
                errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .jp-RenderedText:has-text('Traceback')")
                assert errors.count() == 0, f"A cell of {NOTEBOOK.name} raised: {errors.first.inner_text()[:2000]}"

                widget = page.locator(".mfr-webcam").first
                widget.scroll_into_view_if_needed()
                widget.locator(".mfr-webcam-start").click()
                page.wait_for_function(
                    "() => { const r = document.querySelector('.mfr-webcam'); return Number(r.dataset.frames) >= 5 && Number(r.dataset.maxFaces) >= 1; }",
                    timeout=120_000,
                )
                state = _read_state(page)
                # Wait for a frame with three or more of the four faces boxed, so the screenshot shows boxes and
                # labels. Under heavy load the tracker can lose faces, so any frame with a face will do after 30 s.
                faces_at_least = "(n) => Number(document.querySelector('.mfr-webcam').dataset.faces) >= n"
                try:
                    page.wait_for_function(faces_at_least, arg=3, timeout=30_000)
                except PlaywrightTimeoutError:
                    page.wait_for_function(faces_at_least, arg=1, timeout=60_000)
                widget.scroll_into_view_if_needed()
                ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                widget.screenshot(path=str(ARTIFACT))
                state = _read_state(page)

                widget.locator(".mfr-webcam-stop").click()
                page.wait_for_function("() => document.querySelector('.mfr-webcam').dataset.state === 'stopped'", timeout=10_000)
                message = widget.locator(".mfr-webcam-message").inner_text()
                page.keyboard.press("Control+s")
                page.wait_for_timeout(2_000)
            finally:
                browser.close()

            # A second browser without the fake camera device: Start must show the missing-camera message.
            no_camera_args = [arg for arg in chromium_args(video) if "fake-device" not in arg and "fake-video" not in arg]
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=no_camera_args)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{base_url}/lab/tree/{NOTEBOOK.name}?token={token}")
                page.wait_for_selector(".mfr-webcam", state="attached", timeout=90_000)
                widget = page.locator(".mfr-webcam").first
                widget.scroll_into_view_if_needed()
                widget.locator(".mfr-webcam-start").click()
                page.wait_for_function("() => document.querySelector('.mfr-webcam').dataset.state === 'error'", timeout=30_000)
                no_camera_message = widget.locator(".mfr-webcam-message").inner_text()
            finally:
                browser.close()

    labels = json.loads(state["labels"])
    assert state["state"] == "running"
    assert int(state["frames"]) >= 5
    assert int(state["faces"]) >= 1
    assert len(labels) == int(state["faces"])
    assert all(label for label in labels), f"Empty label in {labels}"
    assert any(("mask" in label) or ("unknown" in label) for label in labels), f"No mask status in the labels {labels}"
    assert "rejected" not in message.lower(), f"The widget showed: {message}"
    assert "NotFoundError" in no_camera_message, f"Without a camera the widget showed: {no_camera_message!r}"
    assert "'sequence'" in no_camera_message
    README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ARTIFACT, README_IMAGE)
