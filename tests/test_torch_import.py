"""Import of PyTorch nn.Sequential models (PyTorch is an optional extra)."""

import numpy as np
import pytest

import pchw
from pchw import PchwError
from pchw.golden import FloatModel

torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install 'pchw[torch]')")
nn = torch.nn


def test_import_matches_torch_forward():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6),
                        nn.LeakyReLU(0.125), nn.Linear(6, 4), nn.Hardtanh(), nn.Linear(4, 3),
                        nn.Tanh(), nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 2))
    net = pchw.from_torch(seq)
    assert net.layers == (5, 7, 6, 4, 3, 3, 2)
    assert [str(a) for a in net.activations] == ["identity", "relu", "leaky_relu(2^-3)",
                                                 "hardtanh", "tanh", "sigmoid"]
    x = np.random.default_rng(0).normal(size=(8, 5))
    with torch.no_grad():
        expected = seq.double()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(FloatModel(net).infer(x), expected, atol=1e-12)


def test_leading_activation_is_f0_and_missing_bias_is_zero():
    seq = nn.Sequential(nn.ReLU(), nn.Linear(3, 2, bias=False))
    net = pchw.from_torch(seq)
    assert net.activations[0].name == "relu" and not np.any(net.biases[0])


@pytest.mark.parametrize("seq, message", [
    (lambda: nn.Sequential(nn.Linear(3, 2), nn.GELU(), nn.Linear(2, 2)), "GELU is not"),
    (lambda: nn.Sequential(nn.Linear(3, 2), nn.ReLU()), "ends with an activation"),
    (lambda: nn.Sequential(nn.Linear(3, 2), nn.LeakyReLU(0.1), nn.Linear(2, 2)),
     "not a power of two"),
    (lambda: nn.Sequential(nn.Linear(3, 2), nn.Linear(4, 2)), "takes 4 inputs"),
    (lambda: nn.Sequential(nn.ReLU()), "no Linear layer"),
    (lambda: nn.Linear(3, 2), "expected torch.nn.Sequential"),
])
def test_unsupported_models_are_refused(seq, message):
    with pytest.raises(PchwError, match=message):
        pchw.from_torch(seq())


def test_sequential_cnn_becomes_a_graph():
    from pchw.golden.graph import FloatGraphModel
    from pchw.graph import Graph
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 3, (2, 2), stride=2), nn.ReLU(), nn.AvgPool2d(1),
                        nn.Flatten(), nn.Linear(3, 5), nn.Sigmoid(), nn.Linear(5, 2))
    graph = pchw.from_torch(seq, input_shape=(2, 6, 6))
    assert isinstance(graph, Graph)
    assert [(n.op, n.activation.name) for n in graph.nodes] == [
        ("input", "identity"), ("conv2d", "tanh"), ("maxpool", "identity"),
        ("conv2d", "relu"), ("avgpool", "identity"), ("flatten", "identity"),
        ("dense", "sigmoid"), ("dense", "identity")]
    x = np.random.default_rng(0).normal(size=(4, 2, 6, 6))
    with torch.no_grad():
        expected = seq.double()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(FloatGraphModel(graph).infer(x.reshape(4, -1)), expected,
                               atol=1e-12)


@pytest.mark.parametrize("seq, message", [
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)),
     r"needs input_shape=\(C, H, W\)"),
    (lambda: nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.Flatten(), nn.Linear(2, 2)),
     r"torch module \[0\]: Conv2d with groups or dilation is not supported"),
    (lambda: nn.Sequential(nn.MaxPool2d(2, padding=1), nn.Flatten(), nn.Linear(2, 2)),
     r"torch module \[0\]: MaxPool2d with padding or ceil_mode is not supported"),
    (lambda: nn.Sequential(nn.Conv2d(2, 2, 1, stride=(1, 2)), nn.Flatten(), nn.Linear(2, 2)),
     r"torch module \[0\]: stride \(1, 2\): pchw takes one value for both axes"),
])
def test_unsupported_cnn_is_refused(seq, message):
    shape = None if "input_shape" in message else (2, 4, 4)
    with pytest.raises(PchwError, match=message):
        pchw.from_torch(seq(), input_shape=shape)
