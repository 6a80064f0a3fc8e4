"""`hwnas space`: a space's size and extreme subnets, and the presets shipped with hwnas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwnas.search.result import Result
from hwnas.supernet.space import Cost, SearchSpace, Subnet, load_space, presets


@dataclass(frozen=True)
class SpaceChoices:
    """The values a subnet chooses from, and each stage's width."""

    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]
    resolutions: tuple[int, ...]
    widths: tuple[int, ...]


@dataclass(frozen=True)
class SpaceSummary(Result):
    """A space's size, encoding length, extreme subnets and their analytic costs."""

    space: str
    n_subnets: int
    encoding_size: int
    largest: Subnet
    smallest: Subnet
    largest_cost: Cost
    smallest_cost: Cost
    choices: SpaceChoices


def _widths(space: SearchSpace) -> tuple[int, ...]:
    return tuple(s.width for s in space.stages)


def space_summary(space_spec: SearchSpace | str | Path | None = None) -> SpaceSummary:
    """Size of the space (a preset name or a file) and its extreme subnets, with their
    analytic costs."""
    space = load_space(space_spec)
    largest, smallest = space.largest(), space.smallest()
    return SpaceSummary(
        space=space.name,
        n_subnets=space.n_subnets,
        encoding_size=space.encoding_size,
        largest=largest,
        smallest=smallest,
        largest_cost=space.cost(largest),
        smallest_cost=space.cost(smallest),
        choices=SpaceChoices(
            space.depths, space.kernels, space.expands, space.resolutions, _widths(space)
        ),
    )


@dataclass(frozen=True)
class PresetRow(Result):
    """One preset space: its resolutions, widths, size, and cost range (smallest, largest)."""

    name: str
    space: str
    resolutions: tuple[int, ...]
    widths: tuple[int, ...]
    n_subnets: int
    macs: tuple[int, int]
    params: tuple[int, int]


@dataclass(frozen=True)
class SpacePresets(Result):
    """The preset spaces shipped with hwnas."""

    presets: tuple[PresetRow, ...]

    def text(self) -> str:
        """A table for the terminal."""
        lines = [f"{'name':<10}{'resolutions':<22}{'widths':<26}{'M MACs':>14}{'M params':>14}"]
        for r in self.presets:
            macs = "-".join(f"{m / 1e6:.0f}" for m in r.macs)
            params = "-".join(f"{p / 1e6:.2f}" for p in r.params)
            res = ",".join(map(str, r.resolutions))
            widths = ",".join(map(str, r.widths))
            lines.append(f"{r.name:<10}{res:<22}{widths:<26}{macs:>14}{params:>14}")
        return "\n".join(lines)


def space_presets() -> SpacePresets:
    """The preset spaces: name, resolutions, size and the cost range of each."""
    rows = []
    for name in presets():
        space = load_space(name)
        largest, smallest = space.cost(space.largest()), space.cost(space.smallest())
        rows.append(
            PresetRow(
                name=name,
                space=space.name,
                resolutions=tuple(space.resolutions),
                widths=_widths(space),
                n_subnets=space.n_subnets,
                macs=(smallest.macs, largest.macs),
                params=(smallest.params, largest.params),
            )
        )
    return SpacePresets(tuple(rows))


def presets_text(result: SpacePresets) -> str:
    """`space_presets()` as a table for the terminal."""
    return result.text()
