"""The TPE sampler that keeps finished trials' internal values samples exactly as Optuna's."""

from __future__ import annotations

import optuna
import pytest

from hwnas.search.tpe import TPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(sampler: optuna.samplers.BaseSampler, n: int = 40) -> list[dict]:
    """A two-objective study of categorical parameters with a constraint, as a search's."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        xs = [trial.suggest_categorical(f"k{i}", [3, 5, 7]) for i in range(6)]
        r = trial.suggest_categorical("resolution", [8, 10, 12])
        trial.set_constraint("0", sum(xs) / 30 - 1)
        return sum(x * (i + 1) for i, x in enumerate(xs)) / r, float(r + xs[0])

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({"k0": 3, "k1": 3})  # a trial lacking parameters at first
    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_same_samples_as_optunas_tpe(seed):
    ours = run(TPESampler(seed=seed, multivariate=True))
    theirs = run(optuna.samplers.TPESampler(seed=seed, multivariate=True))
    assert ours == theirs


def test_finished_trials_are_converted_once():
    sampler = TPESampler(seed=0, multivariate=True)
    run(sampler, 20)
    assert len(sampler._rows) >= 15  # every finished trial TPE has seen


def test_the_optuna_internals_it_overrides_still_exist():
    """A new Optuna that renames them fails here, not in a user's search."""
    import inspect

    base = optuna.samplers.TPESampler
    params = inspect.signature(base._get_internal_repr).parameters
    assert list(params)[1:] == ["trials", "search_space", "study"]
    assert list(inspect.signature(base._get_params).parameters)[1:] == ["trial", "study"]
