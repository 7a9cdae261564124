"""Import an ONNX model as a :class:`~pchw.graph.Graph` (``pchw import model.onnx -o DIR``).

The ``onnx`` package is optional (``pip install 'pchw[onnx]'``): it is imported only here.
Supported ops: Gemm, MatMul (with a following Add of a constant: the bias), Conv, AveragePool,
MaxPool, Flatten, Reshape (to ``[batch, -1]``), Add (of two tensors: a skip connection), and the
activations Relu, LeakyRelu (power-of-two slope), Clip to ``[-1, 1]`` (hardtanh), Tanh and
Sigmoid, which become the activation ``f`` of the node they follow (``phi = f(x)``); Constant
nodes give data. Anything else is refused with a one-line error naming the ONNX node and op.
"""

import re
from pathlib import Path

import numpy as np

from .defaults import default_settings
from .errors import PchwError
from .graph import Graph
from .network import Activation

__all__ = ["from_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Conv", "AveragePool", "MaxPool", "Flatten", "Reshape",
                 "Relu", "LeakyRelu", "Clip", "Tanh", "Sigmoid", "Constant")
_ACTIVATIONS = ("Relu", "LeakyRelu", "Clip", "Tanh", "Sigmoid")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise PchwError("pchw import needs the onnx package: pip install 'pchw[onnx]'") from None
    return onnx


class _Importer:
    def __init__(self, model, source):
        onnx = _onnx()
        self.onnx, self.source = onnx, source
        self.graph = model.graph
        self.consts = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64)
                       for t in self.graph.initializer}
        self.specs, self.params = [], {}
        self.tensor = {}         # ONNX tensor name -> index of the pchw node whose phi it is
        self.pre = {}            # ONNX tensor name -> pchw node whose x (no activation yet) it is
        self.names = set()
        self.uses = {}
        for node in self.graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        for out in self.graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1

    def fail(self, node, message):
        label = node.name or node.output[0]
        raise PchwError(f"{self.source}: ONNX node {label!r} ({node.op_type}): {message}")

    def attrs(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _name(self, node, fallback):
        base = re.sub(r"[^A-Za-z0-9_]", "_", node.name or "").strip("_")[:28]
        if not base or not re.match(r"[A-Za-z_]", base):
            base = fallback
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def add_node(self, node, spec, outputs):
        spec["name"] = self._name(node, spec["op"] + str(len(self.specs)))
        self.specs.append(spec)
        index = len(self.specs) - 1
        for out in outputs:
            self.tensor[out] = index
            self.pre[out] = index
        return spec["name"]

    def source_of(self, node, tensor):
        """The pchw node name whose phi is ONNX ``tensor``."""
        if tensor in self.consts:
            self.fail(node, f"input {tensor!r} is a constant; pchw takes data through the "
                            "graph input only")
        if tensor not in self.tensor:
            self.fail(node, f"input {tensor!r} is produced by no supported node")
        return self.specs[self.tensor[tensor]]["name"]

    def shape_of(self, tensor):
        """The shape (without the batch) of the value of the pchw node behind ``tensor``."""
        from .graph import _LATER
        by_name = {spec["name"]: spec for spec in self.specs}
        target = self.specs[self.tensor[tensor]]["name"]
        keep, todo = set(), [target]
        while todo:                      # the node and its ancestors: one sink, the probe
            name = todo.pop()
            if name not in keep:
                keep.add(name)
                todo.extend(by_name[name].get("inputs", []))
        specs = [dict(spec, activation="identity") if spec["name"] == target else spec
                 for spec in self.specs if spec["name"] in keep]
        graph = Graph(specs + [{"name": "_probe", "op": "flatten", "inputs": [target]}],
                      params=_LATER, source=self.source)
        return graph.nodes[graph.index[target]].shape

    def const(self, node, tensor, what):
        if tensor in self.consts:
            return self.consts[tensor]
        self.fail(node, f"{what} {tensor!r} must be a constant (an initializer)")

    # -- the ops ------------------------------------------------------------------------------

    def run(self):
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise PchwError(f"{self.source}: the ONNX graph has {len(inputs)} data inputs; pchw "
                            "takes one")
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inputs[0].type.tensor_type.shape.dim]
        shape = dims[1:]
        if len(shape) not in (1, 3) or not all(shape):
            raise PchwError(f"{self.source}: input {inputs[0].name!r} has shape {dims}; pchw "
                            "takes (batch, N) or (batch, C, H, W) with known sizes")
        self.specs.append({"name": "input", "op": "input", "shape": [int(s) for s in shape]})
        self.names.add("input")
        self.tensor[inputs[0].name] = self.pre[inputs[0].name] = 0
        for node in self.graph.node:
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                self.fail(node, f"op of the domain {node.domain!r} is not supported")
            if op not in SUPPORTED_OPS:
                self.fail(node, f"not supported; pchw imports {', '.join(SUPPORTED_OPS)}")
            getattr(self, f"op_{op}")(node)
        outputs = list(self.graph.output)
        if len(outputs) != 1:
            raise PchwError(f"{self.source}: the ONNX graph has {len(outputs)} outputs; pchw "
                            "takes one")
        out = outputs[0].name
        if out not in self.tensor:
            raise PchwError(f"{self.source}: the output {out!r} is produced by no supported node")
        last = self.specs[self.tensor[out]]
        if "activation" in last:
            raise PchwError(f"{self.source}: the output {out!r} is an activation's; the PC "
                            "output node is linear (export the model without its last "
                            "activation)")
        if self.tensor[out] != len(self.specs) - 1:
            raise PchwError(f"{self.source}: the output {out!r} is not the last node's value")
        return self.specs, self.params

    def op_Constant(self, node):
        value = self.attrs(node).get("value")
        if value is None:
            self.fail(node, "only a tensor 'value' is supported")
        self.consts[node.output[0]] = self.onnx.numpy_helper.to_array(value).astype(np.float64)

    def _dense(self, node, x, w, b):
        parent = self.source_of(node, x)
        if len(self.shape_of(x)) != 1:
            self.fail(node, f"its input is {'x'.join(map(str, self.shape_of(x)))}: flatten it "
                            "first")
        if w.shape[1] != self.shape_of(x)[0]:
            self.fail(node, f"weights take {w.shape[1]} inputs, the input has "
                            f"{self.shape_of(x)[0]}")
        name = self.add_node(node, {"op": "dense", "inputs": [parent], "units": w.shape[0]},
                             node.output)
        self.params[f"W{name}"], self.params[f"b{name}"] = w, b

    def op_Gemm(self, node):
        a = self.attrs(node)
        if a.get("transA", 0):
            self.fail(node, "transA = 1 is not supported")
        w = self.const(node, node.input[1], "B")
        w = w if a.get("transB", 0) else w.T
        w = w * a.get("alpha", 1.0)
        b = self.const(node, node.input[2], "C") * a.get("beta", 1.0) \
            if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        b = np.broadcast_to(b, (w.shape[0],)).astype(np.float64) if b.size in (1, w.shape[0]) \
            else self.fail(node, f"bias of shape {b.shape}, expected ({w.shape[0]},)")
        self._dense(node, node.input[0], w, np.array(b))

    def op_MatMul(self, node):
        w = self.const(node, node.input[1], "the second operand")
        if w.ndim != 2:
            self.fail(node, f"the second operand has shape {w.shape}; pchw takes a matrix")
        self._dense(node, node.input[0], w.T, np.zeros(w.shape[1]))

    def op_Add(self, node):
        x, y = node.input
        if x in self.consts or y in self.consts:
            tensor, bias = (y, self.consts[x]) if x in self.consts else (x, self.consts[y])
            index = self.pre.get(tensor)
            spec = self.specs[index] if index is not None else None
            if spec is None or spec["op"] not in ("dense", "conv2d") or \
                    self.uses.get(tensor, 0) != 1 or np.any(self.params[f"b{spec['name']}"]):
                self.fail(node, "adds a constant to something other than a bias-free MatMul, "
                                "Gemm or Conv output")
            n = spec["units"]
            bias = np.asarray(bias).reshape(-1)
            if bias.size != n:
                self.fail(node, f"bias of {bias.size} values for {n} outputs")
            self.params[f"b{spec['name']}"] = bias.astype(np.float64)
            for out in node.output:
                self.tensor[out] = self.pre[out] = index
            return
        parents = [self.source_of(node, t) for t in (x, y)]
        self.add_node(node, {"op": "add", "inputs": parents}, node.output)

    def op_Conv(self, node):
        a = self.attrs(node)
        w = self.const(node, node.input[1], "W")
        if a.get("group", 1) != 1:
            self.fail(node, f"group = {a['group']} is not supported (only 1)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, f"dilations {a['dilations']} are not supported (only 1)")
        stride, padding = self._window(node, a, pads_ok=True)
        b = self.const(node, node.input[2], "B") if len(node.input) > 2 and node.input[2] \
            else np.zeros(w.shape[0])
        parent = self.source_of(node, node.input[0])
        name = self.add_node(node, {"op": "conv2d", "inputs": [parent], "channels": w.shape[0],
                                    "kernel": [int(w.shape[2]), int(w.shape[3])],
                                    "stride": stride, "padding": padding}, node.output)
        self.params[f"W{name}"], self.params[f"b{name}"] = w, b

    def _window(self, node, a, pads_ok=False):
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            self.fail(node, "auto_pad is not supported; give pads")
        strides = a.get("strides", [1, 1])
        if len(set(strides)) != 1:
            self.fail(node, f"strides {strides}: pchw takes one stride for both axes")
        pads = a.get("pads", [0, 0, 0, 0])
        if len(set(pads)) != 1 or (pads[0] and not pads_ok):
            self.fail(node, f"pads {pads}: pchw takes " + ("the same padding on every side"
                                                           if pads_ok else "no padding"))
        if a.get("ceil_mode", 0):
            self.fail(node, "ceil_mode = 1 is not supported")
        return int(strides[0]), int(pads[0])

    def _pool(self, node, op):
        a = self.attrs(node)
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "the Indices output is not supported")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, "dilations are not supported")
        stride, _ = self._window(node, a)
        kernel = a["kernel_shape"]
        if kernel[0] * kernel[1] & (kernel[0] * kernel[1] - 1) and op == "avgpool":
            self.fail(node, f"a {kernel[0]}x{kernel[1]} average: pchw's window must hold a power "
                            "of two elements (the 1/n is a shift)")
        parent = self.source_of(node, node.input[0])
        self.add_node(node, {"op": op, "inputs": [parent], "kernel": [int(k) for k in kernel],
                             "stride": stride}, node.output[:1])

    def op_AveragePool(self, node):
        self._pool(node, "avgpool")

    def op_MaxPool(self, node):
        self._pool(node, "maxpool")

    def _flatten(self, node):
        x = node.input[0]
        if len(self.shape_of(x)) == 1:       # already a vector: the same node
            self.tensor[node.output[0]] = self.tensor[x]
            self.pre[node.output[0]] = self.pre.get(x)
            return
        self.add_node(node, {"op": "flatten", "inputs": [self.source_of(node, x)]},
                      node.output)

    def op_Flatten(self, node):
        if self.attrs(node).get("axis", 1) != 1:
            self.fail(node, "axis must be 1 (keep the batch)")
        self._flatten(node)

    def op_Reshape(self, node):
        shape = self.const(node, node.input[1], "shape")
        size = int(np.prod(self.shape_of(node.input[0])))
        if len(shape) != 2 or shape[1] not in (-1, size) or shape[0] not in (-1, 0, 1) and \
                shape[1] == -1:
            self.fail(node, f"to {[int(s) for s in shape]}: pchw takes a reshape to "
                            f"[batch, -1] (a flatten) only")
        self._flatten(node)

    def _activation(self, node, activation):
        x = node.input[0]
        index = self.pre.get(x)
        if index is None or x not in self.tensor:
            self.fail(node, "follows another activation or no supported node")
        spec = self.specs[index]
        if self.uses.get(x, 0) != 1:
            self.fail(node, f"its input {x!r} is used elsewhere too (before the activation); "
                            "pchw nodes pass on only f(x)")
        spec["activation"] = activation.to_toml()
        self.tensor[node.output[0]] = index
        self.pre.pop(x, None)

    def op_Relu(self, node):
        self._activation(node, Activation("relu"))

    def op_Tanh(self, node):
        self._activation(node, Activation("tanh"))

    def op_Sigmoid(self, node):
        self._activation(node, Activation("sigmoid"))

    def op_LeakyRelu(self, node):
        slope = float(str(np.float32(self.attrs(node).get("alpha", 0.01))))   # as written
        try:
            act = Activation.parse({"name": "leaky_relu", "slope": slope}, "alpha")
        except PchwError as error:
            self.fail(node, str(error))
        self._activation(node, act)

    def op_Clip(self, node):
        a = self.attrs(node)
        low = a.get("min", self.consts.get(node.input[1]) if len(node.input) > 1 else None)
        high = a.get("max", self.consts.get(node.input[2]) if len(node.input) > 2 else None)
        if low is None or high is None or float(low) != -1.0 or float(high) != 1.0:
            self.fail(node, f"clips to [{low}, {high}]; pchw's hardtanh clips to [-1, 1]")
        self._activation(node, Activation("hardtanh"))


def from_onnx(path, *, name=None, dataset=None, mode="fixed_prediction"):
    """A :class:`~pchw.graph.Graph` from the ONNX file ``path``, with the PC settings
    :func:`pchw.defaults.default_settings` derives for ``mode`` (``fixed_prediction``: ``T`` =
    the longest path - 1, ``gamma = 1``)."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise PchwError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as error:          # protobuf's DecodeError and friends: not ONNX
        raise PchwError(f"{path}: not an ONNX model ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'unreadable'})") from None
    specs, params = _Importer(model, str(path)).run()
    graph = Graph(specs, params, name=name, dataset=dataset, source=str(path))
    return graph.with_settings(**vars(default_settings(graph, mode)))
