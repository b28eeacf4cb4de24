#!/usr/bin/env bash
# Forward-compatibility check: the test suite on the newest JAX on PyPI, outside the lock.
#
# jwave 0.2.1 needs jaxdf 0.3.0, which declares jax < 0.10, so jwave, jaxdf and their two small
# dependencies go in with --no-deps, as on the GPU host. Deprecation warnings are shown, not
# filtered as in pyproject.toml, so that APIs which a later JAX removes show up here first.
#
#   bash experiments/newer_jax_check.sh [JAX_VERSION]   # default: the newest release on PyPI
#   PYTHON=3.12 bash experiments/newer_jax_check.sh      # another interpreter (a version or a path)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
uv venv -q -p "${PYTHON:-3.11}" "$venv"
py="$venv/bin/python"
jax_req="jax[cpu]${1:+==$1}"
uv pip install -q -p "$py" "$jax_req" equinox optax flax orbax-checkpoint tensorstore numpy matplotlib \
  scipy pytest pytest-xdist
uv pip install -q -p "$py" --no-deps "jwave==0.2.1" "jaxdf==0.3.0" plum-dispatch beartype typing_extensions
"$py" -c "import sys, jax, flax, equinox, optax; print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'equinox', equinox.__version__, 'optax', optax.__version__)"
PYTHONPATH=. "$py" -m pytest -q -o filterwarnings= -W "always::DeprecationWarning" -p no:cacheprovider
