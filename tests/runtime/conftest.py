"""Fixtures for the device-side tests: deployments made without torch (see deploykit), copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.runtime.deploykit import make_deployment


@pytest.fixture(scope="session")
def folded_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(tmp_path_factory.mktemp("dev") / "folded")


@pytest.fixture(scope="session")
def shared_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(tmp_path_factory.mktemp("dev") / "shared", mode="shared")


@pytest.fixture()
def folded(folded_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of a folded deployment (6 graphs) that the test may change."""
    return Path(shutil.copytree(folded_master, tmp_path / "folded"))


@pytest.fixture()
def shared(shared_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of a shared-mode deployment (2 graphs, λ as an input) that the test may change."""
    return Path(shutil.copytree(shared_master, tmp_path / "shared"))
