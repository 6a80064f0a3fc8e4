"""The search space: a MobileNetV3-style space with elastic depth, kernel, expand and resolution.

The space is data: a frozen `SearchSpace` loaded from JSON or TOML (or the packaged default).
A `Subnet` is a frozen, hashable choice from a space. Layer slots are stage-major with
`max_depth` slots per stage; slots beyond a stage's depth are skipped and normalised to 0, so
equal subnets compare (and hash, and key) equal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.exceptions import HwnasError

ACTIVATIONS = ("relu", "hswish")
PRESETS_DIR = Path(__file__).parent / "spaces"
DEFAULT_PRESET = "digits"
DEFAULT_SPACE_FILE = PRESETS_DIR / f"{DEFAULT_PRESET}.json"


class SpaceError(HwnasError):
    """An illegal space, subnet or subnet JSON; the message says what is wrong."""


@dataclass(frozen=True)
class StageSpec:
    """One stage: output width, stride of its first layer, squeeze-excite, activation."""

    width: int
    stride: int = 1
    se: bool = False
    act: str = "relu"

    def __post_init__(self) -> None:
        if not _is_int(self.width) or self.width < 1:
            raise SpaceError(f"stage width must be a positive integer, got {self.width!r}")
        if self.stride not in (1, 2):
            raise SpaceError(f"stage stride must be 1 or 2, got {self.stride!r}")
        if self.act not in ACTIVATIONS:
            raise SpaceError(f"stage act must be one of {ACTIVATIONS}, got {self.act!r}")


@dataclass(frozen=True)
class Subnet:
    """One architecture of a space (validated against it by `SearchSpace.validate`)."""

    resolution: int
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("depths", "kernels", "expands"):
            values = tuple(getattr(self, name))
            if not all(_is_int(v) for v in values):
                raise SpaceError(f"subnet {name} must be integers, got {list(values)}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        if not _is_int(self.resolution):
            raise SpaceError(f"subnet resolution must be an integer, got {self.resolution!r}")
        object.__setattr__(self, "resolution", int(self.resolution))
        n_slots, n_stages = len(self.kernels), len(self.depths)
        if n_stages == 0 or len(self.expands) != n_slots or n_slots % n_stages:
            raise SpaceError(
                f"subnet has {n_stages} depths, {n_slots} kernels and {len(self.expands)} "
                "expands: kernels and expands need one entry per layer slot of every stage"
            )
        max_depth = n_slots // n_stages
        if any(d < 1 or d > max_depth for d in self.depths):
            raise SpaceError(f"subnet depths {list(self.depths)} must lie in 1..{max_depth}")
        object.__setattr__(self, "kernels", self._masked(self.kernels))
        object.__setattr__(self, "expands", self._masked(self.expands))

    @property
    def max_depth(self) -> int:
        return len(self.kernels) // len(self.depths)

    def _masked(self, values: tuple[int, ...]) -> tuple[int, ...]:
        m = self.max_depth
        return tuple(v if i % m < self.depths[i // m] else 0 for i, v in enumerate(values))

    def active_slots(self) -> list[tuple[int, int, int]]:
        """(stage, layer, slot index) for every layer the subnet runs."""
        m = self.max_depth
        return [(s, j, s * m + j) for s, d in enumerate(self.depths) for j in range(d)]

    @property
    def key(self) -> str:
        """Canonical key: equal subnets have equal keys."""
        stages = []
        for s, d in enumerate(self.depths):
            layers = [
                f"{self.kernels[s * self.max_depth + j]}x{self.expands[s * self.max_depth + j]}"
                for j in range(d)
            ]
            stages.append("-".join(layers))
        return f"r{self.resolution}:" + "_".join(stages)

    def to_dict(self) -> dict:
        return {
            "resolution": self.resolution,
            "depths": list(self.depths),
            "kernels": list(self.kernels),
            "expands": list(self.expands),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class SearchSpace:
    """A MobileNetV3-style elastic space. Frozen, hashable, loadable from JSON/TOML."""

    name: str = "mbv3-digits"
    stages: tuple[StageSpec, ...] = ()
    depths: tuple[int, ...] = (2, 3, 4)
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    resolutions: tuple[int, ...] = (12, 14, 16)
    stem_width: int = 16
    stem_stride: int = 1
    head_width: int = 128
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, StageSpec) else _stage(s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise SpaceError("a space needs at least one stage")
        for name in ("depths", "kernels", "expands", "resolutions"):
            _check_choices(name, getattr(self, name))
            object.__setattr__(self, name, tuple(sorted(int(v) for v in getattr(self, name))))
        if any(k % 2 == 0 for k in self.kernels):
            raise SpaceError(f"kernels must be odd, got {list(self.kernels)}")
        for name in ("stem_width", "head_width", "in_channels", "num_classes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise SpaceError(f"{name} must be a positive integer, got {value!r}")
        if self.stem_stride not in (1, 2):
            raise SpaceError(f"stem_stride must be 1 or 2, got {self.stem_stride!r}")

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping) -> SearchSpace:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpaceError(f"unknown space keys {unknown}; known keys are {sorted(known)}")
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise SpaceError(f"bad space: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> SearchSpace:
        """Load a space from a .json or .toml file; None loads the packaged default."""
        p = Path(path) if path is not None else DEFAULT_SPACE_FILE
        if not p.is_file():
            raise SpaceError(f"space file {p} does not exist; pass an existing .json/.toml file")
        try:
            text = p.read_text()
            data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise SpaceError(f"cannot read space file {p}: {e}") from None
        if not isinstance(data, dict):
            raise SpaceError(f"space file {p} must hold an object/table at the top level")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Identity of the space's dimensions, its name left out (16 hex digits of a sha256):
        latency measurements and predictors belong to a (space key, target) pair."""
        dims = {k: v for k, v in self.to_dict().items() if k != "name"}
        text = json.dumps(dims, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ---- shape of the space ---------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def n_slots(self) -> int:
        return self.n_stages * self.max_depth

    @property
    def n_subnets(self) -> int:
        """Number of distinct subnets (skipped slots do not count)."""
        per_layer = len(self.kernels) * len(self.expands)
        per_stage = sum(per_layer**d for d in self.depths)
        return len(self.resolutions) * per_stage**self.n_stages

    @property
    def encoding_size(self) -> int:
        return len(self.resolutions) + self.n_slots * (len(self.kernels) + len(self.expands))

    # ---- subnets -----------------------------------------------------------------------------
    def validate(self, subnet: Subnet) -> Subnet:
        """Return `subnet` if every value is legal in this space, else raise SpaceError."""
        if len(subnet.depths) != self.n_stages or subnet.max_depth != self.max_depth:
            raise SpaceError(
                f"subnet has {len(subnet.depths)} stages of {subnet.max_depth} slots; this "
                f"space has {self.n_stages} stages of {self.max_depth} slots "
                f"({self.n_slots} kernels and expands)"
            )
        if subnet.resolution not in self.resolutions:
            raise SpaceError(
                f"resolution {subnet.resolution} is not in the space's {list(self.resolutions)}"
            )
        for s, d in enumerate(subnet.depths):
            if d not in self.depths:
                raise SpaceError(f"depth {d} of stage {s} is not in {list(self.depths)}")
        for _, _, i in subnet.active_slots():
            if subnet.kernels[i] not in self.kernels:
                raise SpaceError(f"kernel {subnet.kernels[i]} at slot {i} not in {self.kernels}")
            if subnet.expands[i] not in self.expands:
                raise SpaceError(f"expand {subnet.expands[i]} at slot {i} not in {self.expands}")
        return subnet

    def subnet(self, resolution, depths, kernels, expands) -> Subnet:
        return self.validate(Subnet(resolution, tuple(depths), tuple(kernels), tuple(expands)))

    def subnet_from_dict(self, data: object) -> Subnet:
        """Build a validated subnet from its JSON object; skipped slots may hold 0 or any
        legal value."""
        if not isinstance(data, Mapping):
            raise SpaceError(
                "a subnet must be a JSON object with resolution/depths/kernels/expands"
            )
        keys = {"resolution", "depths", "kernels", "expands"}
        if set(data) != keys:
            raise SpaceError(
                f"subnet JSON needs exactly the keys {sorted(keys)}, got {sorted(data)}"
            )
        for name in ("depths", "kernels", "expands"):
            if not isinstance(data[name], Sequence) or isinstance(data[name], str):
                raise SpaceError(f"subnet {name} must be a list of integers")
        want = {"depths": self.n_stages, "kernels": self.n_slots, "expands": self.n_slots}
        for name, n in want.items():
            if len(data[name]) != n:
                raise SpaceError(
                    f"subnet {name} needs {n} entries in this space (one per "
                    f"{'stage' if name == 'depths' else 'layer slot'}), "
                    f"got {len(data[name])}"
                )
        for i, (k, e) in enumerate(zip(data["kernels"], data["expands"], strict=False)):
            if (k not in self.kernels and k != 0) or (e not in self.expands and e != 0):
                raise SpaceError(
                    f"slot {i} has kernel {k}, expand {e}: not in {self.kernels}, {self.expands}"
                )
        return self.subnet(data["resolution"], data["depths"], data["kernels"], data["expands"])

    def subnet_from_json(self, text: str) -> Subnet:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise SpaceError(f"subnet is not valid JSON ({e}); expected {_SUBNET_HINT}") from None
        return self.subnet_from_dict(data)

    def largest(self) -> Subnet:
        m, n = self.max_depth, self.n_slots
        return self.subnet(
            self.resolutions[-1],
            (m,) * self.n_stages,
            (self.kernels[-1],) * n,
            (self.expands[-1],) * n,
        )

    def smallest(self) -> Subnet:
        n = self.n_slots
        return self.subnet(
            self.resolutions[0],
            (min(self.depths),) * self.n_stages,
            (self.kernels[0],) * n,
            (self.expands[0],) * n,
        )

    def sample(self, rng: np.random.Generator) -> Subnet:
        """A uniformly random choice per decision (resolution, each depth, each slot)."""
        n = self.n_slots
        return self.subnet(
            int(rng.choice(self.resolutions)),
            tuple(int(d) for d in rng.choice(self.depths, size=self.n_stages)),
            tuple(int(k) for k in rng.choice(self.kernels, size=n)),
            tuple(int(e) for e in rng.choice(self.expands, size=n)),
        )

    def sample_sized(self, rng: np.random.Generator, level: float | None = None) -> Subnet:
        """A random subnet whose size is spread evenly from the smallest to the largest: a
        size level u ~ U(0, 1) is drawn (or given as `level`), then every decision takes
        choice index Binomial(n_choices - 1, u), so u = 0 is the smallest subnet and u = 1
        the largest. Uniform sampling piles subnets up in the middle of the size range (a sum
        of many independent choices); this covers its ends too, where a latency predictor
        otherwise extrapolates and search fronts lie."""
        u = rng.uniform() if level is None else float(level)
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"size level must be within [0, 1], got {level}")

        def pick(choices: tuple[int, ...], size: int) -> tuple[int, ...]:
            idx = rng.binomial(len(choices) - 1, u, size=size)
            return tuple(int(choices[i]) for i in idx)

        return self.subnet(
            pick(self.resolutions, 1)[0],
            pick(self.depths, self.n_stages),
            pick(self.kernels, self.n_slots),
            pick(self.expands, self.n_slots),
        )

    # ---- encoding ------------------------------------------------------------------------------
    def encode(self, subnet: Subnet) -> np.ndarray:
        """Fixed-length one-hot vector: resolution, then per slot kernel and expand (zeros for
        skipped slots), as Once-for-All's arch2feature."""
        nk, ne = len(self.kernels), len(self.expands)
        v = np.zeros(self.encoding_size, np.float32)
        v[self.resolutions.index(subnet.resolution)] = 1.0
        base = len(self.resolutions)
        for _, _, i in subnet.active_slots():
            o = base + i * (nk + ne)
            v[o + self.kernels.index(subnet.kernels[i])] = 1.0
            v[o + nk + self.expands.index(subnet.expands[i])] = 1.0
        return v

    def decode(self, vector: np.ndarray) -> Subnet:
        """Inverse of `encode`."""
        v = np.asarray(vector)
        if v.shape != (self.encoding_size,):
            raise SpaceError(f"encoding must have shape ({self.encoding_size},), got {v.shape}")
        nr, nk, ne = len(self.resolutions), len(self.kernels), len(self.expands)
        resolution = self.resolutions[int(np.argmax(v[:nr]))]
        slots = v[nr:].reshape(self.n_slots, nk + ne)
        active = slots[:, :nk].sum(axis=1) > 0.5
        kernels = [
            self.kernels[int(np.argmax(r[:nk]))] if a else 0
            for r, a in zip(slots, active, strict=True)
        ]
        expands = [
            self.expands[int(np.argmax(r[nk:]))] if a else 0
            for r, a in zip(slots, active, strict=True)
        ]
        depths = [
            int(active[s * self.max_depth : (s + 1) * self.max_depth].sum())
            for s in range(self.n_stages)
        ]
        return self.subnet(resolution, depths, kernels, expands)

    # ---- analytic cost ----------------------------------------------------------------------
    def layers(self, subnet: Subnet) -> list[LayerShape]:
        """The shape of every layer the subnet runs, in order (used by the cost counts and by
        per-layer latency features)."""
        self.validate(subnet)
        h = _out_size(subnet.resolution, self.stem_stride)
        c_in, out = self.stem_width, []
        for s, j, i in subnet.active_slots():
            spec = self.stages[s]
            stride = spec.stride if j == 0 else 1
            h_out = _out_size(h, stride)
            out.append(
                LayerShape(
                    s,
                    j,
                    h,
                    h_out,
                    c_in,
                    spec.width,
                    c_in * subnet.expands[i],
                    subnet.kernels[i],
                    stride,
                    spec.se,
                    spec.act,
                )
            )
            h, c_in = h_out, spec.width
        return out

    def cost(self, subnet: Subnet) -> Cost:
        """Exact trainable-parameter and multiply-accumulate counts of `subnet`.

        Parameters: convolution and dense weights and biases plus BatchNorm scale and bias
        (running statistics are not parameters). MACs: convolutions and dense layers.
        """
        r = _out_size(subnet.resolution, self.stem_stride)
        params = 9 * self.in_channels * self.stem_width + 2 * self.stem_width
        macs = r * r * 9 * self.in_channels * self.stem_width
        layers = self.layers(subnet)
        for layer in layers:
            params += layer.params
            macs += layer.macs
        last, h = self.stages[-1].width, layers[-1].h_out
        params += last * self.head_width + 2 * self.head_width
        params += self.head_width * self.num_classes + self.num_classes
        macs += h * h * last * self.head_width + self.head_width * self.num_classes
        return Cost(params=params, macs=macs)


@dataclass(frozen=True)
class LayerShape:
    """One inverted-residual layer as a subnet runs it."""

    stage: int
    layer: int
    h_in: int
    h_out: int
    c_in: int
    c_out: int
    mid: int
    kernel: int
    stride: int
    se: bool
    act: str

    @property
    def se_mid(self) -> int:
        return se_width(self.mid)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    @property
    def params(self) -> int:
        p = self.c_in * self.mid + 2 * self.mid  # expand 1x1 + BN
        p += self.kernel * self.kernel * self.mid + 2 * self.mid  # depthwise + BN
        if self.se:
            p += 2 * self.mid * self.se_mid + self.se_mid + self.mid
        return p + self.mid * self.c_out + 2 * self.c_out  # project 1x1 + BN

    @property
    def macs(self) -> int:
        m = self.h_in**2 * self.c_in * self.mid
        m += self.h_out**2 * self.kernel**2 * self.mid
        if self.se:
            m += 2 * self.mid * self.se_mid
        return m + self.h_out**2 * self.mid * self.c_out


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def se_width(mid: int) -> int:
    """Squeeze-excite bottleneck width for `mid` expanded channels."""
    return max(8, mid // 4)


def _out_size(h: int, stride: int) -> int:
    return math.ceil(h / stride)


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_choices(name: str, values: object) -> None:
    if not isinstance(values, tuple | list) or not values:
        raise SpaceError(f"space {name} must be a non-empty list of integers")
    if not all(_is_int(v) and v > 0 for v in values) or len(set(values)) != len(values):
        raise SpaceError(f"space {name} must be distinct positive integers, got {list(values)}")


def _stage(data: object) -> StageSpec:
    if not isinstance(data, Mapping):
        raise SpaceError(f"each stage must be an object with width/stride/se/act, got {data!r}")
    try:
        return StageSpec(**data)
    except TypeError as e:
        raise SpaceError(f"bad stage {dict(data)}: {e}") from None


_SUBNET_HINT = '{"resolution": R, "depths": [...], "kernels": [...], "expands": [...]}'


def default_space() -> SearchSpace:
    return SearchSpace.from_file(None)


def presets() -> dict[str, Path]:
    """The spaces shipped with hwnas, by name (the file's stem): digits, cifar, ofa-mbv3 and
    ofa-mbv3-r25. The last is Once-for-All's own space with its 25 input resolutions (128-224
    px in steps of 4), to measure, fit and search at OFA's granularity; `ofa-mbv3` keeps 4
    of them to train, as every resolution costs its own compile on CPU."""
    return {p.stem: p for p in sorted(PRESETS_DIR.glob("*.json"))}


def load_space(spec: SearchSpace | str | Path | None = None) -> SearchSpace:
    """A space by preset name or from a .json/.toml file; None gives the default preset.

    Raises:
        SpaceError: `spec` is neither a preset nor a readable space file.
    """
    if spec is None:
        return default_space()
    if isinstance(spec, SearchSpace):  # the Python API passes space objects
        return spec
    shipped = presets()
    if str(spec) in shipped:
        return SearchSpace.from_file(shipped[str(spec)])
    path = Path(spec)
    if path.suffix.lower() in (".json", ".toml") or path.exists():
        return SearchSpace.from_file(path)
    raise SpaceError(
        f"unknown space {str(spec)!r}: give a preset ({', '.join(shipped)}) "
        "or a .json/.toml space file"
    )
