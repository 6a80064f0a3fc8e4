"""Channel re-sorting by importance (Once-for-All's `re_organize_middle_weights`).

A subnet with a smaller expand ratio uses the first channels of each expanded layer, so the
most important channels should come first. Importance is the L1 norm of a channel's outgoing
weights (the project layer's rows; for the squeeze-excite bottleneck, the rows of its second
layer). The permutation keeps the largest subnet's function unchanged and is applied alike to
the parameters, the BatchNorm statistics and every optimiser moment shaped like the parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def block_permutations(block: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """(expanded-channel order, SE-channel order), most important first."""
    perm = np.argsort(-np.abs(np.asarray(block["project"])).sum(axis=1), kind="stable")
    perm_se = None
    if "se_w2" in block:
        perm_se = np.argsort(-np.abs(np.asarray(block["se_w2"])).sum(axis=1), kind="stable")
    return perm, perm_se


def permute_block(p: dict, perm: np.ndarray, perm_se: np.ndarray | None) -> dict:
    """Apply the orders to a parameter-shaped block dict (params or an optimiser moment)."""
    out = dict(p)
    for name in ("bn1_scale", "bn1_bias", "bn2_scale", "bn2_bias"):
        out[name] = p[name][perm]
    out["expand"] = p["expand"][:, perm]
    out["dw"] = p["dw"][:, :, perm]
    out["project"] = p["project"][perm, :]
    if perm_se is not None:
        out["se_w1"] = p["se_w1"][perm][:, perm_se]
        out["se_b1"] = p["se_b1"][perm_se]
        out["se_w2"] = p["se_w2"][perm_se][:, perm]
        out["se_b2"] = p["se_b2"][perm]
    return out


def permute_stats(s: dict, perm: np.ndarray) -> dict:
    out = dict(s)
    for name in ("bn1_mean", "bn1_var", "bn2_mean", "bn2_var"):
        out[name] = s[name][perm]
    return out


def _blocks(tree: dict) -> list[str]:
    return [k for k in tree if k.startswith("blocks_")]


def sort_channels(params: dict, batch_stats: dict, opt_state: Any) -> tuple[dict, dict, Any]:
    """Re-sort every elastic block's channels; returns new (params, batch_stats, opt_state)."""
    perms = {name: block_permutations(params[name]) for name in _blocks(params)}

    def permute_params(tree: dict) -> dict:
        out = dict(tree)
        for name, (perm, perm_se) in perms.items():
            out[name] = permute_block(tree[name], perm, perm_se)
        return out

    structure = jax.tree.structure(params)
    new_opt = jax.tree.map(
        lambda node: permute_params(node) if _same_structure(node, structure) else node,
        opt_state,
        is_leaf=lambda node: _same_structure(node, structure),
    )
    new_stats = dict(batch_stats)
    for name, (perm, _) in perms.items():
        new_stats[name] = permute_stats(batch_stats[name], perm)
    to_jnp = lambda t: jax.tree.map(jnp.asarray, t)  # noqa: E731
    return to_jnp(permute_params(params)), to_jnp(new_stats), to_jnp(new_opt)


def _same_structure(node: Any, structure) -> bool:
    try:
        return isinstance(node, dict) and jax.tree.structure(node) == structure
    except Exception:
        return False
