"""Neural surrogate models (flax nnx): FNO, factorised F-FNO, U-Net, and a trace head (TraceNet).

Convention: every model maps **one sample, channels first**, ``(C_in, *spatial)`` to
``(C_out, *spatial)`` (2D or 3D); batch with ``jax.vmap`` or :func:`apply_batched`. Complex
fields enter and leave as real/imaginary channel pairs (:func:`complex_to_channels`,
:func:`channels_to_complex`). Inputs are normalised inside the model with stored per-channel
statistics, so a restored model takes physical units.
"""

from .ffno import FFNO
from .fno import FNO
from .layers import (ChannelNorm, Conv, FactorizedSpectralConv, FieldIO, GroupNorm, PointwiseLinear, SpectralConv, Stat,
                     channels_to_complex, complex_to_channels, coordinate_channels, num_params)
from .registry import (FORMAT_VERSION, MODEL_KINDS, apply_batched, build_model, load_model, save_model,
                       split_model)
from .tasks import condition_channels, predict_field, predict_step
from .traces import TraceNet, band_limit, dct_bandwidth_coefficients, distance_channels
from .unet import UNet

__all__ = ["FNO", "FFNO", "UNet", "SpectralConv", "FactorizedSpectralConv", "PointwiseLinear", "ChannelNorm",
           "FieldIO", "Conv", "GroupNorm", "Stat", "channels_to_complex", "complex_to_channels", "coordinate_channels", "num_params",
           "FORMAT_VERSION", "MODEL_KINDS", "apply_batched", "build_model", "load_model", "save_model",
           "split_model", "condition_channels", "predict_field", "predict_step", "TraceNet", "band_limit",
           "dct_bandwidth_coefficients", "distance_channels"]
