"""Vectorised per-layer features of many subnets at once (the predictors' input).

A batch of subnets becomes integer arrays (resolution index, and per layer slot the kernel and
expand index, -1 where the slot is skipped); everything else is table lookups and sums over
slots in numpy, so featurising costs microseconds per thousand subnets, not a Python loop per
layer. Two feature blocks:
- physical: per subnet, the number of layers and the MACs of each kind of operation (expand,
  depthwise per kernel size, squeeze-excite, project) plus the activation volume, and a one-hot
  resolution (stem, head and fixed overheads);
- table: counts of every (layer kind, resolution, kernel, expand) combination, where a layer
  kind is a stage's first layer or one of its later, identically shaped layers. A linear model
  on these counts is a lookup table of in-context layer latencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.supernet.space import LayerShape, SearchSpace, Subnet


@dataclass(frozen=True)
class Encoded:
    """Subnets as index arrays: `r` (N,), `k` and `e` (N, slots), -1 for skipped slots."""

    r: np.ndarray
    k: np.ndarray
    e: np.ndarray

    def take(self, idx: np.ndarray) -> Encoded:
        """The subnets at `idx` (indices or a mask)."""
        return Encoded(self.r[idx], self.k[idx], self.e[idx])


class SpaceTables:
    """Per-slot constants of a space, and per-(resolution, slot) spatial sizes."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        m, res = space.max_depth, space.resolutions
        self.kernels = np.asarray(space.kernels)
        self.expands = np.asarray(space.expands)
        c_in, c_out, stride, se, kind = [], [], [], [], []
        prev = space.stem_width
        for s, spec in enumerate(space.stages):
            for j in range(m):
                c_in.append(prev if j == 0 else spec.width)
                c_out.append(spec.width)
                stride.append(spec.stride if j == 0 else 1)
                se.append(spec.se)
                kind.append(2 * s + (j > 0))
            prev = spec.width
        self.c_in, self.c_out = np.asarray(c_in), np.asarray(c_out)
        self.se, self.kind = np.asarray(se), np.asarray(kind)
        self.n_kinds = 2 * space.n_stages
        h_in = np.zeros((len(res), space.n_slots), np.int64)
        for ri, r in enumerate(res):
            h = -(-r // space.stem_stride)
            for i, st in enumerate(stride):
                h_in[ri, i] = h
                if i % m == 0:  # only a stage's first layer strides
                    h = -(-h // st)
        self.h_in = h_in
        self.h_out = np.stack([-(-h_in[:, i] // stride[i]) for i in range(len(stride))], 1)
        self.stride = np.asarray(stride)

    def encode(self, subnets: Sequence[Subnet]) -> Encoded:
        sp = self.space
        r_pos = {r: i for i, r in enumerate(sp.resolutions)}
        k_pos = {k: i for i, k in enumerate(sp.kernels)} | {0: -1}
        e_pos = {e: i for i, e in enumerate(sp.expands)} | {0: -1}
        r = np.fromiter((r_pos[s.resolution] for s in subnets), np.int64, len(subnets))
        k = np.array([[k_pos[v] for v in s.kernels] for s in subnets], np.int64)
        e = np.array([[e_pos[v] for v in s.expands] for s in subnets], np.int64)
        return Encoded(r, k.reshape(len(subnets), -1), e.reshape(len(subnets), -1))


def physical(t: SpaceTables, enc: Encoded) -> np.ndarray:
    """(N, F) physical features; MACs in millions."""
    active = enc.k >= 0
    mid = t.c_in[None] * t.expands[np.maximum(enc.e, 0)] * active
    h_in, h_out = t.h_in[enc.r], t.h_out[enc.r]
    ksz = t.kernels[np.maximum(enc.k, 0)]
    expand = (h_in**2 * t.c_in * mid).sum(1)
    project = (h_out**2 * mid * t.c_out).sum(1)
    dw = [(h_out**2 * ksz**2 * mid * (enc.k == i)).sum(1) for i in range(len(t.kernels))]
    se_mid = np.maximum(8, mid // 4) * active
    se = (2 * mid * se_mid * t.se).sum(1)
    volume = (h_out**2 * mid).sum(1)
    res = np.eye(len(t.space.resolutions))[enc.r]
    cols = [active.sum(1), expand / 1e6, project / 1e6, *(d / 1e6 for d in dw), se / 1e6]
    cols += [volume / 1e5, (active * t.se).sum(1)]
    return np.concatenate([np.stack(cols, 1).astype(np.float64), res], 1)


def table_index(t: SpaceTables, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
    """(N, slots) table column of every slot's configuration, and the active mask."""
    nr, nk, ne = len(t.space.resolutions), len(t.kernels), len(t.expands)
    active = enc.k >= 0
    idx = ((t.kind[None] * nr + enc.r[:, None]) * nk + enc.k) * ne + enc.e
    return np.where(active, idx, 0), active


def table_size(t: SpaceTables) -> int:
    return t.n_kinds * len(t.space.resolutions) * len(t.kernels) * len(t.expands)


def table(t: SpaceTables, enc: Encoded) -> np.ndarray:
    """(N, kinds * resolutions * kernels * expands) counts of layer configurations."""
    idx, active = table_index(t, enc)
    n, size = len(enc.r), table_size(t)
    flat = (np.arange(n)[:, None] * size + idx)[active]
    return np.bincount(flat, minlength=n * size).reshape(n, size).astype(np.float64)


def physical_columns(t: SpaceTables) -> dict[str, int]:
    """The column of each named physical feature (`physical`); resolution one-hots follow."""
    names = ["layers", "expand", "project", *(f"dw{k}" for k in t.kernels), "se", "volume"]
    names.append("se_layers")
    return {name: i for i, name in enumerate(names)}


def n_physical(t: SpaceTables) -> int:
    """The number of physical feature columns: the named ones, then a one-hot per resolution."""
    return len(physical_columns(t)) + len(t.space.resolutions)


def macs_weights(t: SpaceTables) -> np.ndarray:
    """Weights w with `physical(t, enc) @ w` = each subnet's MACs in millions, stem and head
    included (as `SearchSpace.cost`): the body's MAC columns, and per resolution the stem's
    and head's (on the resolution one-hots)."""
    sp, cols = t.space, physical_columns(t)
    w = np.zeros(n_physical(t))
    for name in ("expand", "project", "se", *(f"dw{k}" for k in t.kernels)):
        w[cols[name]] = 1.0
    stem_h = np.asarray([-(-r // sp.stem_stride) for r in sp.resolutions])
    h_last = t.h_out[:, (sp.n_stages - 1) * sp.max_depth]
    extra = stem_h**2 * 9 * sp.in_channels * sp.stem_width
    extra = extra + h_last**2 * sp.stages[-1].width * sp.head_width
    w[len(cols) :] = (extra + sp.head_width * sp.num_classes) / 1e6
    return w


def macs(t: SpaceTables, enc: Encoded) -> np.ndarray:
    """Total MACs (millions) of each subnet, stem and head included (as `SearchSpace.cost`)."""
    return physical(t, enc) @ macs_weights(t)


def block_key(layer: LayerShape) -> str:
    """Identity of one layer's shape (the lookup-table key)."""
    se = "se" if layer.se else "nose"
    return (
        f"block:h{layer.h_in}:c{layer.c_in}-{layer.c_out}:m{layer.mid}:k{layer.kernel}"
        f":s{layer.stride}:{se}:{layer.act}"
    )


def table_layers(t: SpaceTables) -> list[LayerShape]:
    """The layer shape behind every table column, in column order (for block measurements)."""
    sp = t.space
    first_slot = {2 * s + j: s * sp.max_depth + j for s in range(sp.n_stages) for j in (0, 1)}
    out = []
    for kind in range(t.n_kinds):
        slot = first_slot[kind]
        spec = sp.stages[slot // sp.max_depth]
        for ri in range(len(sp.resolutions)):
            for k in t.kernels:
                for e in t.expands:
                    out.append(
                        LayerShape(
                            slot // sp.max_depth,
                            slot % sp.max_depth,
                            int(t.h_in[ri, slot]),
                            int(t.h_out[ri, slot]),
                            int(t.c_in[slot]),
                            int(t.c_out[slot]),
                            int(t.c_in[slot] * e),
                            int(k),
                            int(t.stride[slot]),
                            spec.se,
                            spec.act,
                        )
                    )
    return out
