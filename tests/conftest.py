"""Shared fixtures: every test must leave no device open and no coil energised."""

from __future__ import annotations

import pytest

from robo_player.driver.ports import OPEN_DEVICES


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_energised: the test leaves a coil on on purpose (checked by hand)"
    )


@pytest.fixture(autouse=True)
def _no_device_left_open_or_energised(request: pytest.FixtureRequest):
    OPEN_DEVICES.clear()
    yield
    problems = []
    for dev in list(OPEN_DEVICES):
        energised = getattr(dev, "energised", None)
        if callable(energised) and request.node.get_closest_marker("allow_energised") is None:
            on = energised()
            if on:
                problems.append(f"{dev!r} left actuators {sorted(on)[:8]} energised")
        if getattr(dev, "is_open", False):
            problems.append(f"{dev!r} left open (use `with open_port(...)` or close())")
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - cleanup must not hide the report
                pass
    OPEN_DEVICES.clear()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def opened():
    """``dev = opened(open_port(...))``: closed when the test ends, pass or fail."""
    devices = []

    def keep(dev):
        devices.append(dev)
        return dev

    yield keep
    for dev in devices:
        dev.close()
