"""Progress of long jobs on stderr: the one way every pchw command shows it.

:class:`Progress` is called with ``(done, total)``. On a terminal it keeps one line up to date
in place (count, percentage, rate and time left); elsewhere (a log file, a pipe, CI) it writes a
line at every tenth of the job, or, with ``quiet_off_terminal``, nothing (for inner loops whose
outer loop already logs a line per step, like the epochs of ``pchw train``). Messages of their
own go through :func:`say`. No dependency: the commands need nothing more than this.

Used by ``pchw sim`` (commands answered), ``pchw run`` (commands answered, per epoch),
``pchw train`` and ``pchw faults`` (samples of the epoch); ``pchw build`` and ``pchw sweep``
report stages and finished points as lines through :func:`say` with a heartbeat while a stage
runs.
"""

import sys
import time

__all__ = ["Progress", "say"]


def say(message):
    """One line on stderr (flushed)."""
    print(message, file=sys.stderr, flush=True)


class Progress:
    """``progress(done, total)`` for a job called ``what``; :meth:`close` ends its line.

    Parameters
    ----------
    what : str
        What is counted, e.g. ``"commands answered"``.
    quiet_off_terminal : bool
        Off a terminal, write nothing (the caller logs its own lines).
    stream : file, optional
        Default ``sys.stderr``.
    """

    #: Seconds between redraws on a terminal.
    INTERVAL = 0.2

    def __init__(self, what, *, quiet_off_terminal=False, stream=None):
        self._what = what
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._quiet = quiet_off_terminal and not self._tty
        self._shown = -1
        self._drawn = 0.0
        self._start = time.monotonic()

    def line(self, done, total):
        """The text of the progress line (rate and time left once a tenth of a second passed)."""
        text = f"  {self._what}: {done}/{total} ({done / max(total, 1):.0%})"
        elapsed = time.monotonic() - self._start
        if done and elapsed > 0.1:
            rate = done / elapsed
            text += f", {rate:,.1f}/s"
            if done < total:
                text += f", {(total - done) / rate:.0f} s left"
        return text

    def __call__(self, done, total):
        if self._quiet:
            return
        if self._tty:
            now = time.monotonic()
            if done >= total or now - self._drawn >= self.INTERVAL:
                self._drawn = now
                print(f"\r{self.line(done, total)}\033[K", end="", file=self._stream,
                      flush=True)
                self._shown = done
        elif 10 * done // max(total, 1) > self._shown:
            self._shown = 10 * done // max(total, 1)
            print(self.line(done, total), file=self._stream, flush=True)

    def close(self):
        """End the in-place line (on a terminal), so that the next message starts afresh."""
        if self._tty and self._shown >= 0:
            print(file=self._stream, flush=True)
            self._shown = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
