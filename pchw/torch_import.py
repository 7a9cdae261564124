"""Import a PyTorch ``nn.Sequential`` of ``Linear`` layers and supported activations (a chain
:class:`~pchw.network.Network`), or with ``Conv2d``, ``AvgPool2d``, ``MaxPool2d`` and
``Flatten`` too (a :class:`~pchw.graph.Graph`).

PyTorch is optional: it is imported only when this is called.
"""

import numpy as np

from .errors import PchwError
from .network import Activation, Network

__all__ = ["from_torch"]

_SPATIAL = ("Conv2d", "AvgPool2d", "MaxPool2d", "Flatten")


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
                    "Linear, Conv2d, AvgPool2d, MaxPool2d, Flatten, Identity, ReLU, LeakyReLU "
                    "(power-of-two slope), Hardtanh, Tanh or Sigmoid")


def from_torch(sequential, input_shape=None, **kwargs):
    """A :class:`~pchw.network.Network` from an ``nn.Sequential``: ``[act] Linear (act Linear)*``.

    Between two ``Linear`` layers at most one activation (none means identity); the model must
    end with a ``Linear`` (the PC output layer has no activation). ``kwargs`` go to
    :class:`Network` (``pc=``, ``formats=``, ...).

    A Sequential with ``Conv2d`` (groups and dilation 1, one stride, zero padding the same on
    every side), ``AvgPool2d``, ``MaxPool2d`` (no padding) or ``Flatten`` becomes a
    :class:`~pchw.graph.Graph` of a chain of nodes; ``input_shape`` ``(C, H, W)`` is then
    needed (a Sequential does not say it), and ``kwargs`` go to :class:`Graph`.
    """
    import torch.nn as nn
    if not isinstance(sequential, nn.Sequential):
        raise PchwError(f"expected torch.nn.Sequential, got {type(sequential).__name__}")
    if any(type(m).__name__ in _SPATIAL for m in sequential):
        return _graph_from_torch(sequential, input_shape, kwargs)
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


def _pair(value, index, what):
    value = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(set(value)) != 1:
        raise PchwError(f"torch module [{index}]: {what} {value}: pchw takes one value for "
                        "both axes")
    return int(value[0])


def _graph_from_torch(sequential, input_shape, kwargs):
    import torch.nn as nn

    from .graph import Graph
    if input_shape is None or len(tuple(input_shape)) != 3:
        raise PchwError("a Sequential with Conv2d or pooling needs input_shape=(C, H, W)")
    specs = [{"name": "input", "op": "input", "shape": [int(s) for s in input_shape]}]
    params, pending = {}, None

    def node(spec, index):
        spec["name"] = f"{spec['op']}{index}"
        spec["inputs"] = [specs[-1]["name"]]
        specs.append(spec)
        return spec["name"]

    def weights(module):
        return module.weight.detach().cpu().double().numpy(), (
            module.bias.detach().cpu().double().numpy() if module.bias is not None
            else np.zeros(module.weight.shape[0]))

    for index, module in enumerate(sequential):
        kind = type(module).__name__
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten)):
            if pending is not None:
                specs[-1]["activation"] = pending.to_toml()
                pending = None
        if isinstance(module, nn.Linear):
            name = node({"op": "dense", "units": module.out_features}, index)
            params[f"W{name}"], params[f"b{name}"] = weights(module)
        elif isinstance(module, nn.Conv2d):
            if module.groups != 1 or _pair(module.dilation, index, "dilation") != 1:
                raise PchwError(f"torch module [{index}]: Conv2d with groups or dilation is not "
                                "supported")
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise PchwError(f"torch module [{index}]: Conv2d padding must be numbers of "
                                "zeros")
            name = node({"op": "conv2d", "channels": module.out_channels,
                         "kernel": list(module.kernel_size),
                         "stride": _pair(module.stride, index, "stride"),
                         "padding": _pair(module.padding, index, "padding")}, index)
            params[f"W{name}"], params[f"b{name}"] = weights(module)
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            if _pair(module.padding, index, "padding") or module.ceil_mode:
                raise PchwError(f"torch module [{index}]: {kind} with padding or ceil_mode is "
                                "not supported")
            if isinstance(module, nn.MaxPool2d) and (
                    _pair(module.dilation, index, "dilation") != 1 or module.return_indices):
                raise PchwError(f"torch module [{index}]: MaxPool2d with dilation or indices is "
                                "not supported")
            if isinstance(module, nn.AvgPool2d) and module.divisor_override:
                raise PchwError(f"torch module [{index}]: AvgPool2d divisor_override is not "
                                "supported")
            kernel = module.kernel_size
            kernel = list(kernel) if isinstance(kernel, (tuple, list)) else [kernel, kernel]
            stride = module.stride if module.stride is not None else kernel
            node({"op": "avgpool" if isinstance(module, nn.AvgPool2d) else "maxpool",
                  "kernel": kernel, "stride": _pair(stride, index, "stride")}, index)
        elif isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise PchwError(f"torch module [{index}]: Flatten must keep the batch "
                                "(start_dim 1, end_dim -1)")
            node({"op": "flatten"}, index)
        else:
            if pending is not None:
                raise PchwError(f"torch module [{index}]: two activations in a row")
            pending = _activation(module, index)
    if pending is not None:
        raise PchwError("the Sequential ends with an activation; the PC output layer is linear "
                        "(drop the last activation)")
    return Graph(specs, params, source="torch", **kwargs)
