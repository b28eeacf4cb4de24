"""One reference-solver run from a TOML config (``pdesurrogate simulate {acoustic,maxwell}``).

- :func:`simulate_acoustic` (:mod:`.acoustic`): a ring-array ultrasound shot in a phantom,
  homogeneous or file medium; writes ``result.npz``, ``config.toml`` and ``simulation.png``.
- :func:`simulate_maxwell` (:mod:`.maxwell`): a Maxwell FDTD run to steady state (plane wave,
  Gaussian beam or dipole); writes ``fields.npz``, ``config.toml`` and ``field.png``.

``config.toml`` is the complete config as used, defaults filled in.
"""

from training.simulation.acoustic import simulate_acoustic
from training.simulation.maxwell import simulate_maxwell

SIMULATIONS = {"acoustic": simulate_acoustic, "maxwell": simulate_maxwell}

__all__ = ["SIMULATIONS", "simulate_acoustic", "simulate_maxwell"]
