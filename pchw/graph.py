"""Computation graphs: a ``network.toml`` of named nodes (a DAG) instead of a chain of layers.

The format is documented in ``docs/network-format.md`` ("Graphs"); the math of predictive
coding on a graph in ``docs/pc-math.md``. Every node ``v`` holds a value ``x_v`` of its
shape; ``phi_v = f_v(x_v)`` (its activation); a node other than the input is predicted from its
parents' ``phi`` by its op: ``mu_v = op_v(phi_parents) (+ b_v)``. A chain ``[n_0, ..., n_L]``
is the graph ``input -> dense -> ... -> dense`` (:meth:`Graph.from_chain`), and the golden
models give it bit-identical results.

Everything a user can get wrong raises :class:`~pchw.errors.PchwError` with a one-line
message naming the file and the node.
"""

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .network import (CIRCUIT_ACTIVATIONS, MAX_LAYER_SIZE, MAX_PARAMETERS, MAX_WEIGHT_LAYERS,
                      Activation, Formats, Network, PCSettings, _dump_toml, _fail,
                      _format_to_toml, _parse_format, _reject_unknown)

__all__ = ["OPS", "Node", "Graph", "MAX_NODES", "graph_from_toml_dict", "hardware_network"]

#: The ops a node can have, with the keys each takes besides ``name``, ``op``, ``inputs``,
#: ``activation``, ``value`` and ``weight`` (formats).
OPS = {
    "input": ("shape",),
    "dense": ("units",),
    "conv2d": ("channels", "kernel", "stride", "padding"),
    "avgpool": ("kernel", "stride"),
    "maxpool": ("kernel", "stride"),
    "flatten": (),
    "add": (),
}
#: Ops with weights ``W<node>`` and biases ``b<node>``.
WEIGHTED = ("dense", "conv2d")
#: Nodes are at most this many: a node's index in topological order is the layer field of the
#: stochastic-rounding hash (8 bits), as a chain's layer number is.
MAX_NODES = MAX_WEIGHT_LAYERS + 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_COMMON_KEYS = ("name", "op", "inputs", "activation", "value", "weight")


@dataclass(frozen=True)
class Node:
    """One node of a :class:`Graph`.

    ``name``; ``op`` (a key of :data:`OPS`); ``inputs``: its parents' names; ``shape``: the
    shape of its value (``(n,)`` or ``(C, H, W)``), inferred for every op but ``input``;
    ``activation`` (``phi = f(x)``; the output node's is identity); ``units`` / ``channels``
    (dense, conv2d), ``kernel`` ``(kh, kw)``, ``stride``, ``padding`` (conv2d, pools).
    """
    name: str
    op: str
    inputs: tuple
    shape: tuple
    activation: Activation = Activation("identity")
    units: int = 0
    kernel: tuple = (1, 1)
    stride: int = 1
    padding: int = 0

    @property
    def size(self):
        """Elements of the node's value."""
        return math.prod(self.shape)

    @property
    def weighted(self):
        return self.op in WEIGHTED


def _int(value, where, low, high=None, what="an integer"):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(where, f"{value!r} is not {what}")
    if value < low or (high is not None and value > high):
        _fail(where, f"{value} must be in {low}..{high if high is not None else ''}".rstrip("."))
    return int(value)


def _kernel(value, where):
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            _fail(where, f"{value!r}: give one size k or [kh, kw]")
        return tuple(_int(v, where, 1, MAX_LAYER_SIZE) for v in value)
    k = _int(value, where, 1, MAX_LAYER_SIZE)
    return (k, k)


class Graph:
    """A predictive-coding network described as a DAG of named nodes.

    Parameters
    ----------
    nodes : sequence of dict
        One table per node, as in ``network.toml``'s ``[[node]]`` (``name``, ``op``,
        ``inputs``, and the op's keys: :data:`OPS`).
    params : dict, optional
        ``{"W<node>": array, "b<node>": array}`` for every dense and conv2d node; drawn with
        :meth:`init_params` from ``init_seed`` if omitted.
    pc, formats :
        As for :class:`~pchw.network.Network`; ``formats`` overrides are keyed by node index
        (a node's own ``value``/``weight`` keys set them in ``network.toml``).

    Raises
    ------
    PchwError
        On any invalid node or parameter; the message names ``source`` and the node.
    """

    def __init__(self, nodes, params=None, *, pc=None, formats=None, name=None, dataset=None,
                 init_seed=0, source="network", params_source=None):
        self.source = source
        self.pc = pc if pc is not None else PCSettings()
        if not isinstance(self.pc, PCSettings):
            _fail(source, "pc must be a PCSettings")
        self.pc.validate(f"{source}: pc")
        self.name, self.dataset = name, dataset
        self._specs = [dict(n) for n in nodes] if isinstance(nodes, (list, tuple)) else nodes
        default = formats if formats is not None else Formats()
        if not isinstance(default, Formats):
            _fail(source, "formats must be a Formats")
        if default.value_overrides or default.weight_overrides:
            _fail(source, "a graph's per-node formats are its nodes' value and weight keys, not "
                          "Formats overrides")
        self.nodes, node_formats = self._check_nodes(self._specs, default)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.formats = Formats(default.value, default.weight,
                               {self.index[k]: f for k, f in node_formats["value"].items()},
                               {self.index[k]: f for k, f in node_formats["weight"].items()})
        self.parents = tuple(tuple(self.index[p] for p in n.inputs) for n in self.nodes)
        self.children = tuple(tuple(c for c in range(len(self.nodes)) if i in self.parents[c])
                              for i in range(len(self.nodes)))
        #: ``sources[i]``: the parent of a weighted node (the input of its weights), else None.
        self.sources = tuple(p[0] if n.weighted else None
                             for n, p in zip(self.nodes, self.parents))
        self.activations = tuple(n.activation for n in self.nodes)
        count = self.parameter_count
        if count > MAX_PARAMETERS:
            _fail(source, f"{count} parameters (weights and biases); at most {MAX_PARAMETERS}")
        if params is _LATER:
            self.params = None
            return
        if params is None:
            params = self.init_params(init_seed)
        self.params = self._check_params(params, params_source or source)

    # -- validation ---------------------------------------------------------------------------

    def _check_nodes(self, specs, default):
        src = self.source
        if not isinstance(specs, (list, tuple)) or not specs:
            _fail(f"{src}: node", "a graph needs [[node]] tables (at least an input and one more)")
        if len(specs) > MAX_NODES:
            _fail(f"{src}: node", f"{len(specs)} nodes; at most {MAX_NODES} (the node index is "
                                  "the 8-bit layer field of the stochastic-rounding hash)")
        by_name = {}
        for k, spec in enumerate(specs):
            if not isinstance(spec, dict):
                _fail(f"{src}: node[{k}]", "must be a table")
            name = spec.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                _fail(f"{src}: node[{k}].name", f"{name!r} is not a node name (a letter or _, "
                                                "then letters, digits, _; at most 32)")
            if name in by_name:
                _fail(f"{src}: node {name!r}", "defined twice")
            by_name[name] = spec
        for name, spec in by_name.items():
            where = f"{src}: node {name!r}"
            op = spec.get("op")
            if op not in OPS:
                close = difflib.get_close_matches(str(op), OPS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                _fail(where, f"unknown op {op!r}; {hint}known: {', '.join(OPS)}")
            _reject_unknown(spec, _COMMON_KEYS + OPS[op], where)
            inputs = spec.get("inputs", [])
            if op == "input":
                if inputs:
                    _fail(f"{where}.inputs", "an input node has no inputs")
            elif not isinstance(inputs, list) or not inputs or \
                    not all(isinstance(p, str) for p in inputs):
                _fail(f"{where}.inputs", f"{inputs!r}: give a list of node names")
            for p in inputs:
                if p not in by_name:
                    close = difflib.get_close_matches(p, by_name, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    _fail(f"{where}.inputs", f"{p!r} is no node{hint}")
            if op == "add":
                if len(inputs) < 2:
                    _fail(f"{where}.inputs", "add sums two or more inputs")
            elif op != "input" and len(inputs) != 1:
                _fail(f"{where}.inputs", f"{op} takes one input, got {len(inputs)}")
        order = self._topological(by_name)
        inputs = [n for n in order if by_name[n]["op"] == "input"]
        if len(inputs) != 1:
            _fail(f"{src}: node", f"a graph has one input node, found {len(inputs)}"
                                  + (f" ({', '.join(inputs)})" if inputs else ""))
        used = {p for spec in by_name.values() for p in spec.get("inputs", [])}
        sinks = [n for n in order if n not in used]
        if len(sinks) != 1:
            _fail(f"{src}: node", f"a graph has one output (a node no other node uses), found "
                                  f"{len(sinks)}: {', '.join(sinks)}")
        if order[0] != inputs[0]:       # the input first, as a chain's layer 0
            order.remove(inputs[0])
            order.insert(0, inputs[0])
        nodes, formats = [], {"value": {}, "weight": {}}
        shapes = {}
        for name in order:
            node = self._node(by_name[name], shapes, default, formats, name == sinks[0])
            shapes[name] = node.shape
            nodes.append(node)
        if len(nodes[-1].shape) != 1:
            _fail(f"{src}: node {sinks[0]!r}", f"the output node is {_shape(nodes[-1].shape)}; it "
                                               "must be a vector (flatten it)")
        if nodes[-1].name != sinks[0]:
            _fail(f"{src}: node", "internal: the output is not last")   # pragma: no cover
        return tuple(nodes), formats

    def _topological(self, by_name):
        """Node names in a topological order (parents first; ties in file order), or a PchwError
        naming a cycle."""
        order, state = [], {}

        def visit(name, path):
            if state.get(name) == "done":
                return
            if state.get(name) == "open":
                cycle = path[path.index(name):] + [name]
                _fail(f"{self.source}: node", f"the graph has a cycle: {' -> '.join(cycle)}")
            state[name] = "open"
            for p in by_name[name].get("inputs", []):
                visit(p, path + [name])
            state[name] = "done"
            order.append(name)
        for name in by_name:
            visit(name, [])
        return order

    def _node(self, spec, shapes, default, formats, is_output):
        name, op = spec["name"], spec["op"]
        where = f"{self.source}: node {name!r}"
        inputs = tuple(spec.get("inputs", ()))
        act = Activation.parse(spec.get("activation", "identity"), f"{where}.activation")
        if is_output and act.name != "identity":
            _fail(f"{where}.activation", "the output node has no activation (its value is "
                                         "compared with the target)")
        for key in ("value", "weight"):
            if key in spec:
                if key == "weight" and op not in WEIGHTED:
                    _fail(f"{where}.weight", f"a {op} node has no weights")
                formats[key][name] = _parse_format(spec[key], f"{where}.{key}")
        shape_in = shapes[inputs[0]] if inputs else None
        fields = {}
        if op == "input":
            shape = spec.get("shape")
            if not isinstance(shape, list) or len(shape) not in (1, 3):
                _fail(f"{where}.shape", f"{shape!r}: give [N] or [C, H, W]")
            shape = tuple(_int(s, f"{where}.shape", 1, MAX_LAYER_SIZE) for s in shape)
        elif op == "dense":
            if len(shape_in) != 1:
                _fail(where, f"dense needs a vector input, {inputs[0]!r} is "
                             f"{_shape(shape_in)}: put a flatten node between")
            units = _int(spec.get("units"), f"{where}.units", 1, MAX_LAYER_SIZE,
                         "an integer (the number of outputs)")
            shape, fields = (units,), {"units": units}
        elif op in ("conv2d", "avgpool", "maxpool"):
            if len(shape_in) != 3:
                _fail(where, f"{op} needs a C x H x W input, {inputs[0]!r} is {_shape(shape_in)}")
            if "kernel" not in spec:
                _fail(f"{where}.kernel", "missing")
            kh, kw = _kernel(spec["kernel"], f"{where}.kernel")
            stride = _int(spec.get("stride", 1 if op == "conv2d" else kh), f"{where}.stride", 1,
                          MAX_LAYER_SIZE)
            padding = _int(spec.get("padding", 0), f"{where}.padding", 0, MAX_LAYER_SIZE) \
                if op == "conv2d" else 0
            C, H, W = shape_in
            if kh > H + 2 * padding or kw > W + 2 * padding:
                _fail(f"{where}.kernel", f"{kh}x{kw} is larger than the input "
                                         f"{_shape(shape_in)} (padding {padding})")
            Ho, Wo = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
            if op == "conv2d":
                channels = _int(spec.get("channels"), f"{where}.channels", 1, MAX_LAYER_SIZE,
                                "an integer (the output channels)")
                if C * kh * kw > MAX_LAYER_SIZE:
                    _fail(where, f"{C * kh * kw} inputs per output (C x kh x kw); at most "
                                 f"{MAX_LAYER_SIZE}")
                shape = (channels, Ho, Wo)
                fields = {"units": channels}
            else:
                if op == "avgpool" and kh * kw & (kh * kw - 1):
                    _fail(f"{where}.kernel", f"an avgpool's window must hold a power of two "
                                             f"elements (1/{kh * kw} would not be a shift)")
                shape = (C, Ho, Wo)
            fields.update(kernel=(kh, kw), stride=stride, padding=padding)
        elif op == "flatten":
            shape = (math.prod(shape_in),)
        else:                                       # add
            found = [shapes[p] for p in inputs]
            if len(set(found)) != 1:
                _fail(where, f"add needs inputs of one shape, got "
                             f"{', '.join(f'{p} {_shape(s)}' for p, s in zip(inputs, found))}")
            shape = found[0]
        size = math.prod(shape)
        if size > MAX_LAYER_SIZE:
            _fail(where, f"{_shape(shape)} = {size} values; at most {MAX_LAYER_SIZE}")
        return Node(name, op, inputs, shape, act, **fields)

    def _check_params(self, params, where):
        if not isinstance(params, dict):
            _fail(where, "parameters must be a dict of W<node> and b<node> arrays")
        shapes = self.param_shapes()
        missing = [k for k in shapes if k not in params]
        if missing:
            _fail(where, f"missing array(s) {', '.join(missing)}")
        extra = sorted(set(params) - set(shapes))
        if extra:
            _fail(where, f"unexpected array(s) {', '.join(extra)} (expected "
                         f"{', '.join(shapes)})")
        out = {}
        for key, shape in shapes.items():
            a = np.asarray(params[key])
            if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                _fail(f"{where}: {key}", f"has dtype {a.dtype}, expected numbers")
            if a.shape != shape:
                _fail(f"{where}: {key}", f"has shape {a.shape}, expected {shape}")
            a = a.astype(np.float64)
            if not np.all(np.isfinite(a)):
                _fail(f"{where}: {key}", "contains NaN or infinity")
            out[key] = a
        return out

    # -- derived facts ------------------------------------------------------------------------

    def param_shapes(self):
        """``{"W<node>": shape, "b<node>": shape}`` in node order: dense ``(units, n_in)``,
        conv2d ``(channels, C_in, kh, kw)``."""
        shapes = {}
        for i, n in enumerate(self.nodes):
            if n.op == "dense":
                shapes[f"W{n.name}"] = (n.units, self.nodes[self.sources[i]].size)
            elif n.op == "conv2d":
                shapes[f"W{n.name}"] = (n.units, self.nodes[self.sources[i]].shape[0], *n.kernel)
        for n in self.nodes:
            if n.weighted:
                shapes[f"b{n.name}"] = (n.units,)
        return shapes

    @property
    def weighted(self):
        """Indices of the nodes with weights, in order."""
        return tuple(i for i, n in enumerate(self.nodes) if n.weighted)

    @property
    def parameter_count(self):
        return sum(math.prod(s) for s in self.param_shapes().values())

    @property
    def input_shape(self):
        return self.nodes[0].shape

    @property
    def n_inputs(self):
        """Inputs as a flat vector (a dataset's features)."""
        return self.nodes[0].size

    @property
    def n_outputs(self):
        return self.nodes[-1].size

    @property
    def output(self):
        """Index of the output node (the last)."""
        return len(self.nodes) - 1

    @property
    def depth(self):
        """The longest path from the input to the output, in edges (a chain's ``L``)."""
        longest = [0] * len(self.nodes)
        for i, ps in enumerate(self.parents):
            longest[i] = max((longest[p] + 1 for p in ps), default=0)
        return longest[-1]

    @property
    def L(self):
        """The depth (:attr:`depth`), so that rules stated for chains (``T = L - 1``) apply."""
        return self.depth

    def value_format(self, i):
        return self.formats.value_at(i)

    def weight_format(self, i):
        return self.formats.weight_at(i)

    def weight_arrays(self, i):
        """``(W, b)`` of weighted node ``i``."""
        name = self.nodes[i].name
        return self.params[f"W{name}"], self.params[f"b{name}"]

    def init_params(self, seed):
        """Uniform Glorot initialisation ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``
        (a conv's fans count its kernel's positions), zero biases; a chain's draws are
        :meth:`Network.init_params`'s."""
        rng = np.random.default_rng(seed)
        params = {}
        for key, shape in self.param_shapes().items():
            if key.startswith("W"):
                field = math.prod(shape[2:])
                a = math.sqrt(6.0 / (shape[1] * field + shape[0] * field))
                params[key] = rng.uniform(-a, a, size=shape)
        for key, shape in self.param_shapes().items():
            if key.startswith("b"):
                params[key] = np.zeros(shape)
        return params

    def with_params(self, params):
        return Graph(self._specs, params, pc=self.pc, formats=self._default_formats(),
                     name=self.name, dataset=self.dataset, source=self.source)

    def with_settings(self, **changes):
        return Graph(self._specs, self.params, pc=replace(self.pc, **changes),
                     formats=self._default_formats(), name=self.name, dataset=self.dataset,
                     source=self.source)

    def _default_formats(self):
        return Formats(self.formats.value, self.formats.weight)

    # -- chains -------------------------------------------------------------------------------

    @classmethod
    def from_chain(cls, network):
        """The graph of a chain :class:`~pchw.network.Network`: nodes ``x0`` (input) ..
        ``xL`` (dense), the same activations, formats and parameters; node ``l`` is layer
        ``l``, so the golden models give bit-identical results."""
        specs = []
        for l, n in enumerate(network.layers):
            spec = {"name": f"x{l}", "op": "input" if l == 0 else "dense"}
            if l == 0:
                spec["shape"] = [n]
            else:
                spec.update(inputs=[f"x{l - 1}"], units=n)
            if l < network.L:
                spec["activation"] = network.activations[l].to_toml()
            if l in network.formats.value_overrides:
                spec["value"] = _format_to_toml(network.formats.value_overrides[l])
            if l in network.formats.weight_overrides and l >= 1:
                spec["weight"] = _format_to_toml(network.formats.weight_overrides[l])
            specs.append(spec)
        params = {f"Wx{l}": w for l, w in enumerate(network.weights, start=1)}
        params.update({f"bx{l}": b for l, b in enumerate(network.biases, start=1)})
        return cls(specs, params, pc=network.pc,
                   formats=Formats(network.formats.value, network.formats.weight),
                   name=network.name, dataset=network.dataset, source=network.source)

    def chain_obstacle(self):
        """None if the graph is a chain of dense nodes on a vector input (what the circuits
        run), else the first node that is not, as ``(name, reason)``."""
        for i, n in enumerate(self.nodes):
            if i == 0 and len(n.shape) != 1:
                return n.name, f"an input of shape {_shape(n.shape)}"
            if i and n.op != "dense":
                return n.name, f"a {n.op} node"
            if i and self.parents[i] != (i - 1,):
                return n.name, "a node whose input is not the node before it"
        return None

    def to_chain(self, **kwargs):
        """The chain :class:`~pchw.network.Network` of a graph with no
        :meth:`chain_obstacle`."""
        obstacle = self.chain_obstacle()
        if obstacle:
            _fail(self.source, f"node {obstacle[0]!r} is {obstacle[1]}: not a chain")
        L = len(self.nodes) - 1
        return Network([n.size for n in self.nodes], [n.activation for n in self.nodes[:-1]],
                       [self.weight_arrays(i)[0] for i in range(1, L + 1)],
                       [self.weight_arrays(i)[1] for i in range(1, L + 1)], pc=self.pc,
                       formats=self.formats, name=self.name, dataset=self.dataset,
                       source=self.source, **kwargs)

    # -- files --------------------------------------------------------------------------------

    def to_toml_dict(self):
        network = {}
        if self.name:
            network["name"] = self.name
        if self.dataset:
            network["dataset"] = self.dataset
        fmt = {"value": _format_to_toml(self.formats.value),
               "weight": _format_to_toml(self.formats.weight)}
        pc = {"mode": self.pc.mode, "inference_steps": self.pc.inference_steps,
              "inference_rate": self.pc.inference_rate, "learning_rate": self.pc.learning_rate,
              "weight_rounding": self.pc.weight_rounding, "seed": self.pc.seed}
        nodes = []
        for i, n in enumerate(self.nodes):
            spec = {"name": n.name, "op": n.op}
            if n.inputs:
                spec["inputs"] = list(n.inputs)
            if n.op == "input":
                spec["shape"] = list(n.shape)
            elif n.op == "dense":
                spec["units"] = n.units
            elif n.op in ("conv2d", "avgpool", "maxpool"):
                if n.op == "conv2d":
                    spec["channels"] = n.units
                spec["kernel"] = n.kernel[0] if n.kernel[0] == n.kernel[1] else list(n.kernel)
                spec["stride"] = n.stride
                if n.op == "conv2d":
                    spec["padding"] = n.padding
            if n.activation.name != "identity":
                spec["activation"] = n.activation.to_toml()
            if i in self.formats.value_overrides:
                spec["value"] = _format_to_toml(self.formats.value_overrides[i])
            if i in self.formats.weight_overrides:
                spec["weight"] = _format_to_toml(self.formats.weight_overrides[i])
            nodes.append(spec)
        d = {"pc": pc, "format": fmt}
        if network:
            d = {"network": network, **d}
        return {**d, "node": nodes}

    def save(self, path):
        """Write ``network.toml`` and ``weights.npz`` into the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        d = self.to_toml_dict()
        nodes = d.pop("node")
        text = ("# pchw network description, a graph (format: docs/network-format.md)\n"
                + _dump_toml(d))
        for spec in nodes:
            text += "\n[[node]]\n" + _dump_toml(spec, "node.")
        (path / "network.toml").write_text(text)
        np.savez(path / "weights.npz", **self.params)

    def description_hash(self):
        digest = hashlib.sha256(json.dumps(self.to_toml_dict(), sort_keys=True).encode())
        for key in sorted(self.params):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(self.params[key], dtype="<f8").tobytes())
        return digest.hexdigest()

    def summary(self):
        """Multi-line human-readable description (``pchw info``)."""
        lines = [f"network    {self.name or '(unnamed)'}  ({self.source})",
                 f"graph      {len(self.nodes)} nodes, depth {self.depth}, "
                 f"{self.n_inputs} inputs -> {self.n_outputs} outputs",
                 f"parameters {self.parameter_count}",
                 f"pc         mode={self.pc.mode} T={self.pc.inference_steps} "
                 f"gamma=2^-{self.pc.gamma_shift} eta=2^-{self.pc.eta_shift} "
                 f"weight_rounding={self.pc.weight_rounding}"]
        for i, n in enumerate(self.nodes):
            what = n.op
            if n.op == "dense":
                what += f" {n.units}"
            elif n.op == "conv2d":
                what += f" {n.units} x {n.kernel[0]}x{n.kernel[1]} /{n.stride} pad {n.padding}"
            elif n.op in ("avgpool", "maxpool"):
                what += f" {n.kernel[0]}x{n.kernel[1]} /{n.stride}"
            src = f" <- {', '.join(n.inputs)}" if n.inputs else ""
            act = f"  f={n.activation}" if n.activation.name != "identity" else ""
            w = f"  W,b {self.weight_format(i)}" if n.weighted else ""
            lines.append(f"node {i:<3}  {n.name}: {what}{src}  -> {_shape(n.shape)}{act}  "
                         f"values {self.value_format(i)}{w}")
        if self.dataset:
            lines.append(f"dataset    {self.dataset}")
        return "\n".join(lines)

    def __repr__(self):
        return f"Graph({[n.name for n in self.nodes]}, mode={self.pc.mode!r}, " \
               f"source={self.source!r})"


def _shape(shape):
    return "x".join(map(str, shape))


_LATER = object()


def graph_from_toml_dict(d, source, weights_path=None, params=None):
    """A :class:`Graph` from a parsed ``network.toml`` with ``[[node]]`` tables (called by
    :func:`pchw.network.from_toml_dict`). Parameters from ``params``, the ``.npz`` file
    ``weights_path`` (read once the description is valid), or drawn at random."""
    from .network import _read_arrays, _table
    _reject_unknown(d, {"network", "pc", "format", "node"}, source)
    if "hardware" in d:                                    # pragma: no cover (rejected above)
        pass
    net = _table(d, "network", source)
    _reject_unknown(net, {"name", "dataset"}, f"{source}: [network] (of a graph)")
    pc_table = _table(d, "pc", source)
    _reject_unknown(pc_table, {"mode", "inference_steps", "inference_rate", "learning_rate",
                               "weight_rounding", "seed"}, f"{source}: [pc]")
    fmt = _table(d, "format", source)
    _reject_unknown(fmt, {"value", "weight"}, f"{source}: [format] (of a graph; a node's own "
                                              "value and weight keys override)")
    default = Formats()
    value = _parse_format(fmt.get("value", _format_to_toml(default.value)),
                          f"{source}: format.value")
    weight = _parse_format(fmt.get("weight", _format_to_toml(default.weight)),
                           f"{source}: format.weight")
    for key in ("name", "dataset"):
        if net.get(key) is not None and not isinstance(net[key], str):
            _fail(f"{source}: network.{key}", "must be a string")
    nodes = d["node"]
    if not isinstance(nodes, list):
        _fail(f"{source}: node", "must be an array of tables [[node]]")
    graph = Graph(nodes, _LATER if (weights_path or params is not None) else None,
                  pc=PCSettings(**pc_table), formats=Formats(value, weight),
                  name=net.get("name"), dataset=net.get("dataset"), source=source)
    if weights_path is not None:
        params = _read_arrays(weights_path, graph.param_shapes())
        graph.params = graph._check_params(params, str(weights_path))
    elif params is not None:
        graph.params = graph._check_params(params, source)
    return graph


def hardware_network(network, command):
    """The chain :class:`~pchw.network.Network` the circuits run for ``network`` (a Network,
    or a Graph that is a chain of dense nodes), or a one-line PchwError saying why ``command``
    cannot run it yet (a graph's conv, pool and add nodes, tanh and sigmoid run in the golden
    model only)."""
    if isinstance(network, Graph):
        obstacle = network.chain_obstacle()
        if obstacle:
            _fail(network.source, f"pchw {command} builds circuits of chains of dense layers "
                                  f"only; node {obstacle[0]!r} is {obstacle[1]} (graphs run in "
                                  "the golden model: pchw info, eval, train, golden)")
        network = network.to_chain()
    for l, act in enumerate(network.activations):
        if act.name not in CIRCUIT_ACTIVATIONS:
            _fail(network.source, f"pchw {command}: activation f_{l} = {act.name} has no "
                                  "circuit yet (it runs in the golden model: pchw eval, train, "
                                  "golden)")
    return network
