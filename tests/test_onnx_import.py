"""`pchw import` of ONNX models (the onnx package is an optional extra), built with onnx.helper:
the imported graph's float64 model computes what ONNX's reference evaluator computes."""

import warnings

import numpy as np
import pytest

import pchw
from pchw import PchwError
from pchw.cli import main
from pchw.golden.graph import FloatGraphModel
from pchw.graph import Graph
from pchw.onnx_import import from_onnx

onnx = pytest.importorskip("onnx", reason="onnx is optional (pip install 'pchw[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

RNG = np.random.default_rng(0)


def _init(name, shape, scale=0.4):
    return numpy_helper.from_array(RNG.normal(0, scale, shape).astype(np.float32), name)


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def _save(tmp_path, nodes, inits, in_shape, out_shape, name="m.onnx"):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path, model


def _cnn(tmp_path, **conv):
    """Conv(3x3, pad 1) -> Relu -> MaxPool 2 -> Conv 1x1 -> Tanh -> AveragePool 2 (stride 1)
    -> Flatten -> Gemm -> Sigmoid -> MatMul + Add, a residual Add around a LeakyRelu Gemm, then
    a Gemm with Clip before it."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/conv1/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="/relu1/Relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("Tanh", ["c2"], ["t2"], name="tanh2"),
        helper.make_node("AveragePool", ["t2"], ["p2"], name="pool2", kernel_shape=[2, 2],
                         strides=[1, 1]),
        helper.make_node("Flatten", ["p2"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g3"], name="fc3", transB=1),
        helper.make_node("Sigmoid", ["g3"], ["s3"], name="sig3"),
        helper.make_node("MatMul", ["s3", "w4"], ["m4"], name="mm4"),
        helper.make_node("Add", ["m4", "b4"], ["a4"], name="bias4"),
        helper.make_node("LeakyRelu", ["a4"], ["l4"], name="leaky4", alpha=0.25),
        helper.make_node("Gemm", ["l4", "w5"], ["g5"], name="fc5", transB=1),
        helper.make_node("Add", ["g5", "l4"], ["res"], name="residual"),
        helper.make_node("Clip", ["res", "lo", "hi"], ["clip"], name="clip"),
        helper.make_node("Gemm", ["clip", "w6", "b6"], ["y"], name="out", transB=1),
    ]
    inits = [_init("w1", (4, 2, 3, 3)), _init("b1", (4,)), _init("w2", (3, 4, 1, 1)),
             _init("w3", (6, 12)), _init("b3", (6,)), _init("w4", (6, 5)), _init("b4", (5,)),
             _init("w5", (5, 5)), numpy_helper.from_array(np.float32(-1.0), "lo"),
             numpy_helper.from_array(np.float32(1.0), "hi"), _init("w6", (3, 5)),
             _init("b6", (3,))]
    return _save(tmp_path, nodes, inits, [2, 6, 6], [3])


def test_imported_cnn_computes_what_onnx_computes(tmp_path):
    path, model = _cnn(tmp_path)
    graph = from_onnx(path, dataset="digits")
    assert [(n.name, n.op, n.activation.name) for n in graph.nodes] == [
        ("input", "input", "identity"), ("conv1_Conv", "conv2d", "relu"),
        ("pool1", "maxpool", "identity"), ("conv2", "conv2d", "tanh"),
        ("pool2", "avgpool", "identity"), ("flat", "flatten", "identity"),
        ("fc3", "dense", "sigmoid"), ("mm4", "dense", "leaky_relu"), ("fc5", "dense", "identity"),
        ("residual", "add", "hardtanh"), ("out", "dense", "identity")]
    assert graph.pc.mode == "fixed_prediction" and graph.pc.inference_steps == graph.depth - 1
    assert np.any(graph.params["bmm4"])                     # the Add after MatMul: its bias
    x = RNG.normal(0, 1, (5, 2, 6, 6)).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = FloatGraphModel(graph).infer(x.reshape(5, -1).astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pchw_import_writes_a_model_folder(tmp_path, capsys):
    path, _ = _cnn(tmp_path)
    assert main(["import", str(path), "-o", str(tmp_path / "cnn")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "node 'input' is an input of shape 2x6x6" in out
    graph = pchw.load(tmp_path / "cnn")
    assert isinstance(graph, Graph) and graph.name == "cnn"
    assert main(["import", str(path), "-o", str(tmp_path / "cnn")]) == 1     # no overwrite
    assert "already holds a model" in capsys.readouterr().err
    assert main(["verilog", str(tmp_path / "cnn"), "-o", str(tmp_path / "cnn.v")]) == 1
    assert "builds circuits of chains of dense layers only" in capsys.readouterr().err


def test_mlp_import_is_a_chain(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["rr"]),
             helper.make_node("Gemm", ["rr", "w2", "b2"], ["y"], transB=1)]
    path, model = _save(tmp_path, nodes, [_init("w1", (7, 4)), _init("b1", (7,)),
                                          _const("shape", [-1, 7]), _init("w2", (3, 7)),
                                          _init("b2", (3,))], [4], [3])
    graph = from_onnx(path)
    net = graph.to_chain()
    assert net.layers == (4, 7, 3) and [a.name for a in net.activations] == ["identity", "relu"]
    x = RNG.normal(0, 1, (4, 4)).astype(np.float32)
    np.testing.assert_allclose(FloatGraphModel(graph).infer(x.astype(np.float64)),
                               ReferenceEvaluator(model).run(None, {"x": x})[0], atol=1e-5)


def _one(tmp_path, node, inits=(), in_shape=(2, 4, 4), out_shape=(3,)):
    """A model with ``node`` (reading x) followed by Flatten and a Gemm to 3 outputs."""
    nodes = [node, helper.make_node("Flatten", [node.output[0]], ["f"]),
             helper.make_node("Gemm", ["f", "wz"], ["y"], transB=1)]
    return _save(tmp_path, nodes, list(inits) + [_init("wz", (3, 32))], list(in_shape),
                 list(out_shape))[0]


@pytest.mark.parametrize("node, inits, message", [
    (helper.make_node("Softmax", ["x"], ["s"], name="sm"), (),
     r"ONNX node 'sm' \(Softmax\): not supported; pchw imports Gemm, MatMul"),
    (helper.make_node("Conv", ["x", "w"], ["c"], name="grouped", kernel_shape=[1, 1], group=2),
     [_init("w", (2, 1, 1, 1))], r"ONNX node 'grouped' \(Conv\): group = 2 is not supported"),
    (helper.make_node("Conv", ["x", "w"], ["c"], name="dil", kernel_shape=[1, 1],
                      dilations=[2, 2]), [_init("w", (2, 2, 1, 1))], r"dilations \[2, 2\]"),
    (helper.make_node("Conv", ["x", "w"], ["c"], name="pads", kernel_shape=[1, 1],
                      pads=[0, 1, 0, 1]), [_init("w", (2, 2, 1, 1))],
     r"'pads' \(Conv\): pads \[0, 1, 0, 1\]: pchw takes the same padding on every side"),
    (helper.make_node("AveragePool", ["x"], ["c"], name="avg3", kernel_shape=[3, 3]), (),
     r"'avg3' \(AveragePool\): a 3x3 average: pchw's window must hold a power of two"),
    (helper.make_node("LeakyRelu", ["x"], ["c"], name="lr", alpha=0.1), (),
     r"'lr' \(LeakyRelu\): .*0.1 is not a power of two"),
    (helper.make_node("Clip", ["x", "lo", "hi"], ["c"], name="relu6"),
     [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6),
                                                                              "hi")],
     r"'relu6' \(Clip\): clips to \[0.0, 6.0\]; pchw's hardtanh clips to \[-1, 1\]"),
])
def test_unsupported_onnx_is_refused_naming_the_node(tmp_path, node, inits, message):
    path = _one(tmp_path, node, inits)
    with pytest.raises(PchwError, match=message) as info:
        from_onnx(path)
    assert "\n" not in str(info.value)


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "text.onnx").write_text("not a model")
    assert main(["import", str(tmp_path / "text.onnx"), "-o", str(tmp_path / "m")]) == 1
    assert "not an ONNX model" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "m")]) == 1
    assert "no such file" in capsys.readouterr().err
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["y"])]
    path, _ = _save(tmp_path, nodes, [_init("w", (3, 4))], [4], [3], "act.onnx")
    with pytest.raises(PchwError, match="is an activation's; the PC output node is linear"):
        from_onnx(path)


def test_torch_export_of_a_cnn(tmp_path):
    """The PyTorch path: torch.onnx.export of a small CNN, imported, computes what torch does."""
    torch = pytest.importorskip("torch", reason="PyTorch is optional")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(64, 10))
    x = torch.randn(3, 1, 8, 8)
    try:
        with warnings.catch_warnings():       # the TorchScript exporter is deprecated, not gone
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, (x,), str(tmp_path / "cnn.onnx"), dynamo=False,
                              input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    except Exception as error:        # the exporter's own dependencies (onnxscript, ...)
        pytest.skip(f"torch.onnx.export is unavailable here: {type(error).__name__}: {error}")
    graph = from_onnx(tmp_path / "cnn.onnx")
    assert [n.op for n in graph.nodes] == ["input", "conv2d", "avgpool", "flatten", "dense"]
    with torch.no_grad():
        expected = net.double()(x.double()).numpy()
    np.testing.assert_allclose(FloatGraphModel(graph).infer(x.double().numpy().reshape(3, -1)),
                               expected, atol=1e-9)
