"""Shared pytest hooks for the end-to-end tests.

A skipped test has not shown anything. Locally a skip is visible in pytest's summary
(`-rs` is on in pytest.ini); under CI (`CI=true`, as `.ci/run` sets it) every skip fails
the run, so a test that needs root, kubectl or the local stack cannot pass by not running.
"""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get('CI', '').lower() == 'true'


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, 'wasxfail'):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = 'failed'
        report.longrepr = f'skipped under CI=true, which must run every test: {reason}'
