"""The weight-shared supernet (Flax linen).

Every elastic layer allocates its largest shape once and receives the active choice as a call
argument (as FlexiViT's Patchify): no module holds an "active subnet". The choice arrives as
`Arch`, arrays over layer slots, so one compiled step serves every subnet of a resolution:
- elastic kernel: the centre k x k of the largest kernel (a mask on its taps);
- elastic expand ratio: the first `mid` channels of the expanded layer (a mask);
- elastic depth: a skipped layer is a `lax.cond` that runs nothing;
- elastic resolution: the input arrives at the subnet's resolution (a compile per resolution).
Each depthwise layer takes the form `hwnas.supernet.depthwise.choose` gives for its map size and
backend; large-map blocks are rematerialised in the backward pass (`REMAT_MIN_POSITIONS`).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hwnas.supernet.depthwise import depthwise
from hwnas.supernet.layers import (
    BN_MOMENTUM,
    activation,
    batch_norm,
    conv1x1,
    hsigmoid,
    hswish,
    kernel_mask,
    patches,
)
from hwnas.supernet.space import SearchSpace, Subnet, se_width

BN_NAMES = ("bn1", "bn2", "bn3")
# Blocks whose input map has at least this many positions (28x28 and up: 224 px inputs) keep
# only their input for the backward pass and recompute the rest (jax.checkpoint). Their forward
# pass is about a tenth of forward + backward, and at 224 px, batch 64, their activations
# would otherwise take most of the step's memory.
REMAT_MIN_POSITIONS = 28 * 28


# An `Arch` leaf: numpy on the host (built, stacked), a jax array once on a device or traced.
ArchLeaf = jax.Array | np.ndarray


class Arch(NamedTuple):
    """A subnet as arrays over layer slots (leaves may carry a leading batch axis)."""

    kernel: ArchLeaf  # kernel size
    mid: ArchLeaf  # active expanded channels
    se_mid: ArchLeaf  # active squeeze-excite channels
    active: ArchLeaf  # the slot runs (depth)


def arch_arrays(space: SearchSpace, subnet: Subnet) -> Arch:
    """The `Arch` of a subnet (numpy, so it can be stacked or sent to a device)."""
    space.validate(subnet)
    widths = _slot_in_widths(space)
    mid = [w * e for w, e in zip(widths, subnet.expands, strict=True)]
    se_mid = [se_width(m) if m else 0 for m in mid]
    active = [k != 0 for k in subnet.kernels]
    return Arch(
        np.asarray(subnet.kernels, np.int32),
        np.asarray(mid, np.int32),
        np.asarray(se_mid, np.int32),
        np.asarray(active, bool),
    )


def stack_archs(archs: list[Arch]) -> Arch:
    return Arch(*(np.stack(leaves) for leaves in zip(*archs, strict=True)))


def _slot_in_widths(space: SearchSpace) -> list[int]:
    """Input channels of every layer slot (the first layer of a stage takes the previous width)."""
    widths, c_in = [], space.stem_width
    for spec in space.stages:
        widths += [c_in] + [spec.width] * (space.max_depth - 1)
        c_in = spec.width
    return widths


class ElasticBlock(nn.Module):
    """An inverted-residual block (expand, depthwise, optional SE, project) at its largest."""

    c_in: int
    c_out: int
    mid_max: int
    kernels: tuple[int, ...]
    stride: int
    se: bool
    act: str
    skippable: bool

    def setup(self) -> None:
        init = nn.initializers.he_normal()
        dw_init = nn.initializers.he_normal(in_axis=(0, 1), out_axis=2)
        k, m, o = max(self.kernels), self.mid_max, self.c_out
        p = {
            "expand": self.param("expand", init, (self.c_in, m)),
            "dw": self.param("dw", dw_init, (k, k, m)),
            "project": self.param("project", init, (m, o)),
        }
        residual = self.stride == 1 and self.c_in == self.c_out
        for name, n in (("bn1", m), ("bn2", m), ("bn3", o)):
            # BigNAS: a residual block's last BN scale starts at zero, so every block starts as
            # the identity and each depth trains from a working shallower net.
            zero = name == "bn3" and residual
            init_scale = nn.initializers.zeros if zero else nn.initializers.ones
            p[f"{name}_scale"] = self.param(f"{name}_scale", init_scale, (n,))
            p[f"{name}_bias"] = self.param(f"{name}_bias", nn.initializers.zeros, (n,))
        if self.se:
            s = se_width(m)
            p["se_w1"] = self.param("se_w1", init, (m, s))
            p["se_b1"] = self.param("se_b1", nn.initializers.zeros, (s,))
            p["se_w2"] = self.param("se_w2", init, (s, m))
            p["se_b2"] = self.param("se_b2", nn.initializers.zeros, (m,))
        self.p = p
        self.stats = {
            f"{name}_{stat}": self.variable(
                "batch_stats", f"{name}_{stat}", (jnp.zeros if stat == "mean" else jnp.ones), (n,)
            )
            for name, n in (("bn1", m), ("bn2", m), ("bn3", o))
            for stat in ("mean", "var")
        }

    def __call__(self, x: jax.Array, slot: Arch, train: bool) -> jax.Array:
        running = {k: v.value for k, v in self.stats.items()}

        def forward(x, p, slot, running):
            return self._forward(x, p, slot, running, train)

        if x.shape[1] * x.shape[2] >= REMAT_MIN_POSITIONS:
            forward = jax.checkpoint(forward)

        def run(x):
            return forward(x, self.p, slot, running)

        def skip(x):
            return x, running

        if self.skippable:
            y, moments = lax.cond(slot.active, run, skip, x)
        else:
            y, moments = run(x)
        _update_stats(self, self.stats, moments, train)
        return y

    def _forward(self, x, p: dict, slot: Arch, running: dict, train: bool):
        act = activation(self.act)
        mask = (jnp.arange(self.mid_max) < slot.mid).astype(x.dtype)
        moments = {}

        def bn(name, h):
            y, (mean, var) = batch_norm(
                h,
                p[f"{name}_scale"],
                p[f"{name}_bias"],
                running[f"{name}_mean"],
                running[f"{name}_var"],
                train,
            )
            moments[f"{name}_mean"], moments[f"{name}_var"] = mean, var
            return y

        h = act(bn("bn1", conv1x1(x, p["expand"])) * mask)
        k_max = max(self.kernels)
        dw = p["dw"] * kernel_mask(k_max, slot.kernel)[:, :, None]
        h = depthwise(h, dw, self.stride)
        h = act(bn("bn2", h) * mask)
        if self.se:
            h = h * self._excite(h, p, slot)[:, None, None, :]
        y = bn("bn3", conv1x1(h, p["project"]))
        if self.stride == 1 and self.c_in == self.c_out:
            y = y + x
        return y, moments

    def _excite(self, h, p: dict, slot: Arch):
        se_mask = (jnp.arange(p["se_b1"].shape[0]) < slot.se_mid).astype(h.dtype)
        pooled = jnp.mean(h, axis=(1, 2))  # (B, C): rank 2 before any Dense (TFLite)
        s = jax.nn.relu(pooled @ p["se_w1"] + p["se_b1"]) * se_mask
        return hsigmoid(s @ p["se_w2"] + p["se_b2"])


def _update_stats(module: nn.Module, stats: dict, moments: dict, train: bool) -> None:
    """Sow the batch moments (for BN recalibration) and update the running averages."""
    if not train or module.is_initializing():
        return
    for k, moment in moments.items():
        module.sow("moments", k, moment)
        if module.is_mutable_collection("batch_stats"):
            stats[k].value = BN_MOMENTUM * stats[k].value + (1.0 - BN_MOMENTUM) * moment


class BatchNorm(nn.Module):
    """Plain BatchNorm that also sows its batch moments, like the elastic blocks."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        stats = {
            "mean": self.variable("batch_stats", "mean", jnp.zeros, (self.features,)),
            "var": self.variable("batch_stats", "var", jnp.ones, (self.features,)),
        }
        y, (mean, var) = batch_norm(x, scale, bias, stats["mean"].value, stats["var"].value, train)
        _update_stats(self, stats, {"mean": mean, "var": var}, train)
        return y


class Stem(nn.Module):
    """The stem's k x k convolution as a matmul over its input's windows (`patches`): XLA on
    CPU took 250 ms for its weight gradient as a convolution at 224 px, batch 32. Its kernel
    is `nn.Conv`'s (name, shape, initialiser), so the standalone subnet reads it unchanged."""

    features: int
    stride: int
    size: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, c = self.size, x.shape[-1]
        w = self.param("kernel", nn.initializers.lecun_normal(), (k, k, c, self.features))
        return conv1x1(patches(x, k, self.stride), w.reshape(k * k * c, self.features))


class Pointwise(nn.Module):
    """A 1x1 convolution with `nn.Conv`'s kernel (1, 1, c, d), run as `conv1x1` (whose
    backward pass avoids XLA's convolution gradient: 250 ms for the head at 224 px)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (1, 1, x.shape[-1], self.features)
        w = self.param("kernel", nn.initializers.lecun_normal(), shape)
        return conv1x1(x, w[0, 0])


class SuperNet(nn.Module):
    """The whole supernet: stem, elastic stages, head. `__call__(x, arch, train)`."""

    space: SearchSpace

    def setup(self) -> None:
        sp = self.space
        self.stem = Stem(sp.stem_width, sp.stem_stride)
        self.stem_bn = BatchNorm(sp.stem_width)
        blocks, c_in = [], sp.stem_width
        for spec in sp.stages:
            for j in range(sp.max_depth):
                blocks.append(
                    ElasticBlock(
                        c_in=c_in if j == 0 else spec.width,
                        c_out=spec.width,
                        mid_max=(c_in if j == 0 else spec.width) * max(sp.expands),
                        kernels=sp.kernels,
                        stride=spec.stride if j == 0 else 1,
                        se=spec.se,
                        act=spec.act,
                        skippable=j >= min(sp.depths),
                    )
                )
            c_in = spec.width
        self.blocks = blocks
        self.head = Pointwise(sp.head_width)
        self.head_bn = BatchNorm(sp.head_width)
        self.classifier = nn.Dense(sp.num_classes)

    def __call__(self, x: jax.Array, arch: Arch, train: bool = False) -> jax.Array:
        x = hswish(self.stem_bn(self.stem(x), train))
        for i, block in enumerate(self.blocks):
            x = block(x, jax.tree.map(lambda a, i=i: a[i], arch), train)
        x = hswish(self.head_bn(self.head(x), train))
        return self.classifier(jnp.mean(x, axis=(1, 2)))
