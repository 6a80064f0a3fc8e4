"""The search's services called directly: its config, `--accuracy auto`'s rule, the closed
loop's states (pure transitions, and a tiny real run), and the `--config` file at the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import copy_db, fool, hwnas, run_json, search_args

from hwnas.search.cli import main
from hwnas.search.objective import Problem
from hwnas.search.output import UserError
from hwnas.search.search_config import SearchConfig, merged, read_search_toml
from hwnas.search.services import closed_loop
from hwnas.search.services.accuracy_fit import AUTO_GMAC, AUTO_MIN_TAU, auto_rule
from hwnas.search.services.remeasure import FrontCheck
from hwnas.search.services.rounds import AccuracyFront, RoundState
from hwnas.search.services.trial_workers import SearchSpec
from hwnas.supernet.space import SearchSpace

KEY = "tflite-fp32-t1"

# ---- SearchConfig -----------------------------------------------------------------------------


def test_a_config_file_sets_fields_and_flags_win(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('trials = 40\nmargin = 0.05\nmeasure = false\ntarget = ["tflite"]\n'
                    'budget = {tflite = 2.5}\n')  # fmt: skip
    got = read_search_toml(path)
    assert got.problem == {"target": ["tflite"], "budget": ["tflite=2.5"]}
    config = merged(got.config, {"trials": 12, "seed": None})
    assert (config.trials, config.margin, config.measure) == (12, "0.05", False)
    assert config.step == 10 and SearchConfig(trials=90).step == 30


@pytest.mark.parametrize(
    "text, message",
    [("tirals = 3", "unknown key 'tirals'"), ("trials = 'many'", "trials must be an integer"),
     ("measure = 1", "measure must be true or false"), ("trials = [", "search config")],
)  # fmt: skip
def test_a_bad_config_file_is_one_user_error(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text + "\n")
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        read_search_toml(path)


@pytest.mark.parametrize(
    "change, field",
    [({"trials": 0}, "trials"), ({"workers": 99}, "workers"), ({"margin": "lots"}, "margin"),
     ({"rounds": 21}, "rounds"), ({"accuracy": "guess"}, "accuracy"),
     ({"round_trials": 0}, "round_trials")],
)  # fmt: skip
def test_a_setting_out_of_range_names_its_field(change, field):
    with pytest.raises(UserError) as e:
        merged({}, change)
    assert e.value.field == field and "{field}" in e.value.message


# ---- the auto rule ----------------------------------------------------------------------------


def test_auto_takes_the_predictor_only_when_it_is_good_and_the_supernet_costly():
    costly, cheap, good = 2 * AUTO_GMAC, AUTO_GMAC / 2, AUTO_MIN_TAU + 0.1
    assert auto_rule(True, good, costly)[0]
    use, why = auto_rule(False, None, None)
    assert not use and "no accuracy predictor" in why
    use, why = auto_rule(True, AUTO_MIN_TAU - 0.1, costly)
    assert not use and "Kendall tau" in why
    assert not auto_rule(True, None, costly)[0]  # never judged on held-out subnets
    use, why = auto_rule(True, good, cheap)
    assert not use and "GMAC" in why


# ---- the closed loop's transitions ------------------------------------------------------------


TINY = SearchSpace.from_file(Path(__file__).parents[2] / "data" / "tiny_space.json")


def spec(round_: int = 0, rounds: int = 2, measure: bool = True, acc: int | None = None):
    state = RoundState(round_, "s", ((KEY, 1),), 10, accuracy_predictor=acc)
    config = SearchConfig(rounds=rounds, measure=measure)
    return SearchSpec("sqlite://", "s", "tiny", TINY, Problem((KEY,)), config, state)


def check(share: float) -> dict:
    return {KEY: FrontCheck(4, 1.0, share, 0.1)}


def test_after_its_trials_a_round_is_measured_unless_there_is_nothing_to_close():
    assert closed_loop.after_trials(spec()) is closed_loop.Phase.MEASURING
    assert closed_loop.after_trials(spec(measure=False)) is closed_loop.Phase.SETTLED
    assert closed_loop.after_trials(spec(measure=False, acc=3)) is closed_loop.Phase.MEASURING


def test_after_the_front_the_loop_settles_or_refits():
    settled, refit = closed_loop.Phase.SETTLED, closed_loop.Phase.REFITTING
    assert closed_loop.after_front(spec(), check(1.0), None) is settled
    assert closed_loop.after_front(spec(), check(0.5), None) is refit
    assert closed_loop.after_front(spec(round_=2), check(0.5), None) is settled  # rounds spent
    new, none_new = AccuracyFront(3, 4, 2), AccuracyFront(3, 4, 0)
    assert closed_loop.after_front(spec(acc=3), check(1.0), new) is refit
    assert closed_loop.after_front(spec(acc=3), check(1.0), none_new) is settled
    assert closed_loop.after_front(spec(measure=False, acc=3), {}, none_new) is settled


def test_a_tiny_run_goes_through_the_states(ready, tmp_path):
    """A front measured at twice its prediction: refitted once, then the rounds are spent."""
    _, url = ready
    url = copy_db(url, tmp_path / "hwnas.db")
    fool(url, KEY)
    from hwnas.search.services import search as search_service

    config = SearchConfig(trials=6, rounds=1, round_trials=4, seed=0, name="states",
                          quiet=True, accuracy="supernet")  # fmt: skip
    problem = search_service.parse_problem(["tflite"])
    with search_service.prepared(url, "tiny", problem, config, {}) as (loop, state, choice):
        assert choice.mode == "supernet" and state.round == 0
        ran = closed_loop.run(loop, state)
    P = closed_loop.Phase
    assert ran.phases == (P.SEARCHING, P.MEASURING, P.REFITTING, P.SEARCHING, P.MEASURING,
                          P.SETTLED)  # fmt: skip
    assert ran.spec.round_no == 1 and [len(r) for r in ran.new_trials] == [6, 4]


# ---- the CLI ----------------------------------------------------------------------------------


def test_search_help_lists_at_most_12_options(capsys):
    assert main(["search", "--help"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()
             if line.strip().startswith("--")]  # fmt: skip
    options = [o for o in shown if o != "--help"]
    assert len(options) <= 12 and {"--db", "--json", "--config"} <= set(options)
    assert "--round-trials" not in options and "--margin" not in options


def test_a_config_files_key_takes_effect_and_a_bad_key_exits_2(ready, tmp_path):
    cwd, url = ready
    path = tmp_path / "search.toml"
    path.write_text("trials = 5\nrounds = 0\ninitial = 2\nmeasure = false\n")
    args = search_args(url, "from-file", 3, "--config", str(path))
    args[args.index("--trials") : args.index("--trials") + 2] = []
    out = run_json(*args, cwd=cwd)
    assert out["trials"] == 5 and len(out["rounds"]) == 1
    assert out["accuracy_choice"]["mode"] in ("supernet", "predictor")
    path.write_text("trails = 5\n")
    done = hwnas(*search_args(url, "bad-file", 3, "--config", str(path)), cwd=cwd, check=False)
    assert done.returncode == 2 and "unknown key 'trails'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
