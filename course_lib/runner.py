"""Execute notebooks in a fresh kernel and measure their run time and peak memory."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NotebookRun:
    """Result of executing one notebook.

    Attributes
    ----------
    notebook : str
        File name.
    seconds : float
        Wall-clock time from kernel start to the end of the last cell.
    peak_memory_mb : float
        Peak resident memory of the kernel process and its children, in MiB
        (1 MiB = 2**20 bytes), sampled every 0.2 s.
    error : str or None
        The first error raised by a cell, or None when every cell ran.
    output_path : Path or None
        Where the executed notebook was written.
    """

    notebook: str
    seconds: float
    peak_memory_mb: float
    error: str | None
    output_path: Path | None


class _MemorySampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            process = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.is_set():
            try:
                total = process.memory_info().rss
                for child in process.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                return
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)


def execute_notebook(
    path: os.PathLike | str,
    output_dir: os.PathLike | str | None = None,
    timeout: int = 1800,
    environment: dict[str, str] | None = None,
) -> NotebookRun:
    """Execute a notebook top to bottom in a new kernel, measuring time and peak memory.

    Parameters
    ----------
    path : path
        The ``.ipynb`` file; it is not modified.
    output_dir : path, optional
        Folder that receives the executed copy.
    timeout : int
        Per-cell time limit in seconds.
    environment : dict, optional
        Extra environment variables for the kernel (for example ``{"MFR_QUICK": "1"}``).

    Returns
    -------
    NotebookRun
        With ``error`` set (not raised) when a cell fails, so a batch of
        notebooks can report every failure.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    saved_environment = dict(os.environ)
    os.environ.update(environment or {})
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    error = None
    sampler = None
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            sampler = _MemorySampler(client.km.provisioner.process.pid)
            sampler.start()
            try:
                for index, cell in enumerate(notebook.cells):
                    client.execute_cell(cell, index)
            except CellExecutionError as failure:
                error = str(failure).strip().splitlines()[-1] if str(failure).strip() else "cell failed"
    finally:
        seconds = time.perf_counter() - start
        if sampler is not None:
            sampler.stop()
        os.environ.clear()
        os.environ.update(saved_environment)

    output_path = None
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        output_path = output_dir / path.name
        nbformat.write(notebook, output_path)
    peak = (sampler.peak_bytes if sampler else 0) / 2**20
    log.info("%s: %.0f s, peak %.0f MiB%s", path.name, seconds, peak, f", error: {error}" if error else "")
    return NotebookRun(notebook=path.name, seconds=seconds, peak_memory_mb=peak, error=error, output_path=output_path)
