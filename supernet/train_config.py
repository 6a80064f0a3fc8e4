"""The training configuration: light (no JAX), so the CLI's help and config files read it fast.

`TrainConfig` is what a run learns with (recorded with the run); `LaunchConfig` how it is
launched (not recorded). A TOML file (`hwnas train --config`) may set any field of either;
`read_toml` checks every key and value (docs/config.md lists them).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hwnas.exceptions import HwnasError


class ConfigError(HwnasError):
    """A training setting that cannot be used: from a config file (the message names the file
    and the key) or given directly (`field` names it)."""


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults train the default space on digits in a few minutes."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 4e-3
    weight_decay: float = 5e-5
    warmup_epochs: int = 1
    n_random: int = 2
    seed: int = 0
    sort_channels_at: tuple[int, ...] = (2,)
    recalib_batches: int = 4

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From `to_dict`'s keys; other keys are ignored."""
        names = {f.name for f in fields(cls)}
        given: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names
        }
        return cls(**given)


LOADERS = ("auto", "memory", "stream")  # how a run reads an image folder


@dataclass(frozen=True)
class LaunchConfig:
    """The expert settings of `hwnas train`: where checkpoints go, how an image folder is read,
    which process of a job this is. Not part of the run's record (a resumed run may change
    them); each is a key of the training config file and a hidden flag (docs/config.md).

    Raises:
        ConfigError: a value out of its range; the error names the field.
    """

    runs_dir: str = "runs"  # checkpoints go to RUNS_DIR/NAME/supernet.ckpt
    loader: str = "auto"  # auto, memory or stream (`hwnas.search.services.feed_choice`)
    decode_workers: int | None = None  # decoding processes of a streamed folder; None: cores-1
    checkpoint_minutes: float = 10.0  # also checkpoint within an epoch this often
    coordinator: str | None = None  # several hosts: process 0's HOST:PORT
    num_processes: int | None = None  # processes in the job; None: $JAX_NUM_PROCESSES, else 1
    process_id: int | None = None  # this process's id; None: $JAX_PROCESS_ID, else 0

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise ConfigError(
                f"unknown {{field}} {self.loader!r}; choose one of {', '.join(LOADERS)}",
                field="loader",
            )
        if self.decode_workers is not None and self.decode_workers < 0:
            raise ConfigError(
                f"{{field}} must be 0 or more, got {self.decode_workers}", field="decode_workers"
            )
        if not self.checkpoint_minutes > 0:
            raise ConfigError(
                f"{{field}} must be above 0, got {self.checkpoint_minutes}",
                field="checkpoint_minutes",
            )

    def given(self, **values: Any) -> LaunchConfig:
        """This config with every value in `values` that is not None put in (a flag given
        wins over the config file)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class TrainFile:
    """What a training config file sets: `TrainConfig` fields (`train`) and `LaunchConfig`
    fields (`launch`), each checked; keys it leaves out are absent."""

    train: Mapping[str, Any] = field(default_factory=dict)
    launch: Mapping[str, Any] = field(default_factory=dict)


# The least value of the config's integer fields (below it, training cannot run).
_MINIMUM = {"epochs": 1, "batch_size": 1, "recalib_batches": 1, "n_random": 0,
            "warmup_epochs": 0, "num_processes": 1, "process_id": 0}  # fmt: skip


def read_toml(path: str | Path) -> TrainFile:
    """The settings a TOML file sets (any of `TrainConfig`'s and `LaunchConfig`'s fields, each
    of its type and range).

    Raises:
        ConfigError: the file is missing or not TOML, or a key or value is not a field's; one
            line that names the file and the key.
    """
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"training config {path}: {' '.join(str(e).split())}") from None
    train_types = {f.name: str(f.type) for f in fields(TrainConfig)}
    launch_types = {f.name: str(f.type) for f in fields(LaunchConfig)}
    train, launch = {}, {}
    for key, value in raw.items():
        if key in train_types:
            train[key] = _checked(path, key, train_types[key], value)
        elif key in launch_types:
            launch[key] = _checked(path, key, launch_types[key], value)
        else:
            known = ", ".join([*train_types, *launch_types])
            raise ConfigError(f"training config {path}: unknown field {key!r}; known: {known}")
    try:
        LaunchConfig(**launch)
    except ConfigError as e:
        raise ConfigError(f"training config {path}: {e}") from None
    return TrainFile(train, launch)


def _checked(path: str | Path, key: str, kind: str, value: Any) -> Any:
    """`value` as field `key` of type `kind` (the annotation's text) wants it."""
    kind = kind.removesuffix(" | None")
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        if value < _MINIMUM.get(key, value):
            raise ConfigError(
                f"training config {path}: {key} must be at least {_MINIMUM[key]}, got {value}"
            )
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    ints = isinstance(value, list) and all(type(v) is int for v in value)
    if kind.startswith("tuple[int") and ints:
        return tuple(value)
    shown = {"int": "an integer", "float": "a number", "str": "a string"}.get(
        kind, "a list of integers"
    )
    raise ConfigError(f"training config {path}: {key} must be {shown}, got {value!r}")


def to_toml(config: TrainConfig) -> str:
    """The config as a TOML file `read_toml` reads back."""
    lines = []
    for key, value in config.to_dict().items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, list) else
                     f"{key} = [{', '.join(map(str, value))}]")  # fmt: skip
    return "\n".join(lines) + "\n"
