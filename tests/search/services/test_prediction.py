"""The predictor services called directly (`search/services/prediction.py`), on real SQLite
and PostgreSQL databases holding synthetic measurements of the tiny space: fit, predict, refit
and their errors, each a typed result whose `to_json()` is the command's JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import TINY

from hwnas.db.latency_store import NewMeasurement, add_measurement
from hwnas.db.queries import ensure_space, ensure_target
from hwnas.db.session import open_db
from hwnas.exceptions import HwnasError, shown
from hwnas.latency.targets import Target
from hwnas.search.services import prediction
from hwnas.search.services.measuring import sample_subnets
from hwnas.supernet.space import SearchSpace, load_space

CPU = Target("cpu")


def synthetic_ms(space: SearchSpace, subnet) -> float:
    """A latency that MACs and layer count explain, as a real target's roughly is."""
    cost = space.cost(subnet)
    return 0.05 + 2e-6 * cost.macs + 0.01 * sum(subnet.depths)


def record(url: str, space: SearchSpace, n: int, seed: int = 0, tag: str = "a") -> None:
    """`n` subnets of `space` "measured" on `cpu` (each a job of its own: `tag` tells apart
    the sessions that measure the same subnets)."""
    subnets = sample_subnets(space, n, seed, spread=0.5)
    with open_db(url) as db, db.write() as s:
        ensure_space(s, space.key, space.name, space.to_dict())
        t = ensure_target(s, CPU.key, CPU.kind, CPU.settings(), {})
        for i, sub in enumerate(subnets):
            m = NewMeasurement(None, space.key, sub.key, sub.to_dict(), "subnet", "init",
                               synthetic_ms(space, sub), 0.01, 0.001, 20, False, {},
                               f"job:{tag}-{space.key}-{seed}-{i}")  # fmt: skip
            add_measurement(s, t.id, m)


@pytest.fixture
def measured(db_url):
    """Synthetic measurements in a real SQLite file, and a real PostgreSQL database."""
    space = load_space(TINY)
    record(db_url, space, 40)
    return db_url, space


def test_fit_returns_typed_scores_and_stores_every_kind(measured):
    url, space = measured
    fit = prediction.fit(url, CPU, "main", 0.25, seed=1)
    assert isinstance(fit, prediction.FitResult) and isinstance(fit.holdout, prediction.Scores)
    out = fit.to_json()
    assert list(out) == ["target", "space", "space_key", "kind", "n_train", "holdout",
                         "baselines", "model", "sources", "validation"]  # fmt: skip
    assert out["sources"] == [] and out["model"] in out["validation"]  # no other target
    assert out["space_key"] == space.key and out["n_train"] == 30
    assert list(out["holdout"]) == ["n", "within5", "within10", "mape", "kendall", "under_p95"]
    assert out["holdout"]["n"] == 10 and list(out["baselines"]) == ["macs", "lut"]
    assert out["baselines"]["lut"] is None  # no block measured: no lookup table
    assert fit.holdout.within10 == 1.0  # the synthetic latency is what the model can fit
    json.dumps(out)  # plain JSON
    with open_db(url, create=False) as db:
        p, scores = prediction.load_predictor_row(db, CPU, space_key=space.key)
    assert scores == out["holdout"] | {"model": out["model"]} and p.space.key == space.key


def test_predict_gives_the_subnets_latency(measured):
    url, space = measured
    prediction.fit(url, CPU)
    subnet = space.largest()
    pred = prediction.predict(url, CPU, subnet.to_json(), space_key=space.key)
    assert isinstance(pred, prediction.Prediction) and pred.key == subnet.key
    assert pred.latency_ms == pytest.approx(synthetic_ms(space, subnet), rel=0.1)
    assert pred.to_json() == {"target": "cpu", "kind": "main", "latency_ms": pred.latency_ms,
                              "key": subnet.key}  # fmt: skip
    with pytest.raises(HwnasError, match="subnet JSON needs"):
        prediction.predict(url, CPU, "{}")


def test_a_refit_is_named_and_serves_only_its_search(measured):
    url, space = measured
    prediction.fit(url, CPU)
    with open_db(url, create=False) as db:
        newest = prediction.newest_predictor_id(db, CPU, space_key=space.key)
        focus = {s.key for s in sample_subnets(space, 5, 0)}
        refit = prediction.refit_main(db, CPU, space.key, "s/r1", focus)
        assert refit > newest  # stored, but not the target's own newest
        assert prediction.newest_predictor_id(db, CPU, space_key=space.key) == newest
        p, scores = prediction.load_predictor_by_id(db, refit)
    assert p.kind == "main" and set(scores) >= {"within10", "under_p95"}


@pytest.mark.parametrize(
    "kwargs, field, flag_message",
    [
        ({"kind": "knn"}, "kind", "unknown --kind 'knn'; choose one of main, macs, lut"),
        ({"kind": "lut"}, "kind", "--kind lut needs every lookup-table layer measured"),
        ({"holdout": 0.9}, "holdout", "--holdout must be between 0.05 and 0.5, got 0.9"),
    ],
)
def test_bad_fit_input_names_its_field(measured, kwargs, field, flag_message):
    url, _ = measured
    with pytest.raises(HwnasError) as e:
        prediction.fit(url, CPU, **kwargs)
    assert e.value.field == field
    assert shown(e.value, flags=True).startswith(flag_message)  # as the CLI prints it
    assert shown(e.value, flags=False).startswith(flag_message.replace("--", ""))


def test_errors_say_what_to_measure_or_which_space(measured):
    url, space = measured
    with pytest.raises(
        HwnasError, match="no measurements for target gpu: run `hwnas measure --target gpu`"
    ):
        prediction.fit(url, Target("gpu"))
    with pytest.raises(HwnasError, match="no main predictor for target cpu"):
        prediction.predict(url, CPU, space.smallest().to_json())
    record(url, load_space("digits"), 3)  # a second space measured on the target
    with pytest.raises(HwnasError) as e:
        prediction.fit(url, CPU)
    assert e.value.field == "space" and "several spaces" in str(e.value)
    assert prediction.fit(url, CPU, space_key=space.key).space_key == space.key
    with pytest.raises(HwnasError, match="has 3 measured subnets; it needs at least 20"):
        prediction.fit(url, CPU, space_key=load_space("digits").key)


def test_target_data_takes_one_median_per_subnet(measured):
    url, space = measured
    record(url, space, 40, tag="b")  # the same subnets measured again ...
    with open_db(url) as db, db.write() as s:  # ... and one of them once more, slower
        sub = sample_subnets(space, 40, 0, spread=0.5)[0]
        t = ensure_target(s, CPU.key, CPU.kind, CPU.settings(), {})
        add_measurement(s, t.id, NewMeasurement(None, space.key, sub.key, sub.to_dict(),
                                                "subnet", "init", 100.0, 0.0, 0.0, 20, False,
                                                {}, "job:slow"))  # fmt: skip
    with open_db(url, create=False) as db:
        data = prediction.load_target_data(db, CPU)
    assert len(data.subnets) == 40 and len({s.key for s in data.subnets}) == 40
    at = [s.key for s in data.subnets].index(sub.key)
    assert data.latency_ms[at] == pytest.approx(synthetic_ms(space, sub))  # median of 3
    assert np.all(data.latency_ms < 100.0)
