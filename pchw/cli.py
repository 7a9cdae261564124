"""The ``pchw`` command line. Every user error is one line on stderr and a non-zero exit."""

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .datasets import DATASETS, load_dataset
from .defaults import DEFAULT_MODE, with_defaults
from .errors import PchwError
from .golden import make_model
from .graph import hardware_network
from .network import ACTIVATIONS, MODES, Network, load
from .faults import BUILD_OPTION_HELP as FAULTS_HELP
from .progress import Progress, say
from .latency import DEFAULT_BAUD as SERIAL_BAUD
from .latency import MAX_BAUD
from .serve import SIM_BAUD, SIM_CLOCK_HZ
from .order import epoch_order as chip_order
from .train import accuracy, epoch_order, train_backprop, train_pc

__all__ = ["main"]


_progress = say       # every message and progress line goes through pchw.progress


def _warning(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _arithmetic(args):
    return "fixed-point" if args.fixed else "float64"


def _dataset_for(network, args):
    name = args.dataset or network.dataset
    if not name:
        raise PchwError("no dataset: pass --dataset NAME or set network.dataset in network.toml "
                        f"(known: {', '.join(DATASETS)})")
    data = load_dataset(name, seed=args.split_seed)
    if data.n_features != network.n_inputs or data.n_classes != network.n_outputs:
        raise PchwError(f"dataset {name} has {data.n_features} inputs and {data.n_classes} "
                        f"classes, but the network is {network.n_inputs} -> "
                        f"{network.n_outputs}")
    return data


def _load_array(path, what, width):
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PchwError(f"{path}: no such file")
    except (OSError, ValueError) as error:
        raise PchwError(f"{path}: cannot read as .npy: {error}")
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.number):
        raise PchwError(f"{path}: {what} must be a numeric array")
    if np.iscomplexobj(a):
        raise PchwError(f"{path}: {what} is complex ({a.dtype}); give real numbers")
    a = np.atleast_2d(a).astype(np.float64)
    if a.ndim != 2 or a.shape[1] != width:
        raise PchwError(f"{path}: {what} has shape {a.shape}, expected (N, {width})")
    if not np.all(np.isfinite(a)):
        raise PchwError(f"{path}: {what} contains NaN or infinity")
    return a


def _probe_folder(folder, path):
    """Fail unless a file can be created in the existing folder ``folder`` (for ``path``)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise PchwError(f"{path}: cannot create files in {folder} ({error.strerror or error})")


def _output_file(path, option):
    """``path`` checked, before any work, to be a file that can be written: its folder exists
    and is writable, and it is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise PchwError(f"{option} {path}: is a folder, not a file")
    if not path.parent.is_dir():
        raise PchwError(f"{option} {path}: no such folder {path.parent}")
    _probe_folder(path.parent, path)
    return path


def _output_folder(path, option):
    """``path`` checked, before any work, to be a folder that exists or can be created, and in
    which files can be written (nothing is created)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PchwError(f"{option} {path}: exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PchwError(f"{option} {path}: {existing} is not a folder")
    _probe_folder(existing, path)
    return path


VERILOG_KEYWORDS = frozenset("""
    always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config
    deassign default defparam design disable edge else end endcase endconfig endfunction
    endgenerate endmodule endprimitive endspecify endtable endtask event for force forever fork
    function generate genvar highz0 highz1 if ifnone incdir include initial inout input instance
    integer join large liblist library localparam macromodule medium module nand negedge nmos
    nor noshowcancelled not notif0 notif1 or output parameter pmos posedge primitive pull0 pull1
    pulldown pullup pulsestyle_onevent pulsestyle_ondetect rcmos real realtime reg release
    repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small specify
    specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0
    tri1 triand trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor
    xnor xor""".split())       # IEEE 1364-2005 reserved words


def _verilog_name(name):
    """``name`` if it is a plain Verilog identifier that is not a reserved word."""
    import re
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) or name in VERILOG_KEYWORDS:
        raise PchwError(f"--top {name!r}: not a Verilog module name (letters, digits, _ and $, "
                        "not starting with a digit or $, and not a Verilog keyword)")
    return name


def _saving(path, write, *args, **kwargs):
    """``write(*args, **kwargs)``, which writes ``path``, with an operating system error as a
    one-line message (the path was checked before the work began, but a disk can fill up)."""
    try:
        return write(*args, **kwargs)
    except OSError as error:
        raise PchwError(f"{path}: cannot write: {error.strerror or error}")


def _lanes_arg(text):
    if text == "auto":
        return text
    try:
        lanes = [int(v) for v in text.split(",")]
    except ValueError:
        lanes = []
    if not lanes or min(lanes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or positive integers "
                                         "separated by commas (one per weight layer)")
    return lanes


def cmd_info(args):
    network = load(args.model)
    print(network.summary())
    print(f"hash       {network.description_hash()[:16]}")


def cmd_init(args):
    try:
        layers = [int(n) for n in args.layers.split(",") if n.strip()]
    except ValueError:
        raise PchwError(f"--layers {args.layers!r}: expected layer sizes separated by commas, "
                        "e.g. 64,32,10")
    folder = _output_folder(args.model, "MODEL")
    existing = [f for f in ("network.toml", "weights.npz") if (folder / f).exists()]
    if existing and not args.force:
        raise PchwError(f"{folder} already holds a model ({' and '.join(existing)}); pass "
                        "--force to overwrite it")
    activations = args.activations.split(",") if args.activations else \
        ["identity"] + ["relu"] * (len(layers) - 2)
    network = Network(layers, activations, init_seed=args.seed, name=Path(args.model).name,
                      dataset=args.dataset, source="pchw init")
    network = with_defaults(network, args.mode)
    _saving(args.model, network.save, args.model)
    print(f"wrote {args.model}/network.toml and weights.npz (random initialisation, seed "
          f"{args.seed}); edit network.toml, then `pchw train {args.model}`")


def cmd_train(args):
    network = load(args.model)
    if args.init is not None:
        params = network.init_params(args.init)
        network = network.with_params(*params) if isinstance(params, tuple) else \
            network.with_params(params)
    if args.mode and args.mode != network.pc.mode:
        # The model's T, gamma and value format were chosen for its own mode: derive them for
        # the other mode from the network, as pchw init does (pchw.defaults, docs/pc-math.md);
        # eta keeps the model's ratio to its own mode's default.
        from .defaults import LEARNING_RATE, default_formats, default_settings
        derived = default_settings(network, args.mode)
        chain = hasattr(network, "layers")          # a graph's own mode may not be derivable
        own = default_settings(network, network.pc.mode).learning_rate if chain \
            else LEARNING_RATE
        eta = network.pc.learning_rate * derived.learning_rate / own
        value = network.formats.value
        if chain and value == default_formats(network, network.pc.mode).value:  # not the user's
            value = default_formats(network, args.mode).value
            network = network.with_formats(replace(network.formats, value=value))
        network = network.with_settings(mode=args.mode, inference_steps=derived.inference_steps,
                                        inference_rate=derived.inference_rate,
                                        learning_rate=eta)
        _progress(f"--mode {args.mode}: T = {derived.inference_steps}, gamma = "
                  f"{derived.inference_rate:g}, eta = {eta:g}, values {value}, derived from the "
                  "network (pchw.defaults; the model's own settings are for its mode)")
    if args.output:
        _output_folder(args.output, "-o")
    data = _dataset_for(network, args)
    _progress(f"{data.describe()}; training {args.epochs} epoch(s), batch size {args.batch_size}")
    results = {}

    def run(label, train):
        start = time.perf_counter()
        bar = Progress(f"{label}: samples of the epoch", quiet_off_terminal=True)

        def progress(epoch, acc):
            bar.close()
            _progress(f"  {label}: epoch {epoch + 1}/{args.epochs}  test accuracy {acc:6.2%}  "
                      f"({time.perf_counter() - start:.1f} s)")
        with bar:
            return train(progress, bar)

    if not args.no_backprop:
        _, history = run("backprop (float64)", lambda p, s: train_backprop(
            network, data, args.epochs, args.batch_size, seed=args.seed, progress=p, step=s))
        results["backprop float64"] = history[-1] if history else None
    label = f"PC {network.pc.mode} ({_arithmetic(args)})"
    model, history = run(label, lambda p, s: train_pc(network, data, args.epochs,
                                                       args.batch_size, fixed=args.fixed,
                                                       seed=args.seed, progress=p,
                                                       warn=_warning, step=s))
    results[label] = history[-1] if history else accuracy(model.predict, data.x_test,
                                                          data.y_test)
    for name, acc in results.items():
        print(f"{name:40s} test accuracy {acc:.2%}")
    if args.fixed:
        print(f"saturations: {model.saturations}")
    if args.output:
        _saving(args.output, model.to_network().save, args.output)
        print(f"saved PC-trained parameters to {args.output}")
    else:
        print("not saved (use -o DIR to save the trained model)")


def cmd_eval(args):
    network = load(args.model)
    data = _dataset_for(network, args)
    model = make_model(network, args.fixed)
    train_acc = accuracy(model.predict, data.x_train, data.y_train)
    test_acc = accuracy(model.predict, data.x_test, data.y_test)
    print(f"{data.describe()}")
    print(f"{_arithmetic(args)} inference: train accuracy {train_acc:.2%}, "
          f"test accuracy {test_acc:.2%}")
    if args.fixed:
        print(f"saturations: {model.saturations}")


def cmd_golden(args):
    network = load(args.model)
    out = Path(args.out)
    if out.suffix != ".npz":             # numpy.savez would add it: say the file's real name
        out = out.with_name(out.name + ".npz")
    out = _output_file(out, "--out")
    inputs = _load_array(args.input, "input", network.n_inputs)
    model = make_model(network, args.fixed)
    result = {}
    if args.learn:
        if not args.target:
            raise PchwError("--learn needs --target Y.npy")
        targets = _load_array(args.target, "target", network.n_outputs)
        if len(targets) != len(inputs):
            raise PchwError(f"{args.target}: {len(targets)} targets for {len(inputs)} inputs")
        before = model.float_params()
        outputs, traces = [], []
        for i in range(0, len(inputs), args.batch_size):
            step = model.learn(inputs[i:i + args.batch_size], targets[i:i + args.batch_size],
                               trace=args.trace)
            outputs.append(step.output)
            traces.append(step.trace)
        result["output"] = np.concatenate(outputs)
        after = model.float_params()
        graph = isinstance(after, dict)         # a graph's: {"W<node>": ..., "b<node>": ...}
        if not graph:
            after = {f"{kind}{l}": p for kind, ps in zip("Wb", after)
                     for l, p in enumerate(ps, start=1)}
            before = {f"{kind}{l}": p for kind, ps in zip("Wb", before)
                      for l, p in enumerate(ps, start=1)}
        for key in after:
            result[key], result[f"d{key}"] = after[key], after[key] - before[key]
        if args.trace:
            a = model.arith
            names = [n.name for n in network.nodes] if graph else list(range(network.L + 1))
            for key in ("x", "mu", "eps"):
                for l in range(0 if key == "x" else 1, len(names)):
                    # each batch's (steps, batch, n_l) -> (samples, steps, n_l); a graph
                    # node's values flat; the last batch may be shorter
                    per_batch = [np.stack([a.value_to_float(l, getattr(s, key)[l])
                                           for s in trace]) for trace in traces]
                    result[f"trace_{key}{names[l]}"] = np.concatenate(
                        [t.reshape(*t.shape[:2], -1).transpose(1, 0, 2) for t in per_batch])
    else:
        if args.target or args.trace:
            raise PchwError("--target and --trace need --learn")
        result["output"] = model.infer(inputs)
    _saving(out, np.savez, out, **result)
    sats = model.saturations.as_dict()
    print(f"wrote {out}: {', '.join(sorted(result))}")
    if args.fixed:
        print(f"saturations: {json.dumps(sats) if sats else 'none'}")


def cmd_verilog(args):
    from . import verilog
    network = hardware_network(load(args.model), "verilog")
    if args.top is not None:
        _verilog_name(args.top)
    _output_folder(Path(args.output).parent, "-o")
    start = time.perf_counter()
    _progress(f"elaborating {verilog.module_name(network)} ({' -> '.join(map(str, network.layers))})")
    v_path, m_path = _saving(args.output, verilog.write, network, args.output, args.top,
                             args.faults, args.data_memory)
    info = verilog.manifest(network, args.top, args.faults, args.data_memory)
    cycles = info["latency_cycles"]["commands"]
    print(f"wrote {v_path} and {m_path} in {time.perf_counter() - start:.1f} s")
    print(f"latency (cycles, last command byte -> first reply byte): INFER {cycles['INFER']}, "
          f"LEARN {cycles['LEARN']}")


def cmd_sim(args):
    try:
        from .sim import network as simnet
        from .sim import runner
    except ImportError as missing:
        raise PchwError(f"pchw sim needs cocotb ({missing}); pip install 'pchw[sim]'")
    network = hardware_network(load(args.model), "sim")
    for name in ("gaps", "backpressure"):
        if not 0 <= getattr(args, name) < 1:
            raise PchwError(f"--{name} {getattr(args, name)}: a probability in [0, 1)")
    if args.waves:
        _output_file(args.waves, "--waves")
    elif args.waves is not None:
        _probe_folder(Path.cwd(), Path.cwd())
    if args.random:
        commands = simnet.random_commands(network, args.samples, args.learn, seed=args.seed)
        source = f"random inputs{' and targets' if args.learn else ''} (seed {args.seed})"
    else:
        if not (args.dataset or network.dataset):
            raise PchwError(f"{args.model} names no dataset: pass --dataset NAME (known: "
                            f"{', '.join(DATASETS)}) or --random (seeded random inputs and "
                            "targets)")
        data = _dataset_for(network, args)
        commands = simnet.dataset_commands(network, data, args.samples, args.learn)
        source = f"the {data.name} training split"
    task = "LEARN" if args.learn else "INFER"
    _progress(f"simulating {args.samples} {task} command(s) from {source} on "
              f"{args.simulator} (the first build of a design takes a while)")
    start = time.perf_counter()
    # Quiet by default: the tools' output goes to a log file, kept (and named) on failure.
    log = None if args.verbose else \
        Path(tempfile.gettempdir()) / f"pchw-sim-{network.name or 'model'}-{os.getpid()}.log"
    status = None if args.verbose else Progress("commands answered")
    try:
        summary = simnet.run(network, args.simulator, commands, waves=args.waves is not None,
                             gaps=args.gaps, backpressure=args.backpressure, log_file=log,
                             progress=status)
    except runner.SimulationFailed as failure:
        if status:
            status.close()
        summary = getattr(failure, "summary", None)
        if summary:
            _print_sim_summary(network, summary, time.perf_counter() - start)
        where = f" (the tools' output: {log})" if log and log.exists() else ""
        raise PchwError(f"simulation failed: {str(failure).splitlines()[-1].strip()}{where}")
    if status:
        status.close()
    if log:
        log.unlink(missing_ok=True)
    _print_sim_summary(network, summary, time.perf_counter() - start)
    if args.waves is not None:
        import shutil
        found = sorted(Path(summary["run_dir"]).glob("*.vcd")) + \
            sorted(Path(summary["run_dir"]).glob("*.fst"))
        if not found:
            raise PchwError(f"no waveform file in {summary['run_dir']}")
        target = Path(args.waves or found[0].name)
        _saving(target, shutil.copyfile, found[0], target)
        print(f"waveforms: {target}")


def _print_sim_summary(network, summary, seconds):
    from .latency import command_latency
    from .protocol import Opcode
    lat = summary["latency_cycles"]
    print(f"commands {summary['commands']}, replies {summary['replies']}, "
          f"mismatches with the golden model {summary['mismatches']}")
    for name in ("INFER", "LEARN"):
        stated = command_latency(network, Opcode[name])
        seen = lat.get(name)
        print(f"cycles per {name.lower():5s} command (last byte in -> first reply byte): "
              f"{'/'.join(map(str, seen)) if seen else 'not measured'} (formula {stated})")
    rate = summary["simulated_cycles"] / max(summary["seconds"], 1e-9)
    print(f"simulated {summary['simulated_cycles']} cycles in {summary['seconds']:.2f} s of "
          f"testbench time ({rate:,.0f} cycles/s); {seconds:.1f} s in all with the build")


DATA_MEMORY_HELP = ("a dataset memory of N samples (LOAD_DATA, TRAIN, EVAL: on-chip "
                    "epochs without the host link; docs/protocol.md)")


def _data_memory_arg(text):
    from .protocol import MAX_DATASET
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_DATASET:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of samples in 0..{MAX_DATASET}")
    return value


def _open_device(args, network):
    from .host import Device, GoldenTransport, SerialTransport, SimulationTransport
    if args.golden:
        return Device(GoldenTransport(network, dataset=args.data_memory), network,
                      timeout=args.timeout)
    from .gateware.uart import check_baud, divisor_for
    if args.sim:
        from .gateware.board import BoardTop
        baud = SIM_BAUD if args.baud is None else args.baud
        try:
            divisor_for(SIM_CLOCK_HZ, baud)
        except ValueError as error:
            raise PchwError(f"--baud {baud}: {error}") from None
        top = BoardTop(network, clock_hz=SIM_CLOCK_HZ, baud=baud, dataset=args.data_memory)
        transport = SimulationTransport(top, SIM_CLOCK_HZ, top.divisor)
        return Device(transport, network, timeout=args.timeout)
    if not args.port:
        raise PchwError("give --port /dev/ttyUSBx (the board's serial port), or --sim to run "
                        "on the simulated board, or --golden for the golden device model")
    baud = SERIAL_BAUD if args.baud is None else args.baud
    try:
        check_baud(baud)
    except ValueError as error:
        raise PchwError(f"--baud {baud}: {error}") from None
    return Device(SerialTransport(args.port, baud), network, timeout=args.timeout)


def cmd_run(args):
    from .golden import FixedModel
    network = hardware_network(load(args.model), "run")
    data = _dataset_for(network, args)
    device = _open_device(args, network)
    version, network_id = device.identify()
    print(f"device: protocol {version}, network {network_id.hex()} (matches {args.model})")
    golden = FixedModel(network)
    limit = args.samples

    # Streamed: commands go out ahead of their replies within the window the board reports
    # (docs/protocol.md); --no-stream waits for each reply before the next command.
    def one_at_a_time(send):
        def run(*arrays, progress):
            outs = []
            for row in zip(*arrays):
                outs.append(send(*row))
                progress(len(outs), len(arrays[0]))
            return np.array(outs)
        return run

    if args.no_stream:
        infer_stream, learn_stream = one_at_a_time(device.infer), one_at_a_time(device.learn)
    else:
        infer_stream, learn_stream = device.infer_many, device.learn_many

    def infer_all(X):
        with Progress("inferences answered", quiet_off_terminal=True) as bar:
            return infer_stream(X, progress=bar)

    def learn_all(X, Y):
        with Progress("learning steps answered", quiet_off_terminal=True) as bar:
            return learn_stream(X, Y, progress=bar)

    def evaluate():
        xs = data.x_test[:limit] if limit else data.x_test
        start = time.perf_counter()
        outs = infer_all(xs)
        rate = len(xs) / (time.perf_counter() - start)
        correct = int(np.sum(np.argmax(outs, axis=1) == data.y_test[:len(xs)]))
        agree = int(np.sum(np.all(outs == golden.infer(xs), axis=1)))
        return correct / len(xs), agree, len(xs), rate

    def learn_on_chip(xs, labels):
        """LOAD_DATA once (the test split too if it fits, for EVAL), then a TRAIN per epoch."""
        x_test = data.x_test[:limit] if limit else data.x_test
        y_test = data.y_test[:len(x_test)]
        both = len(xs) + len(x_test) <= device.capacity
        X, Y = (np.concatenate([xs, x_test]), np.concatenate([labels, y_test])) if both else \
            (xs, labels)
        start = time.perf_counter()
        with Progress("samples loaded", quiet_off_terminal=True) as bar:
            device.load_data(X, Y, progress=bar)
        what = "training and test split" if both else "the training split"
        _progress(f"LOAD_DATA: {len(X)} samples ({what}) in {time.perf_counter() - start:.1f} s")
        targets = data.one_hot(labels)
        for epoch in range(args.epochs):
            start = time.perf_counter()
            device.train(1, len(xs), seed=args.seed, first_epoch=epoch)
            rate = len(xs) / (time.perf_counter() - start)
            for i in chip_order(len(xs), args.seed, epoch):
                golden.learn(xs[i][None], targets[i][None])
            if both:
                correct, confusion = device.evaluate(len(x_test), start=len(xs))
                predicted = np.argmax(golden.infer(x_test), axis=1)
                want = np.zeros_like(confusion)
                np.add.at(want, (y_test, predicted), 1)
                if not np.array_equal(confusion, want):
                    raise PchwError("the device's EVAL confusion counts differ from the golden "
                                    "model's")
                result = (f"EVAL: test accuracy {correct / len(x_test):.2%} on {len(x_test)}, "
                          "confusion counts equal the golden model's")
            else:
                result = f"test accuracy {evaluate()[0]:.2%}"
            _progress(f"epoch {epoch + 1}/{args.epochs}: TRAIN of {len(xs)} samples on the chip "
                      f"({rate:,.1f} samples/s end to end); {result}")

    if args.learn and device.capacity and len(data.x_train[:limit] if limit else data.x_train) \
            <= device.capacity:
        xs = data.x_train[:limit] if limit else data.x_train
        learn_on_chip(xs, data.y_train[:len(xs)])
    elif args.learn:
        if device.capacity:
            _progress(f"the training split does not fit the device's dataset memory of "
                      f"{device.capacity} samples: one LEARN command per sample")
        xs, ys = data.x_train[:limit] if limit else data.x_train, data.one_hot(data.y_train)
        for epoch in range(args.epochs):
            order = epoch_order(len(xs), epoch, args.seed)       # as pchw train orders them
            start = time.perf_counter()
            outs = learn_all(xs[order], ys[order])
            rate = len(xs) / (time.perf_counter() - start)
            agree = sum(int(np.array_equal(out, golden.learn(xs[i][None], ys[i][None]).output[0]))
                        for out, i in zip(outs, order))
            acc, _, n, _ = evaluate()
            _progress(f"epoch {epoch + 1}/{args.epochs}: {len(xs)} on-chip learning steps "
                      f"({rate:,.1f} samples/s), {agree}/{len(xs)} predictions equal the golden "
                      f"model's; test accuracy {acc:.2%} on {n}")
    if args.learn:
        weights, biases = golden.float_params()
        same = all(np.array_equal(a, b) for l in range(1, network.L + 1)
                   for a, b in zip(device.read_params(l), (weights[l - 1], biases[l - 1])))
        print(f"weights after on-chip learning {'equal' if same else 'DIFFER FROM'} the golden "
              "model's, bit for bit")
        if not same:
            raise PchwError("the device's weights differ from the golden model's")
    acc, agree, n, rate = evaluate()
    print(f"test accuracy {acc:.2%} on {n} samples; {agree}/{n} outputs equal the golden "
          f"model's bit for bit; {rate:,.1f} samples/s over the link ("
          + ("one command at a time" if args.no_stream else
             f"streamed within the {device.window}-byte window") + ")")
    if agree != n:
        raise PchwError(f"{n - agree} outputs differ from the golden model")


def cmd_build(args):
    from . import build
    network = hardware_network(load(args.model), "build")
    if args.output:
        _output_folder(args.output, "-o")
    start = time.perf_counter()
    clock_hz = None if args.clock is None else args.clock * 1e6
    result = build.build(network, args.board, args.output, lanes=args.lanes, clock_hz=clock_hz,
                         baud=args.baud, force=args.force, rebuild=args.rebuild,
                         faults=args.faults, dataset=args.data_memory,
                         progress=_progress)
    r = result.report
    for name, v in r["resources"].items():
        print(f"{name:6s} {v['used']:6d} / {v['available']:6d}  ({v['cell']})")
    clock = r["fmax"]
    infer, learn = (r["throughput"]["at_board_clock"][op] for op in ("INFER", "LEARN"))
    if clock is None:
        raise PchwError(f"nextpnr reported no Fmax (see {result.directory})")
    source = f"PLL from the {r['oscillator_hz'] / 1e6:g} MHz oscillator" if r.get("pll") else \
        "the board's oscillator"
    print(f"Fmax   {clock['achieved_mhz']} MHz (design clock {clock['target_mhz']} MHz, "
          f"{source}: timing {'met' if clock['met'] else 'FAILED'})")
    print(f"cycles per inference {r['cycles']['core_infer']}, per learning step "
          f"{r['cycles']['core_learn']} (+ inference); at {r['clock_hz'] / 1e6:g} MHz "
          f"{infer['samples_per_s_compute']:,.0f} inferences/s, "
          f"{learn['samples_per_s_compute']:,.0f} learning steps/s (over the UART at "
          f"{r['baud']} baud: {infer['samples_per_s_uart']:,.0f} and "
          f"{learn['samples_per_s_uart']:,.0f})")
    print(f"wrote {result.bitstream}, {result.directory / 'report.md'} and report.json in "
          f"{time.perf_counter() - start:.0f} s")
    if clock.get("unanalysed_clocks"):
        raise PchwError(f"timing not verified: paths through {', '.join(clock['unanalysed_clocks'])}"
                        f" escape nextpnr's analysis (e.g. a combinational DSP block; see "
                        f"{result.directory / 'report.md'})")
    if not result.timing_met:
        raise PchwError(f"timing failed: Fmax {clock['achieved_mhz']} MHz is below the "
                        f"{clock['target_mhz']} MHz design clock (see "
                        f"{result.directory / 'report.md'}); use fewer lanes or narrower formats")


def cmd_flash(args):
    from . import build
    network = hardware_network(load(args.model), "flash")
    build.flash(network, args.board, args.output, progress=_progress)
    print(f"programmed {args.board}")


def cmd_sweep(args):
    from . import sweep
    network = hardware_network(load(args.model), "sweep")
    grid = sweep.load_grid(args.grid, network)
    if args.no_build:
        grid = grid.without_builds()
    if args.scheduler and args.workers is not None:
        raise PchwError("--workers sizes the embedded LocalCluster; with --scheduler the "
                        "cluster has the workers it has")
    if args.workers is not None and args.workers < 1:
        raise PchwError("--workers must be at least 1")
    output = _output_folder(args.output or Path("build") / "sweep" / (network.name or "model"),
                            "-o")
    start = time.perf_counter()
    result = sweep.run_sweep(network, grid, output, scheduler=args.scheduler,
                             workers=args.workers, progress=_progress)
    print(f"{len(result.rows)} point(s), {result.failed} failed; computed {result.computed} "
          f"task(s), {result.cached} from the cache; {time.perf_counter() - start:.0f} s")
    print(result.files["pareto"].read_text().split("\n## Points that failed")[0].rstrip())
    print(f"wrote {', '.join(str(p) for p in result.files.values())}")


def cmd_report(args):
    from .report import write_report
    if args.output:
        _output_folder(args.output, "-o")
    index = write_report(args.model, args.board, args.output, args.report_epochs,
                         progress=_progress)
    print(f"wrote {index} (figures and report.json beside it)")


def _parser():
    p = argparse.ArgumentParser(
        prog="pchw", description="Compile a neural network into FPGA hardware that runs "
        "predictive coding, with a bit-exact golden model. A MODEL is a folder holding "
        "network.toml and weights.npz (docs/network-format.md).")
    p.add_argument("--version", action="version", version=f"pchw {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_arg(q):
        q.add_argument("model", metavar="MODEL", help="model folder (network.toml, weights.npz)")

    def arithmetic_args(q, default_fixed):
        g = q.add_mutually_exclusive_group()
        g.add_argument("--fixed", dest="fixed", action="store_true", default=default_fixed,
                       help="bit-exact fixed-point golden model (what the hardware computes)"
                       + (" [default]" if default_fixed else ""))
        g.add_argument("--float", dest="fixed", action="store_false",
                       help="float64 golden model" + ("" if default_fixed else " [default]"))

    def dataset_args(q):
        q.add_argument("--dataset", choices=DATASETS, help="dataset (default: the model's "
                       "network.dataset)")
        q.add_argument("--split-seed", type=int, default=0, metavar="N",
                       help="seed of the stratified 80/20 train/test split (default 0)")

    q = sub.add_parser("info", help="show topology, formats, parameter count and memory bits",
                       description="Validate a model and show its topology, PC settings, "
                       "fixed-point formats, parameter count and on-chip memory bits.")
    model_arg(q)
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("init", help="create a new model folder with random weights",
                       description="Create MODEL/network.toml and weights.npz with default "
                       "settings and a uniform random initialisation.")
    model_arg(q)
    q.add_argument("--layers", required=True, help="layer sizes n_0,...,n_L, e.g. 64,32,10")
    q.add_argument("--activations", help=f"f_0,...,f_(L-1) from {', '.join(ACTIVATIONS)} "
                   "(default: identity for the input, relu for hidden layers)")
    q.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                   help=f"PC mode (default {DEFAULT_MODE}); T, gamma and eta follow from the "
                   "mode and the network (docs/pc-math.md, Defaults)")
    q.add_argument("--dataset", choices=DATASETS, help="default dataset of the model")
    q.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    q.add_argument("--force", action="store_true",
                   help="overwrite the model already in MODEL (its weights are lost)")
    q.set_defaults(func=cmd_init)

    q = sub.add_parser("train", help="train with PC learning (and backprop for comparison)",
                       description="Train MODEL with predictive-coding learning in the golden "
                       "model (fixed point by default) and, for comparison, with float64 "
                       "backprop from the same initialisation, sample order and learning rate. "
                       "Prints test accuracy after every epoch.")
    model_arg(q)
    dataset_args(q)
    arithmetic_args(q, default_fixed=True)
    q.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    q.add_argument("--batch-size", type=int, default=1, metavar="B",
                   help="samples per weight update; 1 is online learning as on the chip "
                   "(default 1); larger batches sum the updates")
    q.add_argument("--mode", choices=MODES, help="override the PC mode of network.toml")
    q.add_argument("--init", type=int, metavar="SEED",
                   help="start from a fresh random initialisation instead of weights.npz")
    q.add_argument("--seed", type=int, default=0, help="sample-order seed (default 0)")
    q.add_argument("--no-backprop", action="store_true", help="skip the backprop comparison")
    q.add_argument("-o", "--output", metavar="DIR",
                   help="save the PC-trained model here (may be MODEL itself)")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("eval", help="accuracy of a model on a dataset",
                       description="Inference accuracy of MODEL on the train and test split.")
    model_arg(q)
    dataset_args(q)
    arithmetic_args(q, default_fixed=False)
    q.set_defaults(func=cmd_eval)

    q = sub.add_parser("verilog", help="write the network's Verilog and a JSON manifest",
                       description="Generate the network top (two byte streams carrying the "
                       "command protocol of docs/protocol.md, clock clk, synchronous reset rst) "
                       "as Verilog, and a manifest OUT.json beside it: ports, protocol version, "
                       "network id, formats and command latencies in cycles.")
    model_arg(q)
    q.add_argument("-o", "--output", required=True, metavar="OUT.v", help="Verilog file")
    q.add_argument("--top", metavar="NAME", help="top module name (default pchw_<model name>)")
    q.add_argument("--faults", action="store_true", help=FAULTS_HELP)
    q.add_argument("--data-memory", type=_data_memory_arg, default=0, metavar="N",
                   help=DATA_MEMORY_HELP)
    q.set_defaults(func=cmd_verilog)

    q = sub.add_parser("sim", help="simulate the Verilog against the golden model (cocotb)",
                       description="Generate the Verilog, build it on Icarus Verilog or "
                       "Verilator, and drive it with cocotb: IDENTIFY, then one INFER (or, with "
                       "--learn, LEARN) command per dataset sample, then READ_PARAMS of every "
                       "layer. Every reply is compared byte for byte with the golden device "
                       "model and every latency with pchw/latency.py; exits non-zero on any "
                       "mismatch. Builds are cached under build/rtl/.")
    model_arg(q)
    q.add_argument("--simulator", choices=("icarus", "verilator"), default="verilator",
                   help="simulator (default verilator)")
    q.add_argument("--learn", action="store_true", help="LEARN (on-chip learning) commands")
    q.add_argument("--samples", type=int, default=16, metavar="N",
                   help="samples to send (default 16)")
    inputs = q.add_mutually_exclusive_group()
    inputs.add_argument("--dataset", choices=DATASETS,
                        help="the dataset to take the samples from (default: the model's "
                        "network.dataset)")
    inputs.add_argument("--random", action="store_true",
                        help="seeded random inputs (and targets) in [-1, 1] of the model's "
                        "shape instead of a dataset")
    q.add_argument("--split-seed", type=int, default=0, metavar="N",
                   help="seed of the dataset's train/test split (default 0)")
    q.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of --random (default 0)")
    q.add_argument("--gaps", type=float, default=0.0, metavar="P",
                   help="probability of an idle cycle between input bytes (default 0)")
    q.add_argument("--backpressure", type=float, default=0.0, metavar="P",
                   help="probability the output is not ready in a cycle (default 0)")
    q.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulator's build and run output (default: a progress line; "
                   "the output is kept in a log file named if the simulation fails)")
    q.add_argument("--waves", metavar="FILE", nargs="?", const="", default=None,
                   help="record waveforms into FILE (VCD from Verilator, FST from Icarus; "
                   "default: dump.vcd or <top>.fst in the current folder)")
    q.set_defaults(func=cmd_sim)

    q = sub.add_parser("run", help="run a dataset on a board (or the simulated board)",
                       description="Talk to a device over the command protocol: IDENTIFY checks "
                       "it runs this model, then the test split is inferred on the device (with "
                       "--learn, first --epochs of on-chip PC learning on the training split) "
                       "and compared with the golden model bit for bit. Prints accuracy, "
                       "agreement and samples/s.")
    model_arg(q)
    dataset_args(q)
    where = q.add_mutually_exclusive_group()
    where.add_argument("--port", metavar="DEV", help="serial port of the board, e.g. /dev/ttyUSB1")
    where.add_argument("--sim", action="store_true",
                       help="the simulated board top (amaranth.sim, UART pins included; slow: "
                       "use --samples)")
    where.add_argument("--golden", action="store_true", help="the golden device model")
    q.add_argument("--baud", type=int, metavar="BAUD",
                   help=f"serial baud rate, the board's build's (--port; default "
                   f"{SERIAL_BAUD}, at most {MAX_BAUD}), or the simulated board's UART (--sim; "
                   f"default {SIM_BAUD} at a simulated {SIM_CLOCK_HZ / 1e6:g} MHz clock)")
    q.add_argument("--learn", action="store_true", help="on-chip learning before evaluating "
                   "(with LOAD_DATA and a TRAIN per epoch if the device has a dataset memory "
                   "the training split fits, else a LEARN command per sample)")
    q.add_argument("--data-memory", type=_data_memory_arg, default=0, metavar="N",
                   help=DATA_MEMORY_HELP + " (--sim and --golden; a board's is its build's)")
    q.add_argument("--no-stream", action="store_true",
                   help="wait for each reply before sending the next command (default: stream "
                   "commands within the stream window the device reports; docs/protocol.md)")
    q.add_argument("--epochs", type=int, default=1, help="learning epochs (default 1)")
    q.add_argument("--seed", type=int, default=0, help="sample-order seed (default 0)")
    q.add_argument("--samples", type=int, default=0, metavar="N",
                   help="use only the first N samples of each split (default all)")
    q.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds to wait for a reply (simulated seconds with --sim; default 2)")
    q.set_defaults(func=cmd_run)

    from .boards import BOARDS

    def board_args(q):
        model_arg(q)
        q.add_argument("--board", required=True, metavar="NAME",
                       help=f"target board: {', '.join(BOARDS)}")
        q.add_argument("-o", "--output", metavar="DIR",
                       help="build folder (default build/<board>/<model name>)")

    q = sub.add_parser("build", help="build a bitstream for a board (yosys, nextpnr)",
                       description="Put the network behind a UART (BoardTop) on an open FPGA "
                       "board and run synthesis, place and route and packing (the YoWASP tools "
                       "of pchw[boards], or system tools named by YOSYS, NEXTPNR_ICE40, ICEPACK, "
                       "NEXTPNR_ECP5, ECPPACK). A network that clearly cannot fit is refused "
                       "first. Writes the bitstream, report.md and report.json (resources, Fmax, "
                       "cycles, samples/s) into the build folder; exits non-zero if timing fails. "
                       "See boards/README.md.")
    board_args(q)
    q.add_argument("--lanes", type=_lanes_arg, metavar="P1,P2,...|auto",
                   help="MAC lanes per weight layer for this build, or 'auto': the fastest that "
                   "fit the board (default: hardware.board_lanes.<board> of the description, "
                   "else hardware.lanes)")
    q.add_argument("--clock", type=float, metavar="MHZ",
                   help="run the design at this frequency through the board's PLL (the nearest "
                   "the PLL makes; default: the board's oscillator, no PLL)")
    q.add_argument("--baud", type=int, default=SERIAL_BAUD,
                   help=f"UART baud rate (default {SERIAL_BAUD}; up to {MAX_BAUD} if the board's "
                   "clock makes it within 2%%: docs/protocol.md, Link speed)")
    q.add_argument("--force", action="store_true",
                   help="build even if the pre-synthesis estimate says it does not fit")
    q.add_argument("--faults", action="store_true", help=FAULTS_HELP)
    q.add_argument("--data-memory", type=_data_memory_arg, default=0, metavar="N",
                   help=DATA_MEMORY_HELP + "; refused before the build if the board's SPRAM "
                   "or block RAM cannot hold it")
    q.add_argument("--rebuild", action="store_true",
                   help="run the tools even if the folder holds a finished build of the same "
                   "design with the same tools (by default that one is reused, in seconds)")
    q.set_defaults(func=cmd_build)

    q = sub.add_parser("flash", help="program a built bitstream onto a board",
                       description="Program the bitstream `pchw build` wrote (checked to be "
                       "this model's, for this board) with the board's programmer: iceprog "
                       "(icebreaker) or openFPGALoader (ulx3s-*); ICEPROG / OPENFPGALOADER name "
                       "another binary.")
    board_args(q)
    q.set_defaults(func=cmd_flash)

    q = sub.add_parser("sweep", help="train and build a grid of design points (dask)",
                       description="Sweep formats, rounding, PC mode and T, learning rate, "
                       "lanes and boards (a grid file, docs/sweep.md): every point is trained "
                       "in the fixed-point golden model (test accuracy), checked against the "
                       "board and built (LUT, DSP, BRAM, Fmax), with samples/s from the latency "
                       "formula. Runs on dask.distributed: a LocalCluster on this machine, or "
                       "the cluster of --scheduler. Results are cached in the output folder, so "
                       "a re-run computes only new points and an interrupted sweep resumes. "
                       "Writes results.csv/json, pareto.md/png and best/<board>/ model folders.")
    model_arg(q)
    q.add_argument("--grid", required=True, metavar="SWEEP.toml", help="the grid file")
    q.add_argument("--scheduler", metavar="ADDRESS",
                   help="a dask scheduler, e.g. tcp://HOST:8786 (default: a LocalCluster)")
    q.add_argument("--workers", type=int, metavar="N",
                   help="LocalCluster worker processes (default: one per core)")
    q.add_argument("--no-build", action="store_true",
                   help="no synthesis: resources from the pre-synthesis estimate, samples/s at "
                   "the board clock")
    q.add_argument("-o", "--output", metavar="DIR",
                   help="output folder (default build/sweep/<model name>)")
    q.set_defaults(func=cmd_sweep)

    q = sub.add_parser("report", help="write an HTML report: formats, resources, learning",
                       description="Write a self-contained HTML page about MODEL: the network "
                       "and its formats, the resources and timing of its builds (from the "
                       "report.json of `pchw build` in build/<board>/<model>/), learning curves "
                       "of fixed-point PC against float PC and backprop from a fresh "
                       "initialisation, the agreement of PC's updates with backprop's gradient "
                       "against the relaxation steps, and the saturation counts per layer. "
                       "Needs matplotlib (pip install 'pchw[report]').")
    model_arg(q)
    q.add_argument("--board", metavar="NAME", help=f"only this board's build ({', '.join(BOARDS)}"
                   "; default every board with a build report)")
    q.add_argument("-o", "--output", metavar="DIR",
                   help="output folder (default build/report/<model name>)")
    q.add_argument("--epochs", type=int, metavar="N", dest="report_epochs",
                   help="epochs of the learning curves "
                   "(default: about 20,000 learning samples, at most 400 epochs)")
    q.set_defaults(func=cmd_report)

    q = sub.add_parser("golden", help="run the golden model on inputs from .npy files",
                       description="Run the golden model: inference, or with --learn one PC "
                       "learning step per batch (online by default). Writes OUT.npz with "
                       "'output' and, after learning, W*/b* and their changes dW*/db* as floats; "
                       "with --trace the state after every relaxation step as "
                       "trace_{x,mu,eps}<layer> of shape (samples, snapshots, n_l).")
    model_arg(q)
    q.add_argument("--input", required=True, metavar="X.npy", help="inputs, shape (N, n_0)")
    q.add_argument("--target", metavar="Y.npy", help="targets, shape (N, n_L)")
    q.add_argument("--learn", action="store_true", help="learn from (input, target) pairs")
    q.add_argument("--batch-size", type=int, default=1, metavar="B",
                   help="samples per learning step (default 1)")
    q.add_argument("--trace", action="store_true", help="record the per-step state")
    arithmetic_args(q, default_fixed=True)
    q.add_argument("--out", required=True, metavar="R.npz", help="output file")
    q.set_defaults(func=cmd_golden)
    from types import SimpleNamespace

    from .commands import register
    register(sub, SimpleNamespace(model_arg=model_arg, dataset_args=dataset_args,
                                  arithmetic_args=arithmetic_args,
                                  data_memory_arg=_data_memory_arg,
                                  data_memory_help=DATA_MEMORY_HELP))
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name, 1) < 1:
            print(f"pchw: error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if getattr(args, "samples", 0) < 0:
        print("pchw: error: --samples must be at least 0", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except PchwError as error:
        print(f"pchw: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pchw: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
