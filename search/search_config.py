"""The services' configurations and defaults, light (no JAX, Optuna or SQLAlchemy): the CLI's
help text is generated from them, and `hwnas --help` does not wait for a heavy import."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from hwnas.search.output import UserError

N_INITIAL = 10  # a new study's first trials, spread over the size range (search.initial_design)
DEFAULT_ROUNDS = 3  # closed-loop rounds after a search's first (search.closed_loop)
SAMPLERS = ("tpe", "nsga2", "gp", "random")  # Optuna samplers by name (search.samplers)
ACCURACY_MODES = ("supernet", "predictor", "auto")  # what scores a search's trials
MAX_ROUNDS = 20
MAX_WORKERS = 64


@dataclass(frozen=True)
class SearchConfig:
    """Every setting of `hwnas search` but the run and the problem (targets, budgets,
    objectives); docs/config.md says what each does and which flag it was."""

    trials: int = 100  # the first round's trials (a larger number continues a search)
    rounds: int = DEFAULT_ROUNDS  # closed-loop rounds after the first, at most
    round_trials: int | None = None  # trials of each later round; None: a third of `trials`
    sampler: str = "tpe"
    workers: int = 1  # local search processes
    seed: int | None = None  # the sampler's (worker i: seed + i)
    initial: int = N_INITIAL  # a new study's first trials, spread over the size range
    margin: str = "auto"  # safety margin on budgets: auto or a number in [0, 1)
    accuracy: str = "auto"  # what scores a trial's accuracy: ACCURACY_MODES
    accuracy_predictor: int | None = None  # its row id; None: the run's newest
    measure: bool = True  # measure each round's front on this machine's targets
    name: str | None = None  # the search's (and study's) name; None: RUN-search
    quiet: bool = False  # no progress bar

    def check(self) -> None:
        """Raises a UserError naming the first setting out of its range."""
        if self.trials < 1:
            raise UserError(f"{{field}} must be at least 1, got {self.trials}", field="trials")
        if self.initial < 0:
            raise UserError(f"{{field}} must be 0 or more, got {self.initial}", field="initial")
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; choose one of "
                            f"{', '.join(SAMPLERS)}")  # fmt: skip
        if not 1 <= self.workers <= MAX_WORKERS:
            raise UserError(f"{{field}} must be between 1 and {MAX_WORKERS}, got "
                            f"{self.workers}", field="workers")  # fmt: skip
        if self.accuracy not in ACCURACY_MODES:
            raise UserError(f"unknown {{field}} {self.accuracy!r}; choose "
                            f"{', '.join(ACCURACY_MODES)}", field="accuracy")  # fmt: skip
        if not 0 <= self.rounds <= MAX_ROUNDS:
            raise UserError(f"{{field}} must be between 0 and {MAX_ROUNDS}, got "
                            f"{self.rounds}", field="rounds")  # fmt: skip
        if self.round_trials is not None and self.round_trials < 1:
            raise UserError(f"{{field}} must be at least 1, got {self.round_trials}",
                            field="round_trials")  # fmt: skip
        self.margin_value()

    def margin_value(self) -> float | None:
        """The margin as a number; None for `auto` (the predictors' held-out figure)."""
        if self.margin == "auto":
            return None
        try:
            m = float(self.margin)
        except ValueError:
            m = -1.0
        if not 0 <= m < 1:
            raise UserError(f"{{field}} {self.margin!r}: use auto or a number in [0, 1), "
                            "e.g. 0.03", field="margin")  # fmt: skip
        return m

    @property
    def step(self) -> int:
        """Trials per later round: `round_trials`, else a third of `trials`, at least 10."""
        return self.round_trials or max(10, self.trials // 3)

    def options(self) -> dict[str, Any]:
        """How the search was asked for, as stored with it (the report repeats the command)."""
        return {"margin": self.margin, "initial": self.initial, "rounds": self.rounds,
                "round_trials": self.round_trials, "measure": self.measure,
                "accuracy": self.accuracy}  # fmt: skip


# A config file's keys: SearchConfig's fields and the problem's (`hwnas search --target` ...).
PROBLEM_KEYS = {"run": "str", "target": "list", "budget": "list", "objective": "list"}
_TYPES = {f.name: str(f.type) for f in fields(SearchConfig)}


@dataclass(frozen=True)
class SearchFile:
    """What a `hwnas search --config FILE.toml` sets: config fields and problem keys."""

    config: dict[str, Any]
    problem: dict[str, Any]


def read_search_toml(path: str | Path) -> SearchFile:
    """The settings a TOML file gives, each checked against its type.

    Raises:
        UserError: the file is missing or not TOML, or a key or a value is unknown.
    """
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"search config {path}: {e}", field="config") from None
    config, problem = {}, {}
    for key, value in raw.items():
        if key in _TYPES:
            config[key] = _checked(path, key, _TYPES[key], value)
        elif key in PROBLEM_KEYS:
            problem[key] = _checked(path, key, PROBLEM_KEYS[key], value)
        else:
            known = ", ".join([*PROBLEM_KEYS, *_TYPES])
            raise UserError(f"search config {path}: unknown key {key!r}; known: {known}",
                            field="config")  # fmt: skip
    return SearchFile(config, problem)


def _checked(path: str | Path, key: str, kind: str, value: Any) -> Any:
    """`value` as the key's type (`kind`, the annotation's text) wants it."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind.startswith("int") and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind.startswith("str") and isinstance(value, str):
        return value
    if kind == "str" and key == "margin" and number:
        return str(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if kind == "list" and key == "budget" and isinstance(value, dict):  # {tflite = 2.5}
        return [f"{k}={v}" for k, v in value.items()]
    if kind == "list" and isinstance(value, str):
        return [value]
    shown = {"int": "an integer", "str": "a string", "bool": "true or false",
             "list": "a list of strings"}  # fmt: skip
    want = next((v for k, v in shown.items() if kind.startswith(k)), kind)
    if key == "margin":
        want = "auto or a number"
    raise UserError(f"search config {path}: {key} must be {want}, got {value!r}",
                    field="config")  # fmt: skip


def merged(from_file: dict[str, Any], given: dict[str, Any]) -> SearchConfig:
    """The config of a command: the flags `given` (not None) win over the file, the defaults
    fill the rest; checked."""
    config = replace(SearchConfig(), **from_file)
    config = replace(config, **{k: v for k, v in given.items() if v is not None})
    config.check()
    return config


@dataclass(frozen=True)
class DemoConfig:
    folder: Path
    run: str = "demo"
    epochs: int = 6  # was 8 before the closed loop: the loop's rounds took the time
    # The closed loop measures the subnets the search goes to, so fewer random subnets are
    # measured up front (was 24 and 40 without the loop) and the first round is shorter (was
    # 150 trials): the demo stays within 10 minutes on 2 cores.
    n_cpu: int = 20  # about 2 s a subnet on 2 cores: an XLA compile, then up to 100 calls
    n_tflite: int = 24
    trials: int = 100
    rounds: int = 2  # closed-loop rounds after the first (each: 33 trials, front measured)
    search: str = "demo"
    budget_quantile: float = 0.4  # tflite budget: this quantile of random subnets' latency
    seed: int = 0

    @property
    def db_url(self) -> str:
        return f"sqlite:///{(self.folder / 'hwnas.db').resolve()}"

    @property
    def export_path(self) -> Path:
        return self.folder / "exports" / f"{self.search}-best-int8.tflite"

    def check(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(
                f"{{field}} {self.folder} is a file; give a folder (made if missing)",
                field="folder",
            )
        for name in ("epochs", "trials"):
            if getattr(self, name) < 1:
                raise UserError("{field} must be at least 1", field=name)
