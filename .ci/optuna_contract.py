"""A pytest plugin: Optuna's own storage tests (`tests/storages_tests/` of its sdist) with
hwnas's storage (`hwnas.search.storage.rdb_storage`) in place of Optuna's `RDBStorage`, in the
modes that use it: `sqlite` and `cached_sqlite` (wrapped in Optuna's `_CachedStorage`, as
`optuna.create_study` wraps any RDB storage). `.ci/optuna-contract` runs it."""

from __future__ import annotations

import optuna.testing.storages as supplied
from optuna.storages import _CachedStorage
from optuna.testing.tempfile_pool import NamedTemporaryFilePool

from hwnas.search.storage import rdb_storage

MODES = ["sqlite", "cached_sqlite"]
supplied.STORAGE_MODES[:] = MODES  # the test modules parametrize over these very lists
supplied.STORAGE_MODES_HEARTBEAT[:] = MODES
_optunas_enter = supplied.StorageSupplier.__enter__


def _enter(self):
    if self.storage_specifier not in MODES:
        return _optunas_enter(self)
    self.tempfile = NamedTemporaryFilePool().tempfile()
    storage = rdb_storage(f"sqlite:///{self.tempfile.name}", **self.extra_args)
    self.storage = _CachedStorage(storage) if "cached" in self.storage_specifier else storage
    return self.storage


supplied.StorageSupplier.__enter__ = _enter
