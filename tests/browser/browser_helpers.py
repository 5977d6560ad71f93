"""Helpers of the browser tests: a fake-camera video file, a JupyterLab server, Chromium.

Everything runs on the loopback interface (127.0.0.1). Chromium is the Debian
package (``apt-get install -y chromium``) driven by Playwright's Python client
(``pip install playwright``); ``playwright install`` is never needed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM_VARIABLE = "MFR_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def write_y4m(path: Path, frames, fps: int = 10) -> Path:
    """Write RGB ``uint8`` frames as a YUV4MPEG2 file (4:2:0, JPEG full-range YCbCr) for Chromium's fake camera.

    Parameters
    ----------
    path : Path
    frames : sequence of (H, W, 3) ndarray of uint8
        RGB frames of one size; H and W must be even.
    fps : int
        Frame rate written in the header.
    """
    import cv2

    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"Frame size {width}x{height} must be even for 4:2:0 chroma subsampling.")
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames:
            # OpenCV's 8-bit RGB->YCrCb is the full-range BT.601 transform of JPEG.
            ycrcb = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YCrCb)
            luma = ycrcb[:, :, 0]
            cr = cv2.resize(ycrcb[:, :, 1], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
            cb = cv2.resize(ycrcb[:, :, 2], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
            handle.write(b"FRAME\n")
            handle.write(luma.tobytes())
            handle.write(cb.tobytes())
            handle.write(cr.tobytes())
    return path


def require_browser() -> str:
    """Return the Chromium executable, or fail the test with the install commands."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("The Python package playwright is missing: install it with `pip install 'playwright>=1.40'` (no `playwright install` needed).")
    executable = os.environ.get(CHROMIUM_VARIABLE, DEFAULT_CHROMIUM)
    if not (Path(executable).is_file() or shutil.which(executable)):
        pytest.fail(
            f"Chromium was not found at {executable!r}: install it with `apt-get update && apt-get install -y chromium`, "
            f"or set {CHROMIUM_VARIABLE} to its path."
        )
    return executable


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root: Path, log_path: Path, env: dict | None = None, timeout: float = 90.0):
    """Run JupyterLab on 127.0.0.1 with a random port and token; yield its base URL and token.

    Configuration, workspaces and runtime files go under ``root/.jupyter-test``
    so that the user's own settings are neither read nor changed. The server
    is stopped by its PID on exit, which also stops its kernels.
    """
    port = free_port()
    token = secrets.token_hex(16)
    state = root / ".jupyter-test"
    for name in ("config", "data", "runtime", "workspaces", "settings"):
        (state / name).mkdir(parents=True, exist_ok=True)
    # Render every cell of a notebook: with JupyterLab's default windowing, cells far from the viewport are
    # detached from the page, and a widget in such a cell cannot be found or clicked.
    tracker_settings = state / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker_settings.parent.mkdir(parents=True, exist_ok=True)
    tracker_settings.write_text('{"windowingMode": "none"}\n', encoding="utf-8")
    # No news: the prompt would cover part of the page, and fetching news would leave the loopback interface.
    notification_settings = state / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification_settings.parent.mkdir(parents=True, exist_ok=True)
    notification_settings.write_text('{"fetchNews": "false", "checkForUpdates": false}\n', encoding="utf-8")
    process_env = dict(os.environ)
    process_env.update(env or {})
    process_env.update(
        {
            "JUPYTER_CONFIG_DIR": str(state / "config"),
            "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
            "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
            "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        }
    )
    command = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        # The read-only extension manager never queries PyPI.
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # CI containers often run as root, which Jupyter refuses without this switch.
        command.append("--allow-root")
    log_handle = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=root, env=process_env, stdout=log_handle, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {process.returncode}; see {log_path}.")
            try:
                with urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer on {base_url} within {timeout:.0f} s; see {log_path}.")
            time.sleep(0.5)
        yield base_url, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log_handle.close()


def chromium_args(video_file: Path) -> list[str]:
    """Command-line switches for headless Chromium with a fake camera that plays ``video_file``."""
    return [
        "--no-sandbox",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video_file}",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]
