"""Graph descriptions: round trip, the chain as a graph, and a one-line error for each bad graph."""

import numpy as np
import pytest

import pchw
from pchw import Network, PchwError
from pchw.cli import main
from pchw.graph import Graph, hardware_network

CNN = """\
[network]
name = "cnn"

[pc]
mode = "fixed_prediction"
inference_steps = 4
inference_rate = 1.0

[[node]]
name = "image"
op = "input"
shape = [1, 6, 6]

[[node]]
name = "conv"
op = "conv2d"
inputs = ["image"]
channels = 3
kernel = 3
padding = 1
activation = "relu"

[[node]]
name = "pool"
op = "maxpool"
inputs = ["conv"]
kernel = 2

[[node]]
name = "flat"
op = "flatten"
inputs = ["pool"]

[[node]]
name = "hidden"
op = "dense"
inputs = ["flat"]
units = 27
activation = "tanh"

[[node]]
name = "skip"
op = "add"
inputs = ["hidden", "flat"]
activation = "sigmoid"

[[node]]
name = "out"
op = "dense"
inputs = ["skip"]
units = 4
"""


@pytest.fixture
def cnn(tmp_path):
    folder = tmp_path / "cnn"
    folder.mkdir()
    (folder / "network.toml").write_text(CNN)
    graph = pchw.network.from_toml_dict(__import__("tomllib").loads(CNN), source="cnn")
    np.savez(folder / "weights.npz", **graph.params)
    return folder


def test_graph_round_trip(cnn, tmp_path):
    g = pchw.load(cnn)
    assert isinstance(g, Graph)
    assert [n.name for n in g.nodes] == ["image", "conv", "pool", "flat", "hidden", "skip", "out"]
    assert [n.shape for n in g.nodes] == [(1, 6, 6), (3, 6, 6), (3, 3, 3), (27,), (27,), (27,),
                                          (4,)]
    assert g.depth == 6 and g.param_shapes()["Wconv"] == (3, 1, 3, 3)
    assert g.children[g.index["flat"]] == (g.index["hidden"], g.index["skip"])
    g.save(tmp_path / "again")
    back = pchw.load(tmp_path / "again")
    assert back.description_hash() == g.description_hash()
    assert back.to_toml_dict() == g.to_toml_dict()


def test_chain_as_graph_round_trip():
    net = Network([5, 4, 3], ["identity", {"name": "leaky_relu", "slope": 0.5}], init_seed=2,
                  formats=pchw.Formats(pchw.Format(12, 8), pchw.Format(14, 10),
                                       {1: pchw.Format(10, 6)}, {2: pchw.Format(8, 6)}))
    g = Graph.from_chain(net)
    assert g.depth == net.L and g.sources == (None, 0, 1)
    assert [g.value_format(i) for i in range(3)] == [net.value_format(l) for l in range(3)]
    assert [g.weight_format(i) for i in (1, 2)] == [net.weight_format(l) for l in (1, 2)]
    back = g.to_chain()
    assert back.layers == net.layers and back.activations == net.activations
    assert back.description_hash() == net.description_hash()


def _variant(old, new):
    assert old in CNN, old
    return CNN.replace(old, new)


@pytest.mark.parametrize("old, new, message", [
    ('op = "maxpool"', 'op = "minpool"', r"node 'pool': unknown op 'minpool'; did you mean "
                                         r"'maxpool'\? known: input, dense"),
    ('inputs = ["pool"]', 'inputs = ["poll"]',
     r"node 'flat'.inputs: 'poll' is no node \(did you mean 'pool'\?\)"),
    ('inputs = ["image"]', 'inputs = ["out"]', r"the graph has a cycle: conv -> out -> skip -> "
                                               r"hidden -> flat -> pool -> conv"),
    ('inputs = ["hidden", "flat"]', 'inputs = ["hidden", "pool"]',
     r"node 'skip': add needs inputs of one shape, got hidden 27, pool 3x3x3"),
    ('inputs = ["flat"]\nunits = 27', 'inputs = ["pool"]\nunits = 27',
     r"node 'hidden': dense needs a vector input, 'pool' is 3x3x3: put a flatten node between"),
    ('shape = [1, 6, 6]', 'shape = [6]', r"node 'conv': conv2d needs a C x H x W input, 'image' "
                                         r"is 6"),
    ('kernel = 3', 'kernel = 9', r"node 'conv'.kernel: 9x9 is larger than the input 1x6x6"),
    ('kernel = 2', 'kernel = 2\npadding = 1', r"node 'pool': unknown key\(s\) padding"),
    ('units = 4', 'units = 4\nactivation = "relu"', r"node 'out'.activation: the output node has "
                                                    r"no activation"),
    ('name = "skip"', 'name = "hidden"', r"node 'hidden': defined twice"),
    ('inputs = ["skip"]', 'inputs = ["hidden"]', r"a graph has one output \(a node no other node "
                                                 r"uses\), found 2: skip, out"),
    ('op = "maxpool"\ninputs = ["conv"]\nkernel = 2',
     'op = "avgpool"\ninputs = ["conv"]\nkernel = 3',
     r"node 'pool'.kernel: an avgpool's window must hold a power of two elements"),
    ('inputs = ["hidden", "flat"]', 'inputs = ["hidden"]', r"node 'skip'.inputs: add sums two or "
                                                           r"more inputs"),
    ('channels = 3', 'channels = 0', r"node 'conv'.channels: 0 must be in 1..65535"),
    ('[[node]]\nname = "image"', '[hardware]\nlanes = [1]\n\n[[node]]\nname = "image"',
     r"\[hardware\]: a graph has no hardware settings yet"),
    ('name = "cnn"', 'name = "cnn"\nlayers = [2, 2]', r"network.layers: give either "),
    ('[[node]]\nname = "image"\nop = "input"\nshape = [1, 6, 6]\n',
     '[[node]]\nname = "image"\nop = "input"\nshape = [1, 6, 6]\n\n[[node]]\nname = "image2"\n'
     'op = "input"\nshape = [2]\n', r"a graph has one input node, found 2 \(image, image2\)"),
    ('units = 4', 'units = 4\nvalue = { width = 40, frac = 3 }',
     r"node 'out'.value: width 40 is outside 2..32"),
    ('name = "flat"\nop = "flatten"',
     'name = "flat"\nop = "flatten"\nweight = { width = 8, frac = 4 }',
     r"node 'flat'.weight: a flatten node has no weights"),
])
def test_bad_graph_is_one_line_error(cnn, old, new, message):
    (cnn / "network.toml").write_text(_variant(old, new))
    with pytest.raises(PchwError, match=message) as info:
        pchw.load(cnn)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(cnn / "network.toml"))


def test_bad_graph_weights(cnn):
    g = pchw.load(cnn)
    params = dict(g.params)
    params["Wconv"] = np.zeros((3, 1, 2, 2))
    np.savez(cnn / "weights.npz", **params)
    with pytest.raises(PchwError, match=r"weights.npz: Wconv: has shape \(3, 1, 2, 2\), expected "
                                        r"\(3, 1, 3, 3\)"):
        pchw.load(cnn)
    del params["Wconv"]
    np.savez(cnn / "weights.npz", **params)
    with pytest.raises(PchwError, match=r"missing array\(s\) Wconv"):
        pchw.load(cnn)


def test_hardware_commands_refuse_graphs(cnn, capsys):
    with pytest.raises(PchwError, match=r"pchw verilog builds circuits of chains of dense layers "
                                        r"only; node 'image' is an input of shape 1x6x6"):
        hardware_network(pchw.load(cnn), "verilog")
    for argv in (["verilog", str(cnn), "-o", "x.v"], ["sim", str(cnn), "--random"],
                 ["build", str(cnn), "--board", "icebreaker"]):
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "builds circuits of chains of dense layers" in err
    # A graph that is a chain of dense nodes is the chain the circuits run.
    chain = Graph.from_chain(Network([3, 4, 2], ["identity", "relu"]))
    assert hardware_network(chain, "verilog").layers == (3, 4, 2)
    tanh = Network([3, 4, 2], ["identity", "tanh"])
    with pytest.raises(PchwError, match=r"activation f_1 = tanh has no circuit yet"):
        hardware_network(tanh, "build")


def test_info_shows_a_graph(cnn, capsys):
    assert main(["info", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert "conv: conv2d 3 x 3x3 /1 pad 1 <- image  -> 3x6x6  f=relu" in out
    assert "skip: add <- hidden, flat  -> 27  f=sigmoid" in out


def test_documented_example_loads(tmp_path):
    """The graph of docs/network-format.md is valid and has the shapes its figure shows."""
    import pathlib
    import re
    import tomllib
    text = (pathlib.Path(__file__).parent.parent / "docs" / "network-format.md").read_text()
    block = re.search(r"## Graphs.*?```toml\n(.*?)```", text, re.S).group(1)
    g = pchw.network.from_toml_dict(tomllib.loads(block), source="doc")
    assert [(n.name, n.shape) for n in g.nodes] == [
        ("image", (1, 8, 8)), ("conv", (4, 8, 8)), ("pool", (4, 4, 4)), ("flat", (64,)),
        ("hidden", (64,)), ("skip", (64,)), ("out", (10,))]
    assert g.depth == 6 and g.pc.inference_steps == g.depth - 1


def test_graph_formats_are_per_node():
    with pytest.raises(PchwError, match="a graph's per-node formats are its nodes' value and "
                                        "weight keys"):
        Graph([{"name": "x", "op": "input", "shape": [2]},
               {"name": "y", "op": "dense", "inputs": ["x"], "units": 1}],
              formats=pchw.Formats(pchw.Format(8, 4), pchw.Format(8, 4), {1: pchw.Format(6, 3)}))
