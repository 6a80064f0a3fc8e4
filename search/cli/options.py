"""Options that several commands share, as `Annotated` types."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from hwnas.exceptions import HwnasError

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="SQLAlchemy database URL (default: $HWNAS_DB, else sqlite:///hwnas.db).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object as the last line on stdout.")
]
SpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        metavar="NAME|FILE",
        help="Search space: a preset (digits, cifar, ofa-mbv3, ofa-mbv3-r25; see `hwnas space "
        "--list`) or a .json/.toml file. Default: digits.",
        show_default=False,
    ),
]
MeasuredSpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        metavar="NAME|FILE",
        help="The space whose measurements are meant (a preset or a .json/.toml file). "
        "Default: the only space measured on the target.",
        show_default=False,
    ),
]
OfRunOpt = Annotated[
    str | None,
    typer.Option(help="... or the space this training run trained.", show_default=False),
]


TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        help="cpu, gpu or tflite, or a full key (tflite-int8-t4, cpu-b32, tflite-fp32-t1@pixel), "
        "or the name of a target imported with `measure --import`.",
    ),
]
ThreadsOpt = Annotated[int, typer.Option(help="tflite: interpreter threads (part of the target).")]
PrecisionOpt = Annotated[str, typer.Option(help="tflite: fp32 or int8 (part of the target).")]
BatchOpt = Annotated[
    int, typer.Option(help="cpu/gpu: images per call (part of the target: cpu-b32).")
]
DeviceOpt = Annotated[
    str, typer.Option(help="Label of the measured device when it is not this machine.")
]


@contextmanager
def flags_named(flags: dict[str, str]) -> Iterator[None]:
    """Errors whose field a flag of another name sets (`folder`: `--dir`) name that flag."""
    try:
        yield
    except HwnasError as e:
        if e.field not in flags:
            raise
        raise HwnasError(e.message, field=flags[e.field]) from None
