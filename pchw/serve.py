"""A virtual board on a serial port: a device behind a pseudo-terminal (``pchw serve``).

The pseudo-terminal (pty) behaves like a board's USB serial port: :class:`pchw.host.SerialTransport`
(``pchw run --port``), pyserial, ``screen`` or any other serial client opens its path and
exchanges bytes with the device behind it, unchanged. Two devices can stand behind it:

- the **simulated board top** (:func:`serve_simulation`): :class:`pchw.gateware.board.BoardTop`,
  UART pins included, as Verilog on Verilator or Icarus Verilog under cocotb
  (:mod:`pchw.sim.serve_tb`). Bytes from the pty are bit-banged into ``uart_rx`` at the
  simulated baud rate; bytes decoded from ``uart_tx`` go back to the pty. The simulation runs
  while there is work (bytes on the line, a command in progress, a partial frame that has not
  yet timed out as it would on the board) and waits for the host without simulating while the
  board is idle, so an idle server costs no CPU. Simulated time therefore stands still between
  commands: the board's inter-byte frame timeout counts simulated time since the last byte;
- the **golden device model** (:func:`serve_golden`): :class:`pchw.protocol.DeviceModel`, which
  answers instantly what the hardware must answer.

The pty is put in raw mode (no echo, no line-ending translation); its baud rate setting means
nothing (a serial client may set any). The server keeps its own handle on the terminal side
open, so clients can come and go; a client that opens the port with pyserial starts with an
empty input buffer.
"""

import os
import select
import signal
import time
import tty
from pathlib import Path

from .errors import PchwError

__all__ = ["SIM_CLOCK_HZ", "SIM_BAUD", "open_pty", "publish", "serve_golden",
           "serve_simulation", "stop_requested"]

#: The simulated board's clock and UART: a fast simulated baud rate (4 cycles per bit) keeps the
#: simulation quick. ``pchw run --sim`` uses the same.
SIM_CLOCK_HZ, SIM_BAUD = 1_000_000, 250_000


def open_pty():
    """A new pseudo-terminal in raw mode: ``(controller fd, terminal fd, terminal path)``.

    The controller side (what a device reads and writes) is non-blocking. Keep the terminal fd
    open while serving: the controller side then never reports end of file when a client closes.
    """
    controller, terminal = os.openpty()
    tty.setraw(terminal)
    os.set_blocking(controller, False)
    return controller, terminal, os.ttyname(terminal)


def publish(path, ready_file=None, link=None):
    """Make the pty ``path`` known: write it into ``ready_file`` (atomically) and point the
    symbolic link ``link`` at it, replacing an old link."""
    if link is not None:
        link = Path(link)
        if link.is_symlink():
            link.unlink()
        os.symlink(path, link)
    if ready_file is not None:
        ready_file = Path(ready_file)
        partial = ready_file.with_name(ready_file.name + ".partial")
        partial.write_text(path + "\n")
        partial.replace(ready_file)


def stop_requested(stop_file, parent_pid):
    """Whether a server should stop: ``stop_file`` exists, or the process that started it
    (``parent_pid``) has gone."""
    return (stop_file is not None and os.path.exists(stop_file)) or os.getppid() != parent_pid


def _write_all(fd, data, stop):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            if stop():
                return
            select.select([], [fd], [], 0.2)


def serve_golden(network, *, link=None, ready_file=None, stop_file=None, on_ready=None,
                 faults=False, dataset=0):
    """Serve the golden device model of ``network`` on a new pty until ``stop_file`` appears
    (or the process is interrupted). ``on_ready(path)`` is called once the pty exists;
    ``faults``: the model of a fault-injection build; ``dataset``: of a build with a dataset
    memory of that many samples."""
    from .protocol import DeviceModel
    device = DeviceModel(network, faults=faults, dataset=dataset)
    controller, terminal, path = open_pty()
    parent = os.getppid()
    stop = lambda: stop_requested(stop_file, parent)          # noqa: E731
    try:
        publish(path, ready_file, link)
        if on_ready is not None:
            on_ready(path)
        while not stop():
            readable, _, _ = select.select([controller], [], [], 0.2)
            if not readable:
                continue
            try:
                data = os.read(controller, 4096)
            except BlockingIOError:
                continue
            for reply in device.feed(data):
                _write_all(controller, reply, stop)
    finally:
        os.close(controller)
        os.close(terminal)
        if link is not None and Path(link).is_symlink():
            Path(link).unlink()


def serve_simulation(network, simulator="verilator", *, baud=SIM_BAUD, clock_hz=SIM_CLOCK_HZ,
                     link=None, stop_file=None, on_ready=None, log_file=None, progress=None,
                     faults=False, dataset=0):
    """Serve the simulated board top of ``network`` on a new pty, on ``simulator``, until
    ``stop_file`` appears or the process is interrupted.

    ``on_ready(path)`` is called (from another thread) once the pty exists; ``progress(text)``
    reports the steps before that (generating Verilog, building the simulation). The build
    and simulator output go to ``log_file`` (else to stdout). ``faults``: a fault-injection
    build (the FAULT command); ``dataset``: a dataset memory of that many samples.

    Raises
    ------
    PchwError
        If the baud rate cannot be made from the simulated clock, or the simulator is missing
        (:class:`pchw.sim.runner.ToolMissing`) or fails.
    """
    import tempfile
    import threading

    from . import protocol
    from .gateware.board import BoardTop
    from .gateware.uart import BaudRateError
    from .sim import runner
    from .verilog import module_name

    progress = progress or (lambda text: None)
    try:
        top = BoardTop(network, clock_hz=clock_hz, baud=baud, faults=faults, dataset=dataset)
    except BaudRateError as error:
        raise PchwError(f"--baud {baud}: {error}") from None
    name = module_name(network) + ("_board_faults" if faults else "_board") + \
        (f"_data{dataset}" if dataset else "")
    progress(f"generating the board top's Verilog ({top.divisor} cycles per UART bit at a "
             f"simulated {clock_hz / 1e6:g} MHz clock)")
    text = runner.verilog_of(top, name)
    build_dir = runner.build_dir_for(
        f"{name}-serve-{protocol.network_id(network).hex()}-d{top.divisor}", simulator)
    # Idle once the line has been quiet past the frame timeout (a partial frame is dropped
    # then, as on the board) and the activity LED is dark (no command in progress).
    data = {"divisor": top.divisor, "period_ns": 1e9 / clock_hz,
            "quiet_cycles": top.frame_timeout_cycles + 4 * top.divisor * 10,
            "parent_pid": os.getpid(), "link": None if link is None else str(link),
            "stop_file": None if stop_file is None else str(stop_file)}
    with tempfile.TemporaryDirectory(prefix="pchw-serve-") as tmp:
        ready_file = Path(tmp) / "pty"
        data["ready_file"] = str(ready_file)
        finished = threading.Event()

        def announce():
            while not finished.is_set():
                if ready_file.is_file():
                    if on_ready is not None:
                        on_ready(ready_file.read_text().strip())
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=announce, daemon=True)
        watcher.start()
        progress(f"building and starting the simulation on {simulator} (a design's first "
                 "build can take a minute; later ones are cached)")
        try:
            runner.simulate(text, name, "pchw.sim.serve_tb", simulator, build_dir,
                            test_data=data, log_file=log_file)
        except runner.SimulationFailed as error:
            raise PchwError(f"the simulated board stopped: {str(error).splitlines()[0]}"
                            + (f" (log: {log_file})" if log_file else "")) from None
        finally:
            finished.set()
            watcher.join()
            if link is not None and Path(link).is_symlink():
                Path(link).unlink()


def install_stop_handler(stop_file):
    """Make SIGTERM (and SIGHUP) stop a server cleanly: they create ``stop_file``, which the
    serving loop (here or in the simulator process) watches."""
    def handler(signum, frame):
        Path(stop_file).touch()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
