"""Shared test settings.

Tests that read real data use the dataset root named by ``MFR_DATA_DIR`` (CI
points it at the read-only mirror). A missing dataset fails the test with the
loader's own message, which names the fetch command: such tests are never
skipped. Derived files go to a per-session temporary cache unless
``MFR_CACHE_DIR`` is already set.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MFR_QUICK", "1")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    if not os.environ.get("MFR_CACHE_DIR"):
        os.environ["MFR_CACHE_DIR"] = str(tmp_path_factory.mktemp("mfr-cache"))
    yield
