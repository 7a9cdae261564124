"""``pchw faults``: damage a model's substrate and measure how on-chip PC learning recovers
(:mod:`pchw.faults`, ``docs/faults.md``)."""

import json
from pathlib import Path

from ..errors import PchwError
from ..graph import hardware_network
from ..network import load
from ..progress import say as _progress

HELP = "cut the substrate: fault injection and recovery by on-chip PC learning"
DESCRIPTION = """\
Damage MODEL's substrate (dead units, stuck-at weights, single-event upsets in the weight
memory; docs/faults.md) and measure, in the bit-exact fixed-point golden model: the test
accuracy intact, just after the damage, and along online on-chip PC learning with the damage in
place (the recovery curve), against two references: a network of the surviving size trained
from scratch (same PC settings, fixed point) and float64 backprop fine-tuning of the damaged
network in software.

examples:
  pchw faults models/digits --kill 0.5             # half of every hidden layer dead
  pchw faults models/digits --spec faults.toml --epochs 4 --plot recovery.png
  pchw faults models/digits --upset-rate 2 --epochs 1   # 2 bit flips per LEARN command"""


def add_arguments(parser, common):
    common.model_arg(parser)
    common.dataset_args(parser)
    what = parser.add_argument_group("faults (combined; at least one)")
    what.add_argument("--spec", metavar="FILE", help="a fault specification (TOML, "
                      "docs/faults.md)")
    what.add_argument("--kill", type=float, metavar="F",
                      help="a fraction F of every hidden layer's units dead")
    what.add_argument("--stuck", type=float, metavar="F",
                      help="a fraction F of every weight matrix stuck at --stuck-value")
    what.add_argument("--stuck-value", type=float, default=0.0, metavar="V",
                      help="the value stuck weights hold (default 0)")
    what.add_argument("--upset-rate", type=float, metavar="R",
                      help="single-event upsets: R bit flips in the weight memory per LEARN "
                      "command, on average")
    what.add_argument("--seed", type=int, default=None,
                      help="chooses the dead units and stuck weights and places the upsets "
                      "(default: the spec's, else 0)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs of on-chip learning after the damage (default 2)")
    parser.add_argument("--reference-epochs", type=int, default=None, metavar="N",
                        help="epochs of the from-scratch reference (default max(30, --epochs))")
    parser.add_argument("--order-seed", type=int, default=0, metavar="N",
                        help="sample-order seed (default 0)")
    parser.add_argument("--on-chip", type=int, default=0, metavar="N",
                        help="also run the first N LEARN commands of the recovery on the "
                        "simulated circuit of a fault-injection build (Verilator; the FAULT "
                        "commands set every fault of the spec), every reply checked bit for bit "
                        "against the golden model")
    parser.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                        help="simulator of --on-chip (default verilator)")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the curves (matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="write the record as JSON")


def spec_from_args(args, network):
    """The :class:`~pchw.faults.FaultSpec` the arguments describe."""
    from ..faults import FaultSpec, StuckWeights
    spec = FaultSpec.load(args.spec) if args.spec else FaultSpec()
    for name in ("kill", "stuck"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise PchwError(f"--{name} {value:g}: a fraction between 0 and 1")
    if args.upset_rate is not None and not 0 <= args.upset_rate <= 1e6:
        raise PchwError(f"--upset-rate {args.upset_rate:g}: between 0 and 1e6 bit flips per "
                        "LEARN command")
    if args.seed is not None and not 0 <= args.seed < 1 << 24:
        raise PchwError(f"--seed {args.seed}: between 0 and {(1 << 24) - 1} (24 bits)")
    extra = FaultSpec(
        dead=FaultSpec.kill_hidden(network, args.kill) if args.kill else (),
        stuck=tuple(StuckWeights(l, args.stuck, args.stuck_value)
                    for l in range(1, network.L + 1)) if args.stuck else (),
        upset_rate=args.upset_rate or 0.0, seed=args.seed or 0)
    spec = spec.combined(extra)
    if args.seed is not None:
        spec = FaultSpec(spec.dead, spec.stuck, spec.upset_rate, args.seed)
    if not (spec.dead or spec.stuck or spec.upset_rate):
        raise PchwError("no faults: give --spec FILE, --kill F, --stuck F or --upset-rate R")
    return spec


def run(args):
    from ..cli import _dataset_for, _output_file
    from ..faults import plot_recovery, recovery
    network = hardware_network(load(args.model), "faults")
    if args.epochs < 1 or (args.reference_epochs is not None and args.reference_epochs < 1):
        raise PchwError("--epochs and --reference-epochs must be at least 1")
    for path, option in ((args.plot, "--plot"), (args.json, "--json")):
        if path:
            _output_file(path, option)
    spec = spec_from_args(args, network)
    data = _dataset_for(network, args)
    _progress(f"pchw faults: {network.name or args.model}, {spec.describe()}")
    if args.on_chip < 0:
        raise PchwError("--on-chip must be at least 0")
    if args.on_chip:        # refuse what the FAULT command cannot carry before the long run
        from ..protocol import fault_commands
        fault_commands(network, spec.resolve(network))
    record = recovery(network, data, spec, epochs=args.epochs,
                      reference_epochs=args.reference_epochs, seed=args.order_seed,
                      progress=_progress)
    if args.on_chip:
        from ..faults import on_chip_segment
        _progress(f"  on chip: the first {args.on_chip} LEARN commands on {args.simulator}, "
                  "every reply against the golden model")
        record["on_chip"] = on_chip_segment(network, data, spec, args.on_chip,
                                            simulator=args.simulator, seed=args.order_seed)
    print(f"faults: {record['description']} (seed {spec.seed}); surviving "
          f"{'-'.join(map(str, record['surviving_layers']))}")
    rows = [("intact", record["accuracy_intact"]),
            ("damaged, before learning", record["accuracy_damaged"]),
            (f"after {args.epochs} epoch(s) of on-chip PC learning",
             record["accuracy_recovered"]),
            (f"reference: surviving size from scratch ({record['reference_epochs']} epochs)",
             record["accuracy_reference_scratch"]),
            (f"reference: float backprop fine-tuning ({args.epochs} epochs)",
             record["accuracy_reference_backprop"])]
    for label, value in rows:
        print(f"  {label:58s} {value:7.2%}")
    print("recovery curve (epochs: test accuracy): " + ", ".join(
        f"{e:.2f}: {a:.2%}" for e, a in record["curve"]))
    if "on_chip" in record:
        chip = record["on_chip"]
        print(f"on chip ({chip['simulator']}, fault-injection build): {chip['fault_commands']} "
              f"FAULT and {chip['learn_commands']} LEARN commands of the recovery "
              f"({chip['upsets']} upset flips), then READ_PARAMS: "
              f"{chip['replies']} replies, {chip['mismatches']} differ from the golden model")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        plot_recovery([record], args.plot)
        print(f"wrote {args.plot}")
