"""An ensemble of K surrogates of one architecture as one vmapped model over stacked parameters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

MEMBERS_DIR = "members"  # training.ensemble.train_members writes RUN/members/0 ... K-1


def member_dirs(run_dir: str | Path) -> list[Path]:
    """The member run directories ``run_dir/members/<k>`` in order (empty without members)."""
    root = Path(run_dir) / MEMBERS_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


class Ensemble(eqx.Module):
    """K surrogates (:class:`~pdesurrogate.FieldOperator`, :class:`~pdesurrogate.TraceOperator` or
    :class:`~pdesurrogate.Surrogate`) with one network architecture, run as one ``vmap`` over
    their stacked network states.

    Args:
        members: K >= 2 operators of one class and one network configuration.

    Attributes:
        template: the first member (its static fields and non-network leaves serve all).
        states: the members' network states stacked on a leading axis of length K.
    """

    template: Any
    states: Any

    def __init__(self, members: Sequence[Any]):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs >= 2 members, got {len(members)}")
        first = members[0]
        for i, m in enumerate(members[1:], 1):
            if type(m) is not type(first) or m.graphdef != first.graphdef:
                raise ValueError(f"ensemble member {i} differs from member 0 in class or network architecture")
        self.template = first
        self.states = jax.tree.map(lambda *x: jnp.stack(x), *[m.model_state for m in members])

    @classmethod
    def load(cls, run_dir: str | Path, *, checkpoint: str = "best") -> Ensemble:
        """The members ``run_dir/members/<k>`` of an ensemble run (``training.ensemble.train_members``)."""
        from pdesurrogate.surrogate import load

        dirs = member_dirs(run_dir)
        if len(dirs) < 2:
            raise ValueError(f"{run_dir} holds {len(dirs)} ensemble members under {MEMBERS_DIR}/; need >= 2 "
                             f"(train them with training.ensemble.train_members)")
        return cls([load(d, checkpoint=checkpoint) for d in dirs])

    @property
    def size(self) -> int:
        return int(jax.tree.leaves(self.states)[0].shape[0])

    def member(self, k: int | jax.Array) -> Any:
        """Member ``k`` as an operator of the template's class."""
        return eqx.tree_at(lambda o: o.model_state, self.template, jax.tree.map(lambda s: s[k], self.states))

    def apply(self, fn: Callable[..., jax.Array], *args: Any) -> jax.Array:
        """``fn(member, *args)`` for every member, stacked: ``(K, ...)`` (one vmapped evaluation)."""
        return jax.vmap(lambda st: fn(eqx.tree_at(lambda o: o.model_state, self.template, st), *args))(self.states)

    def __call__(self, *args: Any) -> jax.Array:
        """The members' mean output of ``member(*args)``."""
        return jnp.mean(self.apply(lambda m, *a: m(*a), *args), axis=0)
