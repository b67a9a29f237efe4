# SPDX-License-Identifier: Apache-2.0
"""Shared test set-up: import path for the helpers in tests/, the shipped robot, real brokers.

Each block is owned by one area; keep blocks small and self-contained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lets tests import helpers such as tests/mosquitto.py

REPO = Path(__file__).resolve().parents[1]


# ---- the estimator's compiled Kalman step (estimation) ----------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def kalman_kernel_built():
    """Build the `kalman_backend = "warp"` kernel before any test: an estimator made while it still compiles (cold
    cache, busy runner) fuses with NumPy until it is ready, which moves results by ~1e-14 and would break the
    tests that compare two runs bit for bit."""
    from twin_ext.estimation import build_kalman_kernel

    assert build_kalman_kernel(timeout_s=None), "the estimator's Warp Kalman kernel did not build"


# ---- the shipped robot (robot) ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def panda():
    """The shipped Franka Panda (usd/franka_panda/panda.usda) as a `RobotModel` (immutable: arrays read-only)."""
    from twin_ext.robot import default_robot_path, load_robot

    return load_robot(default_robot_path())


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the extension folder)."""
    return REPO


# ---- broker fixtures (telemetry): a real Mosquitto on a free 127.0.0.1 port, see tests/mosquitto.py ----


@pytest.fixture
def mosquitto_broker(tmp_path):
    """A running Mosquitto (anonymous, persistence on); stopped (SIGTERM) after the test."""
    from mosquitto import Mosquitto, require_mosquitto

    require_mosquitto()
    broker = Mosquitto(tmp_path / "mosquitto")
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A test PKI (CA, server cert for 127.0.0.1/localhost, client cert) made with openssl."""
    from mosquitto import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("pki"))
