"""What a long command is doing, on stderr within two seconds: a rich status line with the
phase and the time spent in it. Shown only on a terminal, so a redirected stderr still holds
exactly one line per error (the hostile harness counts them)."""

import contextlib
import sys
import threading
import time

__all__ = ["phases"]


@contextlib.contextmanager
def phases(first):
    """``with phases("loading") as phase: ... phase("building") ...``: one status line,
    replaced by each new phase, gone when the block ends. ``phase(text, done, total)`` (the
    API's progress callback) shows ``done/total`` after the text."""
    if not sys.stderr.isatty():
        yield lambda text, done=None, total=None: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    start = [time.monotonic(), first]

    def render():
        return f"{start[1]} ({time.monotonic() - start[0]:.0f} s)"

    with console.status(render()) as status:
        def phase(text, done=None, total=None):
            if done is not None:
                text = f"{text} {done}/{total}" if total else f"{text} {done}"
            start[:] = [time.monotonic(), text]
            status.update(render())

        # the elapsed time ticks while a phase runs
        stop = threading.Event()

        def tick():
            while not stop.wait(1.0):
                status.update(render())

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield phase
        finally:
            stop.set()
            ticker.join()
