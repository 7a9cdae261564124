"""Import a PyTorch ``nn.Sequential`` of ``Linear`` layers and supported activations.

PyTorch is optional: it is imported only when this is called.
"""

import numpy as np

from .errors import PchwError
from .network import Activation, Network

__all__ = ["from_torch"]


def _activation(module, index):
    import torch.nn as nn
    if isinstance(module, nn.Identity):
        return Activation("identity")
    if isinstance(module, nn.ReLU):
        return Activation("relu")
    if isinstance(module, nn.Hardtanh):
        if (module.min_val, module.max_val) != (-1.0, 1.0):
            raise PchwError(f"torch module [{index}]: Hardtanh must clip to [-1, 1], not "
                            f"[{module.min_val}, {module.max_val}]")
        return Activation("hardtanh")
    if isinstance(module, nn.Tanh):
        return Activation("tanh")
    if isinstance(module, nn.Sigmoid):
        return Activation("sigmoid")
    if isinstance(module, nn.LeakyReLU):
        return Activation.parse({"name": "leaky_relu", "slope": module.negative_slope},
                                f"torch module [{index}]")
    raise PchwError(f"torch module [{index}]: {type(module).__name__} is not supported; use "
                    "Linear, Identity, ReLU, LeakyReLU (power-of-two slope), Hardtanh, Tanh or "
                    "Sigmoid")


def from_torch(sequential, **kwargs):
    """A :class:`~pchw.network.Network` from an ``nn.Sequential``: ``[act] Linear (act Linear)*``.

    Between two ``Linear`` layers at most one activation (none means identity); the model must
    end with a ``Linear`` (the PC output layer has no activation). ``kwargs`` go to
    :class:`Network` (``pc=``, ``formats=``, ...).
    """
    import torch.nn as nn
    if not isinstance(sequential, nn.Sequential):
        raise PchwError(f"expected torch.nn.Sequential, got {type(sequential).__name__}")
    layers, activations, weights, biases = [], [], [], []
    pending = None
    for index, module in enumerate(sequential):
        if isinstance(module, nn.Linear):
            if layers and layers[-1] != module.in_features:
                raise PchwError(f"torch module [{index}]: Linear takes {module.in_features} "
                                f"inputs but the layer below has {layers[-1]}")
            if not layers:
                layers.append(module.in_features)
            layers.append(module.out_features)
            activations.append(pending or Activation("identity"))
            pending = None
            weights.append(module.weight.detach().cpu().double().numpy())
            biases.append(module.bias.detach().cpu().double().numpy() if module.bias is not None
                          else np.zeros(module.out_features))
        else:
            if pending is not None:
                raise PchwError(f"torch module [{index}]: two activations in a row")
            pending = _activation(module, index)
    if not weights:
        raise PchwError("the Sequential has no Linear layer")
    if pending is not None:
        raise PchwError("the Sequential ends with an activation; the PC output layer is linear "
                        "(drop the last activation)")
    return Network(layers, activations, weights, biases, source="torch", **kwargs)
