"""A subnet as a standalone Flax model with static shapes and its own sliced weights.

The supernet runs every subnet at its largest shape with masks; for evaluation, latency
measurement and TFLite export a subnet is rebuilt as a plain network of exactly its own shape
(`StandaloneNet`) and its weights are cut out of the supernet's (`extract_variables`): the first
`mid` expanded channels, the first `se_width(mid)` squeeze-excite channels and the centre k x k
of the largest depthwise kernel. Its depthwise convolutions are real grouped convolutions, so
TFLite converts them to DEPTHWISE_CONV_2D. The model is evaluation only: BatchNorm uses the
running statistics it is given (recalibrate them for the subnet first).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hwnas.supernet.layers import BN_EPS, activation, center_kernel, hsigmoid, hswish
from hwnas.supernet.space import LayerShape, SearchSpace, Subnet


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


class StandaloneBlock(nn.Module):
    """One inverted-residual layer at its static shape: expand, depthwise, SE, project."""

    layer: LayerShape

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ly, act = self.layer, activation(self.layer.act)
        h = nn.Conv(ly.mid, (1, 1), use_bias=False, name="expand")(x)
        h = act(_bn("bn1")(h))
        h = nn.Conv(
            ly.mid,
            (ly.kernel, ly.kernel),
            strides=ly.stride,
            padding="SAME",
            feature_group_count=ly.mid,
            use_bias=False,
            name="dw",
        )(h)
        h = act(_bn("bn2")(h))
        if ly.se:
            s = jnp.mean(h, axis=(1, 2))  # (B, mid): rank 2 before any Dense (TFLite)
            s = jax.nn.relu(nn.Dense(ly.se_mid, name="se_fc1")(s))
            s = hsigmoid(nn.Dense(ly.mid, name="se_fc2")(s))
            h = h * s[:, None, None, :]
        y = _bn("bn3")(nn.Conv(ly.c_out, (1, 1), use_bias=False, name="project")(h))
        return y + x if ly.residual else y


class StandaloneNet(nn.Module):
    """`subnet` of `space` as a static network; `__call__(x)` takes (B, R, R, C) at the
    subnet's resolution and returns logits. Evaluation only."""

    space: SearchSpace
    subnet: Subnet

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        sp = self.space
        x = nn.Conv(
            sp.stem_width,
            (3, 3),
            strides=sp.stem_stride,
            padding="SAME",
            use_bias=False,
            name="stem",
        )(x)
        x = hswish(_bn("stem_bn")(x))
        slots = [i for _, _, i in self.subnet.active_slots()]
        for slot, layer in zip(slots, sp.layers(self.subnet), strict=True):
            x = StandaloneBlock(layer, name=f"blocks_{slot}")(x)
        x = nn.Conv(sp.head_width, (1, 1), use_bias=False, name="head")(x)
        x = hswish(_bn("head_bn")(x))
        return nn.Dense(sp.num_classes, name="classifier")(jnp.mean(x, axis=(1, 2)))


def extract_variables(space: SearchSpace, subnet: Subnet, variables: dict) -> dict:
    """Slice the supernet's `{"params", "batch_stats"}` into `StandaloneNet(space, subnet)`'s
    variables (host numpy arrays). `batch_stats` are used as given: recalibrate them for
    `subnet` first."""
    space.validate(subnet)
    # One transfer to the host, then numpy slices (eager slices of device arrays would each
    # dispatch, and compile, a separate XLA op).
    p, s = jax.device_get((variables["params"], variables["batch_stats"]))

    def bn(params: dict, stats: dict, prefix: str, n: int):
        return (
            {"scale": params[f"{prefix}_scale"][:n], "bias": params[f"{prefix}_bias"][:n]},
            {"mean": stats[f"{prefix}_mean"][:n], "var": stats[f"{prefix}_var"][:n]},
        )

    params = {
        "stem": {"kernel": p["stem"]["kernel"]},
        "stem_bn": {"scale": p["stem_bn"]["scale"], "bias": p["stem_bn"]["bias"]},
        "head": {"kernel": p["head"]["kernel"]},
        "head_bn": {"scale": p["head_bn"]["scale"], "bias": p["head_bn"]["bias"]},
        "classifier": {"kernel": p["classifier"]["kernel"], "bias": p["classifier"]["bias"]},
    }
    stats = {
        "stem_bn": {"mean": s["stem_bn"]["mean"], "var": s["stem_bn"]["var"]},
        "head_bn": {"mean": s["head_bn"]["mean"], "var": s["head_bn"]["var"]},
    }
    slots = [i for _, _, i in subnet.active_slots()]
    for slot, ly in zip(slots, space.layers(subnet), strict=True):
        name = f"blocks_{slot}"
        bp, bs = p[name], s[name]
        m = ly.mid
        dw = center_kernel(bp["dw"][:, :, :m], ly.kernel)
        block = {
            "expand": {"kernel": bp["expand"][None, None, : ly.c_in, :m]},
            "dw": {"kernel": dw[:, :, None, :]},
            "project": {"kernel": bp["project"][None, None, :m, : ly.c_out]},
        }
        block_stats = {}
        for bn_name, n in (("bn1", m), ("bn2", m), ("bn3", ly.c_out)):
            block[bn_name], block_stats[bn_name] = bn(bp, bs, bn_name, n)
        if ly.se:
            e = ly.se_mid
            block["se_fc1"] = {"kernel": bp["se_w1"][:m, :e], "bias": bp["se_b1"][:e]}
            block["se_fc2"] = {"kernel": bp["se_w2"][:e, :m], "bias": bp["se_b2"][:m]}
        params[name], stats[name] = block, block_stats
    return {"params": params, "batch_stats": stats}


def standalone(space: SearchSpace, subnet: Subnet, variables: dict) -> tuple[StandaloneNet, dict]:
    """The standalone model of `subnet` and its variables sliced from the supernet's."""
    return StandaloneNet(space, subnet), extract_variables(space, subnet, variables)


def param_count(variables: dict) -> int:
    """Number of scalars in the `params` collection (BatchNorm statistics excluded)."""
    return sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(variables["params"]))
