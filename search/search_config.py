"""The services' configurations and defaults, light (no JAX, Optuna or SQLAlchemy): the CLI's
help text is generated from them, and `hwnas --help` does not wait for a heavy import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwnas.search.output import UserError

DEFAULT_RUNS_DIR = Path("runs")  # where `hwnas train` writes runs/NAME/supernet.ckpt
N_INITIAL = 10  # a new study's first trials, spread over the size range (search.initial_design)
DEFAULT_ROUNDS = 3  # closed-loop rounds after a search's first (search.services.rounds)
NOISE_JOBS = 10  # subnets `hwnas measure` times twice for the noise floor


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
            raise UserError(f"--dir {self.folder} is a file; give a folder (made if missing)")
        if min(self.epochs, self.trials) < 1:
            raise UserError("--epochs and --trials must be at least 1")
