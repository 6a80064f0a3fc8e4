"""A trained tiny run with a tflite predictor, shared by the search and export tests."""

from __future__ import annotations

import pytest
from tiny_run import prepare


@pytest.fixture(scope="session")
def ready(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{cwd / 'hwnas.db'}"
    prepare(cwd, url)
    return cwd, url
