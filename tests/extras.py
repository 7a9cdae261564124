"""Optional dependencies of the tests: skip without them, but fail under CI (which installs the
dev extra, so CI cannot pass by skipping)."""

import os

import pytest


def require(module, extra):
    """Import ``module`` (from the ``extra`` of pchw, part of dev), or skip / fail (CI set)."""
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing (pip install -e '.[dev]'); CI installs it")
        pytest.skip(f"{module} is not installed: pip install 'pchw[{extra}]'")
