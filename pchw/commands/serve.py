"""``pchw serve``: a virtual board, the simulated circuit (or the golden device model) behind a
pseudo-terminal (:mod:`pchw.serve`)."""

import sys
import tempfile
from pathlib import Path

from ..errors import PchwError
from ..faults import BUILD_OPTION_HELP
from ..graph import hardware_network
from ..network import load
from ..progress import say as _progress
from ..serve import SIM_BAUD, SIM_CLOCK_HZ

HELP = "a virtual board: the simulated circuit behind a serial port (pty)"
DESCRIPTION = (
    "Open a pseudo-terminal and serve a device behind it until interrupted: the simulated board "
    "top, UART pins included (--sim, the default), or the golden device model (--golden, "
    "instant). Any serial client works against it as against a board: in another terminal, "
    "run `pchw run MODEL --port PTY`. Prints the pty's path on stdout (progress on stderr). "
    "Simulated time stands still while the board is idle.")


def add_arguments(parser, common):
    common.model_arg(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--sim", action="store_true", help="serve the simulated board top (default)")
    what.add_argument("--golden", action="store_true", help="serve the golden device model")
    parser.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                        help="simulator of the board top (default verilator)")
    parser.add_argument("--baud", type=int, default=SIM_BAUD,
                        help=f"simulated UART baud rate at the simulated {SIM_CLOCK_HZ / 1e6:g} "
                        f"MHz clock (default {SIM_BAUD}: {SIM_CLOCK_HZ // SIM_BAUD} cycles per "
                        "bit); the pty itself ignores baud rates")
    parser.add_argument("--link", metavar="PATH",
                        help="also make PATH a symbolic link to the pty (a fixed name for "
                        "scripts)")
    parser.add_argument("--faults", action="store_true", help=BUILD_OPTION_HELP)
    parser.add_argument("--data-memory", type=common.data_memory_arg, default=0, metavar="N",
                        help=common.data_memory_help)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the simulator's build and run output")


def run(args):
    from .. import serve
    network = hardware_network(load(args.model), "serve")
    if args.link is not None and Path(args.link).exists() and not Path(args.link).is_symlink():
        raise PchwError(f"--link {args.link}: exists and is not a symbolic link")
    device = ("the golden device model" if args.golden else
              f"the simulated board top on {args.simulator} (UART at a simulated {args.baud} baud)")

    def ready(path):
        _progress(f"pchw serve: {network.name or args.model} as {device} on {path}"
                  + (f" (link {args.link})" if args.link else ""))
        _progress(f"  try: pchw run {args.model} --port {args.link or path} --learn; stop with "
                  "Ctrl-C")
        print(path, flush=True)

    with tempfile.TemporaryDirectory(prefix="pchw-serve-") as tmp:
        stop_file = Path(tmp) / "stop"
        serve.install_stop_handler(stop_file)
        try:
            if args.golden:
                serve.serve_golden(network, link=args.link, stop_file=stop_file, on_ready=ready,
                                   faults=args.faults, dataset=args.data_memory)
            else:
                log = None if args.verbose else Path(tmp) / "simulation.log"
                try:
                    serve.serve_simulation(network, args.simulator, baud=args.baud,
                                           link=args.link, stop_file=stop_file, on_ready=ready,
                                           log_file=log, progress=_progress,
                                           faults=args.faults, dataset=args.data_memory)
                except PchwError:
                    if log is not None and log.is_file():
                        sys.stderr.write(log.read_text()[-4000:])
                    raise
        except KeyboardInterrupt:
            stop_file.touch()
    _progress("pchw serve: stopped")
