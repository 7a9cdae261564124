"""``pchw import``: an ONNX model as a model folder of a graph (:mod:`pchw.onnx_import`)."""

from pathlib import Path

from ..datasets import DATASETS
from ..defaults import DEFAULT_MODE
from ..errors import PchwError
from ..network import MODES

NAME = "import"
HELP = "import an ONNX model as a model folder (a graph)"
DESCRIPTION = (
    "Read an ONNX model (Gemm, MatMul + Add, Conv, AveragePool, MaxPool, Flatten, Reshape, Add, "
    "Relu, LeakyRelu, Clip, Tanh, Sigmoid) and write MODEL/network.toml (a graph, "
    "docs/network-format.md) and weights.npz, with the PC settings derived for --mode. Any "
    "other op is refused, naming its node. Needs the onnx package (pip install 'pchw[onnx]').")


def add_arguments(parser, common):
    parser.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX file")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL",
                        help="the model folder to write")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="default dataset of the model")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help=f"PC mode (default {DEFAULT_MODE}: T = the longest path - 1, "
                        "gamma = 1, which learns as backprop does)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the model already in MODEL")


def run(args):
    from ..cli import _output_folder, _saving
    from ..onnx_import import from_onnx
    folder = _output_folder(args.output, "-o")
    existing = [f for f in ("network.toml", "weights.npz") if (folder / f).exists()]
    if existing and not args.force:
        raise PchwError(f"{folder} already holds a model ({' and '.join(existing)}); pass "
                        "--force to overwrite it")
    graph = from_onnx(args.onnx, name=Path(args.output).name, dataset=args.dataset,
                      mode=args.mode)
    _saving(args.output, graph.save, args.output)
    print(f"wrote {args.output}/network.toml and weights.npz: {len(graph.nodes)} nodes, depth "
          f"{graph.depth}, {graph.parameter_count} parameters; mode {graph.pc.mode}, T = "
          f"{graph.pc.inference_steps}, gamma = {graph.pc.inference_rate:g}")
    if graph.chain_obstacle():
        name, reason = graph.chain_obstacle()
        print(f"note: node {name!r} is {reason}: the golden model runs it (pchw eval, train, "
              "golden); circuits of graphs are future work")
