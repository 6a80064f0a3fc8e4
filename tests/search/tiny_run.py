"""A trained tiny run with a tflite predictor: what a search (and an export) needs."""

from __future__ import annotations

from test_train_cli import hwnas, train_args


def prepare(cwd, url: str) -> None:
    hwnas(*train_args("tiny", url, epochs=1), cwd=cwd)
    hwnas("measure", "--run", "tiny", "--target", "tflite", "--n", "20", "--db", url, cwd=cwd)
    hwnas("predictor", "fit", "--target", "tflite", "--db", url, cwd=cwd)
