"""The training configuration: light (no JAX), so the CLI's help and config files read it fast."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hwnas.exceptions import HwnasError


class ConfigError(HwnasError):
    """A training-config file that cannot be used; the message names the file and the field."""


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
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()
                      if k in names})  # fmt: skip


def read_toml(path: str | Path) -> dict[str, Any]:
    """The fields a TOML file sets (any of `TrainConfig`'s, each of its type), checked.

    Raises:
        ConfigError: the file is missing or not TOML, or a key or value is not a field's.
    """
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"training config {path}: {e}") from None
    types = {f.name: f.type for f in fields(TrainConfig)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in types:
            raise ConfigError(
                f"training config {path}: unknown field {key!r}; known: {', '.join(types)}"
            )
        out[key] = _checked(path, key, types[key], value)
    return out


def _checked(path, key: str, kind: str, value: Any) -> Any:
    """`value` as field `key` of type `kind` (the annotation's text) wants it."""
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    ints = isinstance(value, list) and all(type(v) is int for v in value)
    if kind.startswith("tuple[int") and ints:
        return tuple(value)
    shown = {"int": "an integer", "float": "a number"}.get(kind, "a list of integers")
    raise ConfigError(f"training config {path}: {key} must be {shown}, got {value!r}")


def to_toml(config: TrainConfig) -> str:
    """The config as a TOML file `read_toml` reads back."""
    lines = []
    for key, value in config.to_dict().items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, list) else
                     f"{key} = [{', '.join(map(str, value))}]")  # fmt: skip
    return "\n".join(lines) + "\n"
