"""`hwnas space`: a space's size and extreme subnets, and the presets shipped with hwnas."""

from __future__ import annotations

from pathlib import Path

from hwnas.supernet.space import load_space, presets


def space_summary(space_spec: str | Path | None = None) -> dict:
    """Size of the space (a preset name or a file) and its extreme subnets, with their
    analytic costs."""
    space = load_space(space_spec)
    largest, smallest = space.largest(), space.smallest()
    return {
        "space": space.name,
        "n_subnets": space.n_subnets,
        "encoding_size": space.encoding_size,
        "largest": largest.to_dict(),
        "smallest": smallest.to_dict(),
        "largest_cost": vars(space.cost(largest)),
        "smallest_cost": vars(space.cost(smallest)),
        "choices": {
            "depths": list(space.depths),
            "kernels": list(space.kernels),
            "expands": list(space.expands),
            "resolutions": list(space.resolutions),
            "widths": [s.width for s in space.stages],
        },
    }


def space_presets() -> dict:
    """The preset spaces: name, resolutions, size and the cost range of each."""
    rows = []
    for name in presets():
        space = load_space(name)
        largest, smallest = space.cost(space.largest()), space.cost(space.smallest())
        rows.append(
            {
                "name": name,
                "space": space.name,
                "resolutions": list(space.resolutions),
                "widths": [s.width for s in space.stages],
                "n_subnets": space.n_subnets,
                "macs": [smallest.macs, largest.macs],
                "params": [smallest.params, largest.params],
            }
        )
    return {"presets": rows}


def presets_text(result: dict) -> str:
    """`space_presets()` as a table for the terminal."""
    lines = [f"{'name':<10}{'resolutions':<22}{'widths':<26}{'M MACs':>14}{'M params':>14}"]
    for r in result["presets"]:
        macs = "-".join(f"{m / 1e6:.0f}" for m in r["macs"])
        params = "-".join(f"{p / 1e6:.2f}" for p in r["params"])
        res = ",".join(map(str, r["resolutions"]))
        widths = ",".join(map(str, r["widths"]))
        lines.append(f"{r['name']:<10}{res:<22}{widths:<26}{macs:>14}{params:>14}")
    return "\n".join(lines)
