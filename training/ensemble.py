"""Deep ensembles: K members of one training run with different seeds.

``train_members(toml, data_dir, out, k)`` trains member ``i`` with ``model.seed`` and
``train.seed`` set to ``seed + i`` into ``out/members/i`` (member 0 repeats the single run of the
config), each a complete run directory that resumes on its own. :class:`pdesurrogate.trust.Ensemble`
loads them as one vmapped model; their disagreement is a label-free error signal. The config option
is ``[train] members = K`` (read and removed here, before the table reaches the trainer).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pdesurrogate.trust.ensemble import MEMBERS_DIR


def member_configs(toml: dict[str, Any], k: int | None = None, seed: int | None = None) -> list[dict[str, Any]]:
    """The ``k`` member configs of an experiment TOML dict (default ``k``: ``train.members``, else 1).

    Args:
        toml: the experiment dict with ``[model]`` and ``[train]``.
        k: members (>= 1).
        seed: the first member's seed (default ``train.seed``, else 0).
    """
    for name in ("model", "train"):
        if not isinstance(toml.get(name), dict):
            raise ValueError(f"the config has no [{name}] section")
    base = copy.deepcopy(toml)
    members = base["train"].pop("members", 1)
    k = members if k is None else k
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 64:
        raise ValueError(f"train.members must be an integer in [1, 64], got {k!r}")
    first = int(base["train"].get("seed", 0) if seed is None else seed)
    out = []
    for i in range(k):
        member = copy.deepcopy(base)
        member["train"]["seed"] = first + i
        member["model"]["seed"] = first + i
        out.append(member)
    return out


def train_members(toml: dict[str, Any], data_dir: str | Path, out: str | Path, k: int | None = None, *,
                  seed: int | None = None, resume: bool = True, steps: int | None = None,
                  progress: bool = False) -> list[Path]:
    """Train (or resume) ``k`` members into ``out/members/0 ... k-1``; returns their run directories.

    Each member is one call of the training entry point (:func:`training.run.train_run`)
    with its own seeds; see :func:`member_configs` for ``k`` and ``seed``.
    """
    from training.run import train_run

    dirs = []
    for i, member in enumerate(member_configs(toml, k, seed)):
        run_dir = Path(out) / MEMBERS_DIR / str(i)
        train_run(member, data_dir, run_dir, resume=resume, steps=steps, progress=progress)
        dirs.append(run_dir)
    return dirs
