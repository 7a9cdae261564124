"""``pchw serve``: the simulated board top (and the golden device model) behind a pty, driven by
real serial clients in other processes: ``pchw run --port`` (pyserial) and raw byte streams."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pchw
from pchw import protocol

from .harness import require_simulator

PCHW = str(Path(sys.executable).parent / "pchw")
MODEL = "models/xor"
#: How long a server may take to come up: a cold Verilator build of the board top, on a
#: shared CI machine (about 40 s here with the other core busy).
START_TIMEOUT_S = 600


@contextlib.contextmanager
def served(tmp_path, *how):
    """Run ``pchw serve MODEL *how --link tmp_path/pty``; yields the link once it exists, then
    stops the server with SIGTERM and checks that it stopped cleanly."""
    link = tmp_path / "pty"
    err = open(tmp_path / "serve.err", "w+")
    server = subprocess.Popen([PCHW, "serve", MODEL, *how, "--link", str(link)],
                              stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not link.is_symlink():
            if server.poll() is not None:
                err.seek(0)
                pytest.fail(f"pchw serve exited with {server.returncode}:\n{err.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"pchw serve did not open its pty within {START_TIMEOUT_S} s")
            time.sleep(0.1)
        path = server.stdout.readline().strip()         # the pty's path, first line on stdout
        assert path.startswith("/dev/pts/") and os.path.realpath(link) == path
        yield link
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
        server.stdout.close()
        err.seek(0)
        log = err.read()
        err.close()
    assert code == 0, log
    assert "pchw serve: stopped" in log
    assert not link.exists(), "the link outlived the server"


def _serve_args(where):
    if where == "golden":
        return ("--golden",)
    require_simulator(where)
    return ("--sim", "--simulator", where)


def run_against(link, *args):
    result = subprocess.run([PCHW, "run", MODEL, "--port", str(link), *args, "--timeout", "20"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def garbled_units(network, rng):
    """Chunks a host might send, each complete in itself (no partial frame is left waiting):
    line noise without a sync byte, frames with a bad crc, an unknown opcode, a wrong length,
    a bad layer, an over-length header, and good commands in between."""
    f0, fL = network.value_format(0), network.value_format(network.L)
    noise = bytes(b for b in rng.integers(0, 256, 40, dtype=np.uint8) if
                  b != protocol.SYNC_COMMAND)
    x = f0.quantise(rng.uniform(-1, 1, network.layers[0]))
    y = fL.quantise(rng.uniform(-1, 1, network.layers[-1]))
    infer = protocol.infer_command(network, x)
    bad_crc = infer[:-1] + bytes([infer[-1] ^ 0x5A])
    # a header (sync, opcode, tag, length) whose length is above the largest payload
    too_long = protocol.command_frame(protocol.Opcode.INFER, tag=0x3C)[:protocol.HEADER_SIZE - 2] \
        + bytes([0xFF, 0xFF])
    assert protocol.frame_size(too_long) > protocol.HEADER_SIZE + protocol.max_payload(network)
    return [
        protocol.identify_command(),
        noise,
        bad_crc,
        noise[:7] + infer,                                       # noise, then a good command
        protocol.command_frame(0xEE, b"\x01\x02"),               # unknown opcode
        protocol.command_frame(int(protocol.Opcode.INFER), b"\x00"),   # wrong length
        protocol.command_frame(int(protocol.Opcode.READ_PARAMS), bytes([network.L + 3])),
        too_long + noise[:5],
        protocol.learn_command(network, x, y),
        infer,
        protocol.read_params_command(network.L),
    ]


def exchange_garbled(link):
    """Write each unit to the pty as a serial client would, read until the golden device model's
    replies have come (then a little longer: nothing more may come), and compare byte for byte."""
    import serial
    network = pchw.load(MODEL)
    device = protocol.DeviceModel(network)
    statuses = []
    with serial.Serial(str(link), 115200, timeout=0) as port:
        for unit in garbled_units(network, np.random.default_rng(5)):
            want = b"".join(device.feed(unit))
            port.write(unit)
            got, deadline = bytearray(), time.monotonic() + 20
            while len(got) < len(want) and time.monotonic() < deadline:
                port.timeout = 0.05
                got += port.read(len(want) - len(got))
            port.timeout = 0.3
            got += port.read(1)                                     # anything extra?
            assert bytes(got) == want, f"unit {unit.hex()}: got {bytes(got).hex()}, " \
                                       f"expected {want.hex()}"
            pos = 0
            while pos < len(want):
                size = protocol.frame_size(want[pos:pos + protocol.HEADER_SIZE])
                statuses.append(protocol.parse_reply(want[pos:pos + size])[0])
                pos += size
    return statuses


@pytest.mark.parametrize("where", ["golden", "verilator"])
def test_run_port_against_served_device(where, tmp_path):
    """`pchw run --port` (a separate process, pyserial) against the served device: 32 on-chip
    learning steps, every reply and the weights read back equal the golden model's."""
    with served(tmp_path, *_serve_args(where)) as link:
        first = run_against(link, "--no-stream")         # inference only: the state is kept
        # a second client after the first has gone: the server keeps serving
        out = run_against(link, "--learn", "--epochs", "8")
    assert "4/4 outputs equal the golden model's bit for bit" in first
    assert "one command at a time" in first and "streamed within the" in out
    assert "4/4 predictions equal the golden model's" in out
    assert out.count("epoch ") == 8
    assert "weights after on-chip learning equal the golden model's, bit for bit" in out
    assert "4/4 outputs equal the golden model's bit for bit" in out


@pytest.mark.parametrize("where", ["golden", "verilator"])
def test_garbled_stream_gets_the_documented_replies(where, tmp_path):
    """Line noise, bad crcs, unknown opcodes, wrong lengths and layers, over-length headers and
    good commands written to the pty: the replies equal the golden device model's, byte for
    byte, and include each documented error status."""
    with served(tmp_path, *_serve_args(where)) as link:
        statuses = exchange_garbled(link)
    S = protocol.Status
    assert {S.OK, S.ERR_CHECKSUM, S.ERR_OPCODE, S.ERR_LENGTH, S.ERR_ARGUMENT} <= set(statuses)


def test_serve_on_icarus(tmp_path):
    """The same board top on Icarus Verilog: a short learning run, bit-exact."""
    with served(tmp_path, *_serve_args("icarus")) as link:
        out = run_against(link, "--learn")
    assert "weights after on-chip learning equal the golden model's, bit for bit" in out


def test_serve_refuses_a_bad_baud_rate(tmp_path):
    result = subprocess.run([PCHW, "serve", MODEL, "--baud", "300000"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("pchw: error: --baud 300000:"), result.stderr
    assert "Traceback" not in result.stderr


def test_faults_through_the_served_board(tmp_path):
    """A fault-injection build of the board top on Verilator, behind the pty: Device.set_dead
    kills hidden units, and on-chip learning and the weights read back are bit-exact with the
    golden model on the same damaged substrate; so with Device.set_faults (dead units, stuck
    weights, upsets); a normal build refuses FAULT in one line."""
    from pchw.datasets import load_dataset
    from pchw.faults import DeadUnits, FaultSpec, damage, learn_command
    from pchw.golden import FixedModel
    from pchw.host import Device, SerialTransport
    network = pchw.load(MODEL)
    data = load_dataset("xor")
    targets = data.one_hot(data.y_train)
    golden = damage(FixedModel(network),
                    FaultSpec(dead=(DeadUnits(1, indices=(0, 3, 5)),)).resolve(network))
    with served(tmp_path, *_serve_args("verilator"), "--faults") as link:
        with SerialTransport(str(link)) as transport:
            device = Device(transport, network, timeout=20)
            device.identify()
            device.set_dead([[], [0, 3, 5], []])
            for epoch in range(4):
                for i in range(len(data.x_train)):
                    x, y = data.x_train[i], targets[i]
                    assert np.array_equal(device.learn(x, y),
                                          golden.learn(x[None], y[None]).output[0])
            W, b = golden.float_params()
            for l in (1, 2):
                got_W, got_b = device.read_params(l)
                assert np.array_equal(got_W, W[l - 1]) and np.array_equal(got_b, b[l - 1])
            assert not np.array_equal(W[0], pchw.load(MODEL).weights[0])   # it learnt
            # every kind of fault at once, from the model's own weights again
            for l in (1, 2):
                device.write_params(l, network.weights[l - 1], network.biases[l - 1])
            spec = FaultSpec.from_dict({"seed": 5, "dead": [{"layer": 1, "indices": [2]}],
                                        "stuck": [{"layer": 1, "fraction": 0.25, "value": 0.5},
                                                  {"layer": 2, "fraction": 0.25}],
                                        "upsets": {"rate": 1.5}})
            golden = damage(FixedModel(network), spec.resolve(network))
            device.set_faults(spec)
            for i in list(range(len(data.x_train))) * 2:
                x, y = data.x_train[i], targets[i]
                assert np.array_equal(device.learn(x, y),
                                      learn_command(golden, x[None], y[None]).output[0])
            W, b = golden.float_params()
            for l in (1, 2):
                got_W, got_b = device.read_params(l)
                assert np.array_equal(got_W, W[l - 1]) and np.array_equal(got_b, b[l - 1])
    (tmp_path / "normal").mkdir()
    with served(tmp_path / "normal", "--golden") as link:
        with SerialTransport(str(link)) as transport:
            device = Device(transport, network, timeout=5)
            with pytest.raises(pchw.PchwError, match="no fault injection: build it with --faults"):
                device.set_dead([[], [0], []])


@pytest.mark.parametrize("where", ["golden", "verilator"])
def test_dataset_on_the_served_board(where, tmp_path):
    """A board top with a dataset memory behind the pty (issue 13): `pchw run --learn` loads the
    training and test split once (LOAD_DATA), runs a TRAIN and an EVAL per epoch, and the
    confusion counts and the weights read back equal the golden model's bit for bit; a
    dataset error gets its status."""
    with served(tmp_path, *_serve_args(where), "--data-memory", "16") as link:
        out = run_against(link, "--learn", "--epochs", "3")
        import serial
        with serial.Serial(str(link), 115200, timeout=20) as port:
            port.write(protocol.eval_command(9, 1, tag=7))           # past the 8 stored
            reply = port.read(protocol.HEADER_SIZE + 1 + protocol.CRC_SIZE)
    assert "LOAD_DATA: 8 samples (training and test split)" in out
    assert out.count("confusion counts equal the golden model's") == 3
    assert "weights after on-chip learning equal the golden model's, bit for bit" in out
    assert protocol.parse_reply(reply)[0] is protocol.Status.ERR_ARGUMENT
    assert protocol.frame_tag(reply) == 7


def test_run_sim_with_a_dataset_memory():
    """`pchw run --sim --data-memory`: the board top in amaranth.sim, UART pins included."""
    result = subprocess.run([PCHW, "run", MODEL, "--sim", "--data-memory", "8", "--learn",
                             "--epochs", "2", "--timeout", "20"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert out.count("TRAIN of 4 samples on the chip") == 2
    assert "weights after on-chip learning equal the golden model's, bit for bit" in out
