"""Yee update equations for 2D TM (Ez; Hx, Hy), 2D TE (Hz; Ex, Ey) and 3D (all six components).

One implementation covers the three modes: a field is a stack of its components, shape
``(n_components, *grid.shape)``, and the curl is assembled from the terms of
``curl F = (dy Fz - dz Fy, dz Fx - dx Fz, dx Fy - dy Fx)`` that exist in the mode.

Staggering (in cells, grid index ``i`` at ``x = i * dx``): E component ``c`` sits half a cell
along its own axis, H component ``c`` half a cell along the other axes (2D TM: Ez at nodes,
Hx at ``(i, j + 1/2)``, Hy at ``(i + 1/2, j)``; TE: Hz at ``(i + 1/2, j + 1/2)``).
``curl E`` uses forward differences and ``curl H`` backward differences, so the discrete
``curl H`` is the transpose of ``curl E`` (skew-symmetric system: energy-conserving and exactly
time-reversible without losses).

Units are normalised: ``H~ = eta0 H``; with ``S = c0 dt / dx`` the updates are

    H~ <- H~ - S curl E,        E <- ca E + cb curl H~,
    ca = (1 - s) / (1 + s),  cb = S / (eps (1 + s)),  s = sigma dt / (2 eps0 eps).

Non-periodic axes end in PEC walls at indices 0 and n - 1 (tangential E held at zero there);
periodic axes wrap around.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from solvers.maxwell import cpml
from solvers.maxwell.medium import C0, EPS0
from solvers.validate import check_choice

AXIS_NAMES = "xyz"
# (output component, derivative axis, input component, sign) of curl F.
_CURL = ((0, 1, 2, 1.0), (0, 2, 1, -1.0), (1, 2, 0, 1.0), (1, 0, 2, -1.0), (2, 0, 1, 1.0), (2, 1, 0, -1.0))


class Mode(NamedTuple):
    """Which components a simulation carries: ``e`` and ``h`` list Cartesian components (0=x, 1=y, 2=z)."""

    name: str
    ndim: int
    e: tuple[int, ...]
    h: tuple[int, ...]

    def component_names(self) -> dict[str, tuple[str, int]]:
        """``{"Ez": ("e", 0), "Hx": ("h", 0), ...}``: name to (field, index in the stack)."""
        out = {f"E{AXIS_NAMES[c]}": ("e", k) for k, c in enumerate(self.e)}
        out.update({f"H{AXIS_NAMES[c]}": ("h", k) for k, c in enumerate(self.h)})
        return out

    def primary(self) -> tuple[str, ...]:
        """Components returned as ``field`` by default: TM Ez, TE Hz, 3D (Ex, Ey, Ez)."""
        return {"TM": ("Ez",), "TE": ("Hz",), "3D": ("Ex", "Ey", "Ez")}[self.name]


def make_mode(ndim: int, polarization: str) -> Mode:
    """The mode for a grid of ``ndim`` dimensions; ``polarization`` ("TM" or "TE") applies in 2D.

    3D grids carry every component: only the default ``"TM"`` is accepted there, so that a
    requested ``"TE"`` is not silently ignored.
    """
    check_choice("polarization", polarization, ("TM", "TE"))
    if ndim == 3:
        if polarization != "TM":
            raise ValueError(f"polarization applies to 2D grids only (3D runs the full Yee scheme); "
                             f"leave it at 'TM' for a 3D grid, got {polarization!r}")
        return Mode("3D", 3, (0, 1, 2), (0, 1, 2))
    if polarization == "TM":
        return Mode("TM", 2, (2,), (0, 1))
    return Mode("TE", 2, (0, 1), (2,))


def offset(kind: str, component: int, ndim: int) -> np.ndarray:
    """Position of a Yee component relative to its grid node, in cells, shape ``(ndim,)``."""
    if kind == "e":
        return np.array([0.5 if a == component else 0.0 for a in range(ndim)])
    return np.array([0.0 if a == component else 0.5 for a in range(ndim)])


def curl_terms(mode: Mode, out: str) -> tuple[tuple[int, int, int, float], ...]:
    """Terms ``(out index, axis, in index, sign)`` of the curl producing field ``out`` ("h": curl E; "e": curl H)."""
    outs, ins = (mode.h, mode.e) if out == "h" else (mode.e, mode.h)
    return tuple((outs.index(c), a, ins.index(b), s) for c, a, b, s in _CURL
                 if a < mode.ndim and c in outs and b in ins)


def diff(f: jax.Array, axis: int, forward: bool, periodic: bool) -> jax.Array:
    """Undivided difference along ``axis``: forward ``f[i+1] - f[i]`` or backward ``f[i] - f[i-1]``.

    Values beyond a non-periodic edge are zero (PEC wall).
    """
    n = f.shape[axis]
    if periodic:
        return jnp.roll(f, -1, axis) - f if forward else f - jnp.roll(f, 1, axis)
    zero = jnp.zeros_like(lax.slice_in_dim(f, 0, 1, axis=axis))
    if forward:
        return jnp.concatenate([lax.slice_in_dim(f, 1, n, axis=axis), zero], axis) - f
    return f - jnp.concatenate([zero, lax.slice_in_dim(f, 0, n - 1, axis=axis)], axis)


def slab_diff(f: jax.Array, axis: int, forward: bool, size: int) -> jax.Array:
    """``diff(f, axis, forward, periodic=False)`` on the first and last ``size`` indices only.

    Built from slices of ``f``, not of the full difference, so that the full difference keeps a
    single consumer and XLA fuses it into the field update instead of materialising it.

    Args:
        f: field component, shape ``(*shape)``.

    Returns:
        the differences on the two slabs, ``shape`` with ``axis`` of length ``2 * size``.
    """
    n = f.shape[axis]
    # A forward difference reads one cell past the lower slab, a backward one one cell before the
    # upper slab; at the walls ``diff`` pads with zeros as it does for the full array.
    lo = diff(lax.slice_in_dim(f, 0, size + int(forward), axis=axis), axis, forward, periodic=False)
    hi = diff(lax.slice_in_dim(f, n - size - int(not forward), n, axis=axis), axis, forward, periodic=False)
    return jnp.concatenate([lax.slice_in_dim(lo, 0, size, axis=axis),
                            lax.slice_in_dim(hi, hi.shape[axis] - size, hi.shape[axis], axis=axis)], axis)


def pec_mask(shape: tuple[int, ...], component: int, periodic: tuple[bool, ...]) -> np.ndarray:
    """1 where E component ``component`` is free, 0 where it is tangential to a PEC wall or outside the box."""
    mask = np.ones(shape)
    for a, n in enumerate(shape):
        if periodic[a]:
            continue
        idx = [slice(None)] * len(shape)
        idx[a] = n - 1
        mask[tuple(idx)] = 0.0
        if a != component:
            idx[a] = 0
            mask[tuple(idx)] = 0.0
    return mask


class Fields(eqx.Module):
    """Simulation state: E and H~ stacks plus CPML memory (one array per PML curl term).

    Attributes:
        e: E components, shape ``(n_e, *grid.shape)``, V/m.
        h: ``eta0 * H`` components, shape ``(n_h, *grid.shape)``, V/m.
        psi_e: CPML memory of the curl-H terms (tuple; empty without PML).
        psi_h: CPML memory of the curl-E terms.
    """

    e: jax.Array
    h: jax.Array
    psi_e: tuple[jax.Array, ...] = ()
    psi_h: tuple[jax.Array, ...] = ()


class YeeOperator(eqx.Module):
    """Update coefficients of one Yee discretisation.

    Attributes:
        ca, cb: E-update coefficients, shape ``(n_e, *grid.shape)`` (zero on PEC walls).
        pml_e, pml_h: per curl term ``(b, c)`` CPML coefficients broadcastable against a slab, or ``None``.
        mode, periodic, courant, pml_size, shape: static description.
    """

    ca: jax.Array
    cb: jax.Array
    pml_e: tuple
    pml_h: tuple
    mode: Mode = eqx.field(static=True)
    periodic: tuple[bool, ...] = eqx.field(static=True)
    courant: float = eqx.field(static=True)
    pml_size: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: tuple[int, ...], mode: Mode, eps_components: jax.Array, sigma_components: jax.Array,
                 dt: float, spacing: float, pml_size: int, periodic: tuple[bool, ...], dtype):
        """Build coefficients.

        Args:
            eps_components: relative permittivity at the E components, shape ``(n_e, *shape)``.
            sigma_components: conductivity (S/m) at the E components, same shape or broadcastable.
            dt: time step in s; spacing: cell size in m.
        """
        self.shape = tuple(shape)
        self.mode = mode
        self.periodic = tuple(periodic)
        self.courant = float(C0 * dt / spacing)
        self.pml_size = int(pml_size)
        mask = np.stack([pec_mask(self.shape, c, self.periodic) for c in mode.e]).astype(dtype)
        eps = jnp.asarray(eps_components, dtype)
        loss = jnp.asarray(sigma_components, dtype) * (dt / (2.0 * EPS0)) / eps
        self.ca = mask * (1.0 - loss) / (1.0 + loss)
        self.cb = mask * (self.courant / eps) / (1.0 + loss)
        self.pml_e = self._pml("e", dtype)
        self.pml_h = self._pml("h", dtype)

    def _pml(self, out: str, dtype) -> tuple:
        coefs = []
        for o, a, _, _ in curl_terms(self.mode, out):
            if self.pml_size == 0 or self.periodic[a]:
                coefs.append(None)
                continue
            comp = (self.mode.e if out == "e" else self.mode.h)[o]
            off = offset(out, comp, self.mode.ndim)[a]
            b, c = cpml.coefficients(self.shape[a], self.pml_size, off, self.courant)
            bshape = [1] * self.mode.ndim
            bshape[a] = 2 * self.pml_size
            coefs.append((jnp.asarray(b.reshape(bshape), dtype), jnp.asarray(c.reshape(bshape), dtype)))
        return tuple(coefs)

    def zero_fields(self, dtype) -> Fields:
        """All-zero fields with CPML memory of the right shapes."""
        def psi(out):
            arrs = []
            for (_, a, _, _), coef in zip(curl_terms(self.mode, out), self.pml_e if out == "e" else self.pml_h):
                if coef is not None:
                    s = list(self.shape)
                    s[a] = 2 * self.pml_size
                    arrs.append(jnp.zeros(s, dtype))
            return tuple(arrs)

        return Fields(jnp.zeros((len(self.mode.e), *self.shape), dtype),
                      jnp.zeros((len(self.mode.h), *self.shape), dtype), psi("e"), psi("h"))

    def curl(self, f: jax.Array, out: str, psi: tuple, update_psi: bool = True,
             pml: bool = True) -> tuple[jax.Array, tuple]:
        """Undivided curl of ``f`` (E for ``out="h"``, H~ for ``out="e"``) with CPML corrections.

        Returns:
            the curl stacked as the ``out`` field, shape ``(n_out, *shape)``, and the CPML memory
            (updated when ``update_psi``; otherwise the current memory is applied unchanged).
            ``pml=False`` leaves the CPML out (exact outside the layers) and returns ``psi`` as is.
        """
        terms = curl_terms(self.mode, out)
        coefs = self.pml_e if out == "e" else self.pml_h
        if not pml:
            coefs = (None,) * len(terms)
        n_out = len(self.mode.e if out == "e" else self.mode.h)
        acc = [None] * n_out
        new_psi, k = [], 0
        for (o, a, i, s), coef in zip(terms, coefs):
            d = diff(f[i], a, forward=(out == "h"), periodic=self.periodic[a])
            if coef is not None:
                ps = psi[k]
                if update_psi:
                    b, c = coef
                    ps = b * ps + c * slab_diff(f[i], a, forward=(out == "h"), size=self.pml_size)
                # d + psi on the slabs as one elementwise expression, fused into the update.
                d = d + cpml.embed(ps, a, self.shape[a])
                new_psi.append(ps)
                k += 1
            acc[o] = s * d if acc[o] is None else acc[o] + s * d
        return jnp.stack(acc), (tuple(new_psi) if pml else psi)

    def update_h(self, fields: Fields, scale: float = 1.0, update_psi: bool = True) -> Fields:
        """``H~ <- H~ - scale * S * curl E`` (``scale=0.5``: a half step, CPML memory frozen)."""
        c, psi = self.curl(fields.e, "h", fields.psi_h, update_psi)
        return Fields(fields.e, fields.h - (scale * self.courant) * c, fields.psi_e, psi)

    def update_e(self, fields: Fields) -> Fields:
        """``E <- ca E + cb curl H~``."""
        c, psi = self.curl(fields.h, "e", fields.psi_e)
        return Fields(self.ca * fields.e + self.cb * c, fields.h, psi, fields.psi_h)
