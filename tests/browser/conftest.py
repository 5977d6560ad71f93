"""Settings of the browser tests: the ``browser`` marker."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "browser: drives JupyterLab in headless Chromium with a fake camera (needs the chromium package and pip playwright).",
    )
