"""`hwnas accuracy fit` and `hwnas search --accuracy` end to end on the tiny trained run: real
supernet evaluations, a fitted accuracy predictor, a predictor-driven search whose front is
re-scored with the supernet."""

from __future__ import annotations

import optuna
import pytest
from cli_helpers import KEY, copy_db, fool, hwnas, run_json, search_args
from sqlalchemy import func, select

from hwnas.db.models import AccuracyPredictor, AccuracySample, Candidate, Run, Search
from hwnas.db.session import open_db
from hwnas.search.storage import optuna_storage


@pytest.fixture(scope="module")
def fitted(ready, tmp_path_factory):
    """A copy of the shared database with an accuracy predictor fitted on 12 subnets."""
    cwd, url = ready
    url = copy_db(url, tmp_path_factory.mktemp("accuracy") / "hwnas.db")
    out = run_json("accuracy", "fit", "--run", "tiny", "--n", "12", "--held-out", "4",
                   "--quiet", "--db", url, cwd=cwd)  # fmt: skip
    return cwd, url, out


def test_fit_reports_held_out_figures_beside_the_supernets_own_noise(fitted):
    cwd, url, out = fitted
    assert out["n_train"] == 12 and out["evaluated"] == 16
    assert out["kind"] in out["cv"] and set(out["cv"]) == {"ridge", "ridge-res", "mlp"}
    held = out["held_out"]
    assert held["n"] == 4 and -1 <= held["kendall"] <= 1 and -1 <= held["split_half_kendall"] <= 1
    with open_db(url, create=False) as db, db.read() as s:
        roles = dict(s.execute(select(AccuracySample.role, func.count()).group_by(
            AccuracySample.role)).all())  # fmt: skip
        assert roles == {"train": 12, "held-out": 4}
        assert s.get(AccuracyPredictor, out["predictor"]).n_train == 12
    # a larger sample evaluates only the subnets it adds
    more = run_json("accuracy", "fit", "--run", "tiny", "--n", "14", "--held-out", "4",
                    "--quiet", "--db", url, cwd=cwd)  # fmt: skip
    assert more["evaluated"] == 2 and more["n_train"] == 14


def test_a_predictor_driven_search_keeps_both_accuracies_of_its_front(fitted):
    cwd, url, _ = fitted
    out = run_json(*search_args(url, "by-predictor", 10, "--accuracy", "predictor"), cwd=cwd)
    with open_db(url, create=False) as db, db.read() as s:
        fitted_by_fit = AccuracyPredictor.name.is_(None)  # not a round's refit
        newest = s.scalar(select(func.max(AccuracyPredictor.id)).where(fitted_by_fit))
        assert out["rounds"][0]["accuracy_predictor"] == newest
        sid = s.scalar(select(Search.id).where(Search.name == "by-predictor"))
        rows = list(s.scalars(select(Candidate).where(Candidate.search_id == sid)))
    front = [r for r in rows if r.pareto]
    assert front and all(0 <= r.accuracy_supernet <= 1 for r in front)
    # the front is the Pareto front of the re-scored candidates on their supernet accuracy
    rescored = {}
    for r in sorted(rows, key=lambda r: r.trial_number):
        if r.accuracy_supernet is not None and r.feasible:
            rescored.setdefault(r.subnet_key, r)
    on_front = {
        r.id for r in rescored.values()
        if not any(o.accuracy_supernet >= r.accuracy_supernet and o.predicted_ms[KEY] <=
                   r.predicted_ms[KEY] and (o.accuracy_supernet, o.predicted_ms[KEY]) !=
                   (r.accuracy_supernet, r.predicted_ms[KEY]) for o in rescored.values())
    }  # fmt: skip
    assert {r.id for r in front} == on_front
    # the predictor's figures are not the supernet's
    assert any(r.accuracy != r.accuracy_supernet for r in front)
    # listed most accurate first by the supernet's figure
    assert [p["candidate"] for p in out["pareto"]] == [
        r.id for r in sorted(front, key=lambda r: (-r.accuracy_supernet, r.trial_number))
    ]
    # the report shows both, and how to fit the predictor again
    with open_db(url, create=False) as db, db.read() as s:
        n_fit = s.get(AccuracyPredictor, newest).n_train
    run_json("report", "by-predictor", "--out", "rep-acc", "--db", url, cwd=cwd)
    text = (cwd / "rep-acc" / "report.md").read_text()
    best = max(front, key=lambda r: r.accuracy)
    assert "| accuracy predicted / supernet |" in text
    assert f"| {best.id} | {best.accuracy:.4f} / {best.accuracy_supernet:.4f} |" in text
    assert f"hwnas accuracy fit --run tiny --n {n_fit} --held-out 4\n" in text
    assert "--accuracy predictor --sampler tpe --name by-predictor" in text
    # the tiny supernet evaluates in milliseconds: auto keeps it; it scores every trial
    auto = run_json(*search_args(url, "auto", 4, "--accuracy", "auto"), cwd=cwd)
    assert auto["rounds"][0]["accuracy_predictor"] is None
    assert all(p["accuracy_supernet"] == p["accuracy"] for p in auto["pareto"])


def test_the_loop_refits_the_accuracy_predictor_with_the_fronts_it_rescored(fitted, tmp_path):
    cwd, url, _ = fitted
    url = copy_db(url, tmp_path / "hwnas.db")
    fool(url)  # the first front measures 2x its prediction: the loop goes on to round 1
    args = search_args(url, "loop", 8, "--accuracy", "predictor", "--rounds", "1",
                       "--round-trials", "4")  # fmt: skip
    args.remove("--no-measure")
    out = run_json(*args, cwd=cwd)
    first, second = out["rounds"]
    assert first["agreement"][KEY]["within10_of_predicted"] < 1
    with open_db(url, create=False) as db, db.read() as s:
        refit = s.get(AccuracyPredictor, second["accuracy_predictor"])
        fronts = s.scalar(select(func.count()).where(AccuracySample.role == "front"))
        then = AccuracySample.created_at <= refit.created_at
        before = s.scalar(select(func.count()).where(then))
        fronts_before = s.scalar(select(func.count()).where(then, AccuracySample.role == "front"))
        sid = s.scalar(select(Search.id).where(Search.name == "loop"))
        rows = list(s.scalars(select(Candidate).where(Candidate.search_id == sid)))
    assert refit.name == "loop/r1" and refit.id != first["accuracy_predictor"]
    # refitted on every sample the run had then: the fit's and round 0's re-scored front
    assert fronts_before >= 1 and refit.n_train == before
    assert fronts > fronts_before  # round 1's front was re-scored too
    assert all(r.accuracy_supernet is not None for r in rows if r.pareto)
    assert {r.scored_round for r in rows} == {1}  # every trial re-scored by round 1's models


def test_an_unmeasured_predictor_search_loops_on_accuracy_until_its_front_settles(
    fitted, tmp_path
):
    cwd, url, _ = fitted
    url = copy_db(url, tmp_path / "hwnas.db")
    args = search_args(url, "acc-loop", 8, "--accuracy", "predictor", "--rounds", "2",
                       "--round-trials", "6")  # fmt: skip
    out = run_json(*args, cwd=cwd)
    rounds = out["rounds"]
    fronts = [r["accuracy_front"] for r in rounds]
    assert fronts[0]["new"] == fronts[0]["n"] > 0 and fronts[0]["rescored"] > 0
    # on while a round brings new subnets onto the re-scored front; stopped when one brings
    # none, or the rounds are spent
    assert len(rounds) >= 2 and all(f["new"] > 0 for f in fronts[:-1])
    assert fronts[-1]["new"] == 0 or len(rounds) == 3
    assert [r["trials"] for r in rounds] == [8 + 6 * i for i in range(len(rounds))]
    assert [r["agreement"] for r in rounds] == [{}] * len(rounds)  # nothing measured
    with open_db(url, create=False) as db, db.read() as s:
        refit = s.get(AccuracyPredictor, rounds[1]["accuracy_predictor"])
    assert refit.name == "acc-loop/r1"
    # round 1's sampler is told the supernet's accuracy wherever a trial has one
    study = optuna.load_study(study_name="acc-loop~r1", storage=optuna_storage(url))
    copies = [t for t in study.trials if t.user_attrs.get("round") == 0 and t.values]
    told = [t for t in copies if t.user_attrs["candidate"]["accuracy_supernet"] is not None]
    assert told and all(t.values[0] == t.user_attrs["candidate"]["accuracy_supernet"]
                        for t in told)  # fmt: skip
    assert any(t.values[0] != t.user_attrs["candidate"]["accuracy"] for t in told)
    assert all(t.values[0] == t.user_attrs["candidate"]["accuracy"] for t in copies
               if t not in told)  # fmt: skip
    # the report's closed-loop table says what each round's re-scoring found
    run_json("report", "acc-loop", "--out", "rep-loop", "--db", url, cwd=cwd)
    text = (cwd / "rep-loop" / "report.md").read_text()
    assert "front re-scored with the supernet |" in text
    for f in fronts:
        assert f"| {f['n']} subnets, {f['new']} new ({f['rescored']} evaluated) |" in text


def test_a_search_resumed_after_more_training_refuses_its_stale_predictor(fitted, tmp_path):
    cwd, url, _ = fitted
    url = copy_db(url, tmp_path / "hwnas.db")
    args = search_args(url, "stale", 4, "--accuracy", "predictor", "--rounds", "0")
    run_json(*args, cwd=cwd)
    with open_db(url, create=False) as db, db.write() as s:
        s.scalar(select(Run).where(Run.name == "tiny")).steps += 1  # trained on meanwhile
    args[args.index("--trials") + 1] = "8"
    done = hwnas(*args, cwd=cwd, check=False)
    assert done.returncode == 2 and "was fitted at step" in done.stderr, done.stderr
    with open_db(url, create=False) as db, db.read() as s:
        sid = s.scalar(select(Search.id).where(Search.name == "stale"))
        assert s.scalar(select(func.count()).where(Candidate.search_id == sid)) == 4


def test_predictor_search_without_a_fitted_predictor_is_one_line_exit_2(ready):
    cwd, url = ready
    done = hwnas(*search_args(url, "no-pred", 4, "--accuracy", "predictor"), cwd=cwd,
                 check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hwnas: error: no accuracy predictor for run 'tiny'; fit one with "
        "`hwnas accuracy fit --run tiny`"
    ]
    with open_db(url, create=False) as db, db.read() as s:
        assert s.scalar(select(Search).where(Search.name == "no-pred")) is None


def _foreign_predictor(url: str, how: str) -> int:
    """A copy of the tiny run's accuracy predictor that belongs to another run, another space
    or another training step."""
    with open_db(url, create=False) as db, db.write() as s:
        tiny = s.scalar(select(Run).where(Run.name == "tiny"))
        mine = s.scalars(select(AccuracyPredictor).where(AccuracyPredictor.run_id == tiny.id))
        p = next(iter(mine))
        row = AccuracyPredictor(run_id=tiny.id, step=p.step, space_key=p.space_key, kind=p.kind,
                                n_train=p.n_train, metrics={}, model=p.model)  # fmt: skip
        if how == "run":
            other = Run(name=f"other-{how}", dataset="digits", space=tiny.space,
                        config=tiny.config, status="finished")  # fmt: skip
            s.add(other)
            s.flush()
            row.run_id = other.id
        elif how == "space":
            row.space_key = "0" * 16
        else:
            row.step = p.step + 1
        s.add(row)
        s.flush()
        return row.id


@pytest.mark.parametrize(
    "how, message",
    [("run", "was fitted on another run"), ("space", "was fitted on another search space"),
     ("step", "was fitted at step")],
)  # fmt: skip
def test_a_predictor_of_another_run_space_or_step_is_refused(fitted, how, message):
    cwd, url, _ = fitted
    pid = _foreign_predictor(url, how)
    args = search_args(url, f"foreign-{how}", 4, "--accuracy", "predictor",
                       "--accuracy-predictor", str(pid))  # fmt: skip
    done = hwnas(*args, cwd=cwd, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_accuracy_arguments_exit_2(ready):
    cwd, url = ready
    done = hwnas("accuracy", "fit", "--run", "tiny", "--n", "5", "--db", url, cwd=cwd,
                 check=False)  # fmt: skip
    assert done.returncode == 2 and "--n must be at least 10" in done.stderr
    done = hwnas(*search_args(url, "bad", 4, "--accuracy", "guess"), cwd=cwd, check=False)
    assert done.returncode == 2 and "unknown --accuracy 'guess'" in done.stderr
