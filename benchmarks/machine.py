"""Description of the machine a benchmark ran on."""

from __future__ import annotations

import datetime
import importlib.metadata as metadata
import os
import platform

PACKAGES = ("tensorflow", "keras", "keras-cv", "opencv-contrib-python-headless", "scikit-image", "scikit-learn", "mtcnn", "numpy")


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_names() -> list[str]:
    """Return the names of the GPUs TensorFlow sees (empty on a CPU-only machine)."""
    try:
        import tensorflow as tf
    except ImportError:
        return []
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return names


def describe_machine(include_gpu: bool = True) -> dict:
    """Return the date, CPU, core count, memory, GPUs and library versions as a JSON-ready dict."""
    import psutil

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    gpus = gpu_names() if include_gpu else []
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        # course_lib.training.configure_device sets the Keras policy: mixed_float16 on a GPU, float32 otherwise.
        "precision": "mixed_float16" if gpus else "float32",
        # Keras 3 compiles with jit_compile="auto": XLA for every model whose layers all support it, unless
        # TensorFlow's op determinism is on (the course does not turn it on).
        "xla": "Keras jit_compile='auto'",
        "python": platform.python_version(),
        "versions": versions,
    }


def machine_line(machine: dict) -> str:
    """Describe a machine dict in one Markdown line."""
    gpus = ", ".join(machine.get("gpus") or []) or "none"
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return (
        f"{machine['date']}; {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; "
        f"GPU: {gpus}; precision {machine.get('precision', 'float32')}, XLA: {machine.get('xla', 'not recorded')}; "
        f"Python {machine['python']}; {versions}"
    )
