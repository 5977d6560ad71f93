"""Command line of the course benchmarks.

Sub-commands::

    python -m benchmarks notebooks   # quick-mode time and peak memory of every notebook
    python -m benchmarks inference   # crops or frames per second of each deployed model
    python -m benchmarks training    # training images per second
    python -m benchmarks accuracy    # full-mode accuracy figures of notebooks 02 to 05
    python -m benchmarks all         # all of the above
    python -m benchmarks report      # rewrite docs/benchmarks.md from benchmarks/results/
    python -m benchmarks run-notebooks  # execute every notebook (used by ./course run)

Every measuring sub-command stores its rows with the machine description in
``benchmarks/results/<sub-command>.json`` (one file per machine kind, CPU or
GPU, so a GPU run adds rows instead of replacing the CPU ones) and then
rewrites ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from .machine import describe_machine
from .report import RESULTS_DIR, write_report

log = logging.getLogger("benchmarks")

REPOSITORY = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPOSITORY / "notebooks"

NOTEBOOK_MEMORY_BUDGET_MB = 2048.0
"""Binder gives a student 2 GB (here taken as 2 GiB = 2,048 MiB) of memory."""
NOTEBOOK_MEMORY_BUDGETS_MB = {"00_setup_and_tour.ipynb": 1536.0}
"""Tighter memory budgets for single notebooks: the tour must leave room on Binder for a second open notebook."""
NOTEBOOK_TOTAL_BUDGET_S = 20 * 60
"""The whole quick-mode notebook run must finish within 20 minutes on a 2-core CPU."""

TOPIC_MODULES = ("bench_masks", "bench_descriptors", "bench_classifier", "bench_detection", "bench_recognition", "bench_pipeline")
"""Modules under benchmarks/ that may define ``inference()``, ``training()`` or ``accuracy()``."""


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def measured_on(machine: dict) -> str:
    """Return the date and CPU of a machine description, the provenance stored in every row."""
    return f"{machine['date']}, {machine['cpu']}"


def _store(name: str, rows: list[dict], command: str, notes: list[str] | None = None) -> Path:
    machine = describe_machine()
    kind = "gpu" if machine["gpus"] else "cpu"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{kind}.json"
    # Each row names its own date and CPU, because a partial run keeps rows measured earlier, perhaps elsewhere.
    rows = [{**row, "measured on": measured_on(machine)} for row in rows]
    if "--only" in command and path.is_file():
        # A partial run replaces only the rows of what it measured.
        previous = json.loads(path.read_text(encoding="utf-8"))
        key = "notebook" if name == "notebooks" else "topic"
        measured = {row.get(key) for row in rows}
        kept = [
            {**row, "measured on": row.get("measured on", measured_on(previous["machine"]))}
            for row in previous["rows"]
            if row.get(key) not in measured and not str(row.get(key, "")).startswith("all notebooks")
        ]
        rows = kept + rows
        # Each partial command is listed once, at the position of its latest run.
        earlier = [part for part in previous["command"].split("; ") if part != command]
        command = "; ".join([*earlier, command])
    payload = {"name": name, "command": command, "machine": machine, "rows": rows, "notes": notes or []}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"Wrote {path.relative_to(REPOSITORY)}")
    return path


def measure_notebooks(selected: list[str] | None = None) -> list[dict]:
    """Execute each notebook in quick mode in a fresh kernel; return one row per notebook plus budget rows."""
    from course_lib.config import cache_dir
    from course_lib.runner import execute_notebook

    rows = []
    output_dir = cache_dir("benchmarks", "executed")
    for path in _notebooks():
        if selected and not any(name in path.name for name in selected):
            continue
        print(f"Running {path.name} in quick mode ...", flush=True)
        run = execute_notebook(path, output_dir=output_dir, environment={"MFR_QUICK": "1"})
        budget = NOTEBOOK_MEMORY_BUDGETS_MB.get(run.notebook, NOTEBOOK_MEMORY_BUDGET_MB)
        rows.append(
            {
                "notebook": run.notebook,
                "seconds": round(run.seconds, 1),
                "peak memory (MiB)": round(run.peak_memory_mb),
                "memory budget (MiB)": round(budget),
                "memory": "pass" if run.peak_memory_mb < budget else "FAIL",
                "error": run.error or "",
            }
        )
        print(f"  {rows[-1]}", flush=True)
    if not selected:
        total = sum(row["seconds"] for row in rows)
        rows.append(
            {
                "notebook": "all notebooks (total)",
                "seconds": round(total, 1),
                "peak memory (MiB)": max((row["peak memory (MiB)"] for row in rows), default=0),
                "memory budget (MiB)": round(NOTEBOOK_MEMORY_BUDGET_MB),
                "memory": "pass" if all(row["memory"] == "pass" for row in rows) else "FAIL",
                "error": f"total time budget 20 min: {'pass' if total < NOTEBOOK_TOTAL_BUDGET_S else 'FAIL'}",
            }
        )
    return rows


_RESULT_MARKER = "BENCHMARK-ROWS:"


def run_topic_benchmarks(kind: str, selected: list[str] | None = None) -> list[dict]:
    """Call ``<kind>()`` in every topic module that defines it and collect the rows.

    Each module runs in its own Python process, because some pin the thread
    count of NumPy, OpenCV or TensorFlow at import time and that setting must
    not leak into the next module's measurements.
    """
    import subprocess

    rows = []
    for module_name in TOPIC_MODULES:
        path = REPOSITORY / "benchmarks" / f"{module_name}.py"
        if not path.is_file() or f"def {kind}(" not in path.read_text(encoding="utf-8"):
            continue
        if selected and module_name.removeprefix("bench_") not in selected:
            continue
        print(f"Running {module_name}.{kind}() ...", flush=True)
        start = time.perf_counter()
        script = (
            "import json, logging, sys\n"
            "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
            f"from benchmarks import {module_name} as module\n"
            f"rows = list(module.{kind}())\n"
            f"print({_RESULT_MARKER!r} + json.dumps(rows, default=str))\n"
        )
        # The module's log lines are passed through as they come, so long runs show their progress.
        # Lines are split on "\n" only, so the "\r" updates of progress bars pass through unchanged.
        process = subprocess.Popen([sys.executable, "-c", script], cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = []
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace")
            output.append(line.rstrip("\n").split("\r")[-1])
            if not line.startswith(_RESULT_MARKER):
                sys.stderr.write(line)
                sys.stderr.flush()
        returncode = process.wait()
        if returncode != 0:
            tail = "\n".join(output[-5:])
            log.error("%s.%s failed with exit status %d:\n%s", module_name, kind, returncode, tail)
            rows.append({"topic": module_name.removeprefix("bench_"), "error": output[-1] if output else "failed"})
            continue
        lines = [line for line in output if line.startswith(_RESULT_MARKER)]
        for row in json.loads(lines[-1][len(_RESULT_MARKER) :]):
            rows.append({"topic": module_name.removeprefix("bench_"), **row})
            print(f"  {rows[-1]}", flush=True)
        log.info("%s.%s took %.0f s", module_name, kind, time.perf_counter() - start)
    return rows


def run_notebooks_for_course() -> int:
    """Execute every notebook in the current mode into the cache; return a process exit code."""
    from course_lib.config import cache_dir, quick_mode
    from course_lib.runner import execute_notebook

    output_dir = cache_dir("executed")
    mode = "quick" if quick_mode() else "full"
    failures = 0
    for path in _notebooks():
        print(f"Running {path.name} ({mode} mode) ...", flush=True)
        run = execute_notebook(path, output_dir=output_dir)
        status = f"failed: {run.error}" if run.error else "done"
        print(f"  {status} in {run.seconds:.0f} s, peak memory {run.peak_memory_mb:.0f} MiB", flush=True)
        failures += bool(run.error)
    print(f"Executed notebooks are in {output_dir}. Open the course with: .venv/bin/jupyter lab notebooks/")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Measure the figures the course claims and write docs/benchmarks.md.")
    parser.add_argument(
        "command",
        choices=["notebooks", "inference", "training", "accuracy", "all", "report", "run-notebooks"],
        help="what to measure; 'report' only rewrites docs/benchmarks.md from stored results",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        help=(
            "for 'notebooks': run only notebooks whose file name contains one of these strings; "
            "for the other sub-commands: run only these topics (masks, descriptors, classifier, detection, recognition, pipeline)"
        ),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    if args.command == "run-notebooks":
        return run_notebooks_for_course()
    if args.command in ("notebooks", "all"):
        rows = measure_notebooks(args.only)
        _store("notebooks", rows, "python -m benchmarks notebooks" + (f" --only {' '.join(args.only)}" if args.only else ""))
    for kind in ("inference", "training", "accuracy"):
        if args.command in (kind, "all"):
            rows = run_topic_benchmarks(kind, args.only)
            only = f" --only {' '.join(args.only)}" if args.only else ""
            _store(kind, rows, f"python -m benchmarks {kind}{only}")
    write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
