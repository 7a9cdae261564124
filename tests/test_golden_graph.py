"""The golden models of graphs: a chain as a graph is the chain bit for bit, and the float
model with the fixed prediction assumption is backprop (against torch autograd)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pchw import Format, Formats, PCSettings
from pchw.golden import FixedModel, FloatModel, make_model
from pchw.golden.graph import FixedGraphModel, FloatGraphModel, col2im, im2col
from pchw.graph import Graph

from .test_golden import networks

ACTS = ["identity", "relu", "tanh", "sigmoid", "hardtanh", {"name": "leaky_relu",
                                                            "slope": 0.25}]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_chain_as_graph_is_bit_identical(case):
    """Every value, trace, energy, parameter, saturation count and update count (float64 too,
    where the drawn rates can make it overflow: the same infinities and NaNs)."""
    net, rng, scale = case
    graph = Graph.from_chain(net)
    for chain, nodes in ((FixedModel(net), FixedGraphModel(graph)),
                         (FloatModel(net), FloatGraphModel(graph))):
        with np.errstate(all="ignore"):
            _compare(net, chain, nodes, rng, scale)
        assert chain.updates == nodes.updates
        assert chain.saturations.counts == nodes.saturations.counts


def _compare(net, chain, nodes, rng, scale):
    same = np.testing.assert_array_equal
    for _ in range(2):
        x = rng.normal(0, scale, (2, net.layers[0]))
        y = rng.normal(0, scale, (2, net.layers[-1]))
        same(chain.infer(x), nodes.infer(x))
        a = chain.learn(x, y, trace=True, energy=True)
        b = nodes.learn(x, y, trace=True, energy=True)
        same(a.output, b.output)
        same(a.energy, b.energy)
        assert len(a.trace) == len(b.trace)
        for s, t in zip(a.trace, b.trace):
            for key in ("x", "mu", "eps"):
                for u, v in zip(getattr(s, key), getattr(t, key)):
                    assert (u is None) == (v is None)
                    if u is not None:
                        same(u, v)
        for u, v in zip(a.dW + a.db, b.dW + b.db):
            same(u, v)
        for l in range(1, net.L + 1):
            same(chain.W[l - 1], nodes.W[l])
            same(chain.b[l - 1], nodes.b[l])


def random_graph(seed, mode="fixed_prediction", steps=None, gamma=1.0, formats=None):
    """A seeded random graph on a C x H x W input: convolutions (strides, padding), average and
    max pools, residual adds around convolutions and dense layers, flatten, dense, any
    activation. ``steps`` defaults to the longest path - 1."""
    rng = np.random.default_rng(seed)
    C, H = int(rng.integers(1, 3)), int(rng.integers(5, 8))
    specs = [{"name": "x", "op": "input", "shape": [C, H, H]}]
    shapes = {"x": (C, H, H)}
    cur = "x"

    def node(spec):
        specs.append(spec)
        return spec["name"]

    def act():
        return ACTS[int(rng.integers(len(ACTS)))]

    for k in range(int(rng.integers(1, 4))):
        c, h, _ = shapes[cur]
        kind = rng.choice(["conv", "residual", "avgpool", "maxpool"])
        if kind in ("avgpool", "maxpool") and h >= 3:
            stride = int(rng.integers(1, 3))
            name = node({"name": f"p{k}", "op": kind, "inputs": [cur], "kernel": 2,
                         "stride": stride, "activation": act()})
            shapes[name] = (c, (h - 2) // stride + 1, (h - 2) // stride + 1)
        elif kind == "residual":
            r = node({"name": f"r{k}", "op": "conv2d", "inputs": [cur], "channels": c,
                      "kernel": 3, "padding": 1, "activation": act()})
            shapes[r] = (c, h, h)
            name = node({"name": f"a{k}", "op": "add", "inputs": [r, cur], "activation": act()})
            shapes[name] = (c, h, h)
        else:
            kernel = int(rng.integers(1, min(3, h) + 1))
            stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
            out = (h + 2 * pad - kernel) // stride + 1
            channels = int(rng.integers(1, 4))
            name = node({"name": f"c{k}", "op": "conv2d", "inputs": [cur], "channels": channels,
                         "kernel": kernel, "stride": stride, "padding": pad,
                         "activation": act()})
            shapes[name] = (channels, out, out)
        cur = name
    n = int(np.prod(shapes[cur]))
    cur = node({"name": "flat", "op": "flatten", "inputs": [cur], "activation": act()})
    if rng.random() < 0.5:
        d = node({"name": "d", "op": "dense", "inputs": [cur], "units": n, "activation": act()})
        cur = node({"name": "skip", "op": "add", "inputs": [cur, d], "activation": act()})
    node({"name": "out", "op": "dense", "inputs": [cur], "units": int(rng.integers(1, 4))})
    graph = Graph(specs, init_seed=seed, formats=formats)
    params = {k: v + (rng.normal(0, 0.2, v.shape) if k.startswith("b") else 0)
              for k, v in graph.params.items()}
    T = graph.depth - 1 if steps is None else steps
    return Graph(specs, params, formats=formats,
                 pc=PCSettings(mode=mode, inference_steps=T, inference_rate=gamma,
                               learning_rate=2.0 ** -4)), rng


def torch_gradients(graph, x, y):
    """dLoss/dparam by torch autograd, Loss = 1/2 ||y - out||^2, the graph written in torch."""
    torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install "
                                                "'pchw[torch]')")
    F = torch.nn.functional
    params = {k: torch.tensor(v, requires_grad=True) for k, v in graph.params.items()}
    acts = {"identity": lambda v: v, "relu": torch.relu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid, "hardtanh": F.hardtanh}
    phi = []
    for i, n in enumerate(graph.nodes):
        ps = [phi[p] for p in graph.parents[i]]
        if n.op == "input":
            v = torch.tensor(x).reshape(len(x), *n.shape)
        elif n.op == "dense":
            v = ps[0] @ params[f"W{n.name}"].T + params[f"b{n.name}"]
        elif n.op == "conv2d":
            v = F.conv2d(ps[0], params[f"W{n.name}"], params[f"b{n.name}"], stride=n.stride,
                         padding=n.padding)
        elif n.op == "avgpool":
            v = F.avg_pool2d(ps[0], n.kernel, n.stride)
        elif n.op == "maxpool":
            v = F.max_pool2d(ps[0], n.kernel, n.stride)
        elif n.op == "flatten":
            v = ps[0].reshape(len(x), -1)
        else:
            v = sum(ps)
        a = n.activation
        phi.append(F.leaky_relu(v, 2.0 ** -a.shift) if a.name == "leaky_relu"
                   else acts[a.name](v))
    (0.5 * ((torch.tensor(y) - phi[-1]) ** 2).sum()).backward()
    return {k: p.grad.numpy() for k, p in params.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10 ** 6))
def test_fixed_prediction_on_graphs_equals_autograd(seed):
    """gamma = 1 and T = longest path - 1 in fixed_prediction mode: the float64 PC update of
    every parameter is -eta times backprop's gradient (torch autograd), on random graphs with
    convolutions, pools and skip connections."""
    graph, rng = random_graph(seed)
    x = rng.normal(0, 1, (2, graph.n_inputs))
    y = rng.normal(0, 1, (2, graph.n_outputs))
    grads = torch_gradients(graph, x, y)
    result = FloatGraphModel(graph).learn(x, y)
    eta = graph.pc.learning_rate
    for k, i in enumerate(graph.weighted):
        name = graph.nodes[i].name
        np.testing.assert_allclose(result.dW[k], -eta * grads[f"W{name}"], rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(result.db[k], -eta * grads[f"b{name}"], rtol=1e-9,
                                   atol=1e-12)


def test_fewer_steps_than_the_longest_path_fall_short():
    """T = longest path - 2 leaves an update short of backprop's: the errors need the longest
    path - 1 steps to reach the first node on it."""
    graph, rng = random_graph(3)
    assert graph.depth >= 3
    short = Graph([spec for spec in graph._specs], graph.params,
                  pc=PCSettings(mode="fixed_prediction", inference_steps=graph.depth - 2,
                                inference_rate=1.0, learning_rate=graph.pc.learning_rate))
    x, y = rng.normal(0, 1, (1, graph.n_inputs)), rng.normal(0, 1, (1, graph.n_outputs))
    full, part = FloatGraphModel(graph).learn(x, y).dW, FloatGraphModel(short).learn(x, y).dW
    assert all(np.any(u != 0) for u in full)
    assert not all(np.allclose(u, v) for u, v in zip(full, part))


def test_fixed_point_graph_tracks_float_with_wide_formats():
    """The fixed-point graph model (wide formats, standard PC) follows the float64 one."""
    wide = Formats(Format(30, 20), Format(28, 20))
    graph, rng = random_graph(11, mode="standard", steps=6, gamma=0.25, formats=wide)
    assert {n.op for n in graph.nodes} >= {"conv2d", "flatten", "dense"}
    fixed, floating = FixedGraphModel(graph), FloatGraphModel(graph)
    x, y = rng.uniform(-1, 1, (4, graph.n_inputs)), rng.uniform(-1, 1, (4, graph.n_outputs))
    np.testing.assert_allclose(fixed.infer(x), floating.infer(x), atol=1e-3)
    for i in range(4):
        a, b = fixed.learn(x[i:i + 1], y[i:i + 1]), floating.learn(x[i:i + 1], y[i:i + 1])
        for u, v in zip(a.dW, b.dW):
            np.testing.assert_allclose(u, v, atol=2e-3)
    assert fixed.saturations.saturated() == 0


def test_convolution_is_one_exact_sum_and_one_narrowing():
    """A fixed-point conv's prediction, message and weight update, against loops over positions
    with Python integers (one requantise each, docs/fixed-point.md)."""
    from pchw.fixedpoint import LayerShifts
    specs = [{"name": "x", "op": "input", "shape": [2, 5, 5]},
             {"name": "p", "op": "maxpool", "inputs": ["x"], "kernel": 1},   # hidden: a message
             {"name": "c", "op": "conv2d", "inputs": ["p"], "channels": 3, "kernel": 3,
              "stride": 2, "padding": 1, "activation": "relu"},
             {"name": "f", "op": "flatten", "inputs": ["c"]},
             {"name": "out", "op": "dense", "inputs": ["f"], "units": 2}]
    fmts = Formats(Format(10, 6), Format(9, 6))
    graph = Graph(specs, init_seed=5, formats=fmts,
                  pc=PCSettings(mode="fixed_prediction", inference_steps=2,
                                learning_rate=2.0 ** -3))
    model = FixedGraphModel(graph)
    rng = np.random.default_rng(0)
    phi = rng.integers(-200, 200, (1, 2, 5, 5))
    W, b = model.W[2], model.b[2]
    sh = LayerShifts.of(graph, 2)

    def rq(acc, s, fmt):
        v = (acc + (1 << (s - 1))) >> s if s > 0 else acc << -s
        return min(max(v, fmt.min), fmt.max)
    pad = np.pad(phi, ((0, 0), (0, 0), (1, 1), (1, 1)))
    mu = model._mu(2, [None, phi])
    for k in range(3):
        for i in range(3):
            for j in range(3):
                acc = int(sum(int(W[k, c, u, v]) * int(pad[0, c, 2 * i + u, 2 * j + v])
                              for c in range(2) for u in range(3) for v in range(3)))
                assert mu[0, k, i, j] == rq(acc + (int(b[k]) << 6), sh.mu, Format(10, 6))
    eps = rng.integers(-300, 300, (1, 3, 3, 3))
    [(p, msg)] = model._messages(2, eps, [None, phi])
    assert p == 1
    # the message to the padded input, position by position, then cropped
    for c in range(2):
        for r in range(5):
            for s in range(5):
                acc = sum(int(W[k, c, r + 1 - 2 * i, s + 1 - 2 * j]) * int(eps[0, k, i, j])
                          for k in range(3) for i in range(3) for j in range(3)
                          if 0 <= r + 1 - 2 * i < 3 and 0 <= s + 1 - 2 * j < 3)
                assert msg[0, c, r, s] == rq(acc, sh.message, Format(10, 6))
    _, _, dw, _ = model._update(2, eps, [None, phi])
    for k in range(3):
        for c in range(2):
            for u in range(3):
                for v in range(3):
                    acc = sum(int(eps[0, k, i, j]) * int(pad[0, c, 2 * i + u, 2 * j + v])
                              for i in range(3) for j in range(3))
                    assert dw[k, c, u, v] == rq(acc, sh.weight, Format(9, 6))


def test_im2col_and_col2im_are_transposes():
    rng = np.random.default_rng(1)
    x = rng.integers(-9, 9, (2, 3, 6, 5))
    y = rng.integers(-9, 9, (2 * 3 * 3, 3 * 3 * 2))      # (B H' W', C kh kw)
    cols = im2col(x, 3, 2, 2, 1)
    assert cols.shape == y.shape
    assert np.sum(cols * y) == np.sum(x * col2im(y, (3, 6, 5), 3, 2, 2, 1))


def test_make_model_and_cli_take_a_graph(tmp_path, capsys):
    from pchw.cli import main
    graph, rng = random_graph(5)
    assert isinstance(make_model(graph, True), FixedGraphModel)
    graph.save(tmp_path / "g")
    x = rng.normal(0, 1, (3, graph.n_inputs))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", rng.normal(0, 1, (3, graph.n_outputs)))
    assert main(["golden", str(tmp_path / "g"), "--input", str(tmp_path / "x.npy"), "--target",
                 str(tmp_path / "y.npy"), "--learn", "--fixed", "--trace", "--batch-size", "2",
                 "--out", str(tmp_path / "r.npz")]) == 0
    out = np.load(tmp_path / "r.npz")
    assert out["output"].shape == (3, graph.n_outputs)
    assert out["Wout"].shape == graph.params["Wout"].shape and "dWout" in out
    steps = graph.pc.inference_steps + 1                 # a shorter last batch, too
    assert out["trace_xflat"].shape == (3, steps, graph.nodes[graph.index["flat"]].size)
    assert out["trace_epsout"].shape == (3, steps, graph.n_outputs)


def test_train_and_eval_a_graph(tmp_path, capsys):
    """A residual MLP on iris through `pchw train` (fixed point, and the backprop baseline)
    and `pchw eval`."""
    from pchw.cli import main
    specs = [{"name": "x", "op": "input", "shape": [4]},
             {"name": "h1", "op": "dense", "inputs": ["x"], "units": 8, "activation": "relu"},
             {"name": "h2", "op": "dense", "inputs": ["h1"], "units": 8, "activation": "tanh"},
             {"name": "sum", "op": "add", "inputs": ["h1", "h2"]},
             {"name": "out", "op": "dense", "inputs": ["sum"], "units": 3}]
    graph = Graph(specs, init_seed=1, dataset="iris",
                  pc=PCSettings(mode="fixed_prediction", inference_steps=2, inference_rate=1.0))
    graph.save(tmp_path / "res")
    assert main(["train", str(tmp_path / "res"), "--epochs", "2", "-o",
                 str(tmp_path / "trained")]) == 0
    out = capsys.readouterr().out
    assert "backprop float64" in out and "PC fixed_prediction (fixed-point)" in out
    assert main(["eval", str(tmp_path / "trained"), "--fixed"]) == 0
    assert "fixed-point inference: train accuracy" in capsys.readouterr().out


def test_pools_flatten_and_add_narrow_once():
    """The fixed-point pools, flatten and add and their messages, against loops with Python
    integers (docs/fixed-point.md, Graphs), with formats that make every shift direction."""
    q = {"value": {"width": 10, "frac": 4}}
    specs = [{"name": "x", "op": "input", "shape": [2, 5, 5]},
             {"name": "m0", "op": "maxpool", "inputs": ["x"], "kernel": 1,
              "value": {"width": 12, "frac": 6}},
             {"name": "p1", "op": "maxpool", "inputs": ["m0"], "kernel": 2, "stride": 1, **q},
             {"name": "a1", "op": "avgpool", "inputs": ["p1"], "kernel": 2,
              "value": {"width": 12, "frac": 7}},
             {"name": "flat", "op": "flatten", "inputs": ["a1"],
              "value": {"width": 9, "frac": 5}},
             {"name": "d", "op": "dense", "inputs": ["flat"], "units": 8},
             {"name": "sum", "op": "add", "inputs": ["flat", "d"],
              "value": {"width": 11, "frac": 3}},
             {"name": "out", "op": "dense", "inputs": ["sum"], "units": 3}]
    graph = Graph(specs, init_seed=2)
    model = FixedGraphModel(graph)
    v = [graph.value_format(i) for i in range(len(specs))]
    rng = np.random.default_rng(3)

    def rq(acc, s, fmt):
        acc = int(acc)
        r = (acc + (1 << (s - 1))) >> s if s > 0 else acc << -s
        return min(max(r, fmt.min), fmt.max)

    def raw(i, shape):
        return rng.integers(v[i].min, v[i].max + 1, (1, *shape))
    phi = [None, raw(1, (2, 5, 5)), raw(2, (2, 4, 4)), raw(3, (2, 2, 2)), raw(4, (8,)),
           raw(5, (8,))]
    # maxpool 2x2, stride 1: mu, and the message to the first largest of each window
    mu = model._mu(2, phi)
    eps = raw(2, (2, 4, 4))
    [(p, msg)] = model._messages(2, eps, phi)
    acc = np.zeros((2, 5, 5), dtype=object)
    for c in range(2):
        for i in range(4):
            for j in range(4):
                window = [(phi[1][0, c, i + u, j + w], u, w) for u in range(2) for w in range(2)]
                best = max(window, key=lambda t: t[0])     # max keeps the first on a tie
                assert mu[0, c, i, j] == rq(best[0], v[1].frac - v[2].frac, v[2])
                acc[c, i + best[1], j + best[2]] += int(eps[0, c, i, j])
    assert p == 1 and msg[0].tolist() == [[[rq(a, v[2].frac - v[1].frac, v[1]) for a in row]
                                           for row in ch] for ch in acc]
    # avgpool 2x2, stride 2: 1/4 is a shift of 2
    mu = model._mu(3, phi)
    eps = raw(3, (2, 2, 2))
    [(_, msg)] = model._messages(3, eps, phi)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                total = sum(int(phi[2][0, c, 2 * i + u, 2 * j + w]) for u in range(2)
                            for w in range(2))
                assert mu[0, c, i, j] == rq(total, 2 + v[2].frac - v[3].frac, v[3])
                for u in range(2):
                    for w in range(2):
                        assert msg[0, c, 2 * i + u, 2 * j + w] == rq(
                            eps[0, c, i, j], 2 + v[3].frac - v[2].frac, v[2])
    # flatten, and add with two parents of other formats
    assert model._mu(4, phi)[0].tolist() == [rq(a, v[3].frac - v[4].frac, v[4])
                                             for a in phi[3].reshape(-1)]
    F = max(v[4].frac, v[5].frac)
    assert model._mu(6, phi)[0].tolist() == [
        rq((int(a) << (F - v[4].frac)) + (int(b) << (F - v[5].frac)), F - v[6].frac, v[6])
        for a, b in zip(phi[4][0], phi[5][0])]
    eps = raw(6, (8,))
    sent = dict(model._messages(6, eps, phi))
    for p in (4, 5):
        assert sent[p][0].tolist() == [rq(e, v[6].frac - v[p].frac, v[p]) for e in eps[0]]
    # node flat has two children (d and sum): their messages add, then saturate
    a, b = np.array([[v[4].max, -3]]), np.array([[5, v[4].min + 1]])
    assert model.arith.message_sum(4, [a, b]).tolist() == [[v[4].max, v[4].min]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10 ** 6))
def test_graph_backprop_equals_autograd(seed):
    """pchw.backprop.graph_gradients (what `pchw train` compares PC with) is torch's."""
    from pchw.backprop import graph_gradients
    graph, rng = random_graph(seed)
    x, y = rng.normal(0, 1, (3, graph.n_inputs)), rng.normal(0, 1, (3, graph.n_outputs))
    expected = torch_gradients(graph, x, y)
    grads, _ = graph_gradients(graph, graph.params, x, y)
    for key, g in expected.items():
        np.testing.assert_allclose(grads[key], g, rtol=1e-9, atol=1e-12)


def test_relaxation_approaches_backprop_on_a_cnn(capsys):
    """Cosine(PC update, -gradient) against T on a small CNN with a skip connection
    (docs/pc-math.md, Graphs): fixed_prediction reaches backprop at T = longest path - 1 with
    gamma = 1, and converges to it with gamma = 2^-3; standard PC comes close."""
    from pchw.quality import gradient_agreement
    specs = [{"name": "image", "op": "input", "shape": [1, 8, 8]},
             {"name": "conv", "op": "conv2d", "inputs": ["image"], "channels": 4, "kernel": 3,
              "padding": 1, "activation": "relu"},
             {"name": "pool", "op": "avgpool", "inputs": ["conv"], "kernel": 2},
             {"name": "flat", "op": "flatten", "inputs": ["pool"]},
             {"name": "h", "op": "dense", "inputs": ["flat"], "units": 64, "activation": "relu"},
             {"name": "skip", "op": "add", "inputs": ["flat", "h"]},
             {"name": "out", "op": "dense", "inputs": ["skip"], "units": 10}]
    graph = Graph(specs, init_seed=5)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (1, 64))
    y = FloatGraphModel(graph).infer(x) + 0.1 * rng.normal(size=(1, 10))
    steps = (0, 1, 2, 4, 8, 16, 32, 64, 128)
    rows = {}
    for mode, gamma in (("fixed_prediction", 1.0), ("fixed_prediction", 2.0 ** -3),
                        ("standard", 2.0 ** -3)):
        net = graph.with_settings(mode=mode, inference_rate=gamma)
        rows[mode, gamma] = gradient_agreement(net, x, y, steps)
    with capsys.disabled():
        print(f"\ncosine(PC update, -dLoss/dtheta), 1x8x8 conv 4 -> avgpool -> dense 64 + skip "
              f"-> 10 (longest path {graph.depth}):")
        print("  mode, gamma              " + " ".join(f"T={t:<5d}" for t in steps))
        for (mode, gamma), cos in rows.items():
            print(f"  {mode:16s} {gamma:<7g} " + " ".join(f"{c:.4f} " for c in cos))
    exact = rows["fixed_prediction", 1.0]
    assert all(c == pytest.approx(1.0, abs=1e-12) for t, c in zip(steps, exact)
               if t >= graph.depth - 1)
    assert exact[steps.index(2)] < 0.9999                 # T = 2 < longest path - 1 = 4
    assert rows["fixed_prediction", 2.0 ** -3][-1] > 0.9999
    assert rows["standard", 2.0 ** -3][-1] > 0.9
