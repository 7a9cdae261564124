"""pchw.progress: the one progress display of the commands."""

import io

from pchw.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_line_at_the_start_and_at_each_tenth():
    out = io.StringIO()
    bar = Progress("commands answered", stream=out)
    for done in range(1, 101):
        bar(done, 100)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0].startswith("  commands answered: 1/100 (1%)")
    assert lines[1].startswith("  commands answered: 10/100 (10%)")
    assert lines[-1].startswith("  commands answered: 100/100 (100%)")
    assert "\r" not in out.getvalue()


def test_inner_loops_stay_quiet_off_a_terminal():
    out = io.StringIO()
    with Progress("samples", quiet_off_terminal=True, stream=out) as bar:
        for done in range(1, 11):
            bar(done, 10)
    assert out.getvalue() == ""


def test_on_a_terminal_one_line_in_place_then_a_newline():
    out = Terminal()
    Progress.INTERVAL = 0.0
    try:
        with Progress("samples", quiet_off_terminal=True, stream=out) as bar:
            for done in range(1, 4):
                bar(done, 3)
    finally:
        Progress.INTERVAL = 0.2
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "samples: 3/3 (100%)" in text
