"""The pytest side of the RTL tests: :mod:`pchw.sim.runner`, with a missing simulator turned
into a skip (or, when ``CI`` is set, a failure: CI cannot pass by skipping)."""

import contextlib
import functools
import os

import pytest

from pchw.sim import runner
from pchw.sim.runner import *  # noqa: F401,F403 (re-exported for the tests)
from pchw.sim.runner import __all__ as _runner_all

__all__ = list(_runner_all)


@contextlib.contextmanager
def tools_or_skip():
    """Turn :class:`pchw.sim.runner.ToolMissing` into a skip (a failure under ``CI``)."""
    try:
        yield
    except runner.ToolMissing as missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} (a missing tool is a failure when CI is set)")
        pytest.skip(str(missing))


def _skipping(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with tools_or_skip():
            return function(*args, **kwargs)
    return wrapper


require_simulator = _skipping(runner.require_simulator)
simulate = _skipping(runner.simulate)
lint = _skipping(runner.lint)
