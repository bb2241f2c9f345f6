"""Training progress that suits where it goes: a live tqdm bar on a terminal, a plain line every
half minute in a log file (CI, ``nohup``, ``> log``), where a redrawn bar would add a line a step.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LOG_INTERVAL_S = 30.0  # seconds between two lines when the output is not a terminal


class LineProgress:
    """The part of tqdm's interface the Trainer uses (``update``, ``set_postfix``, ``write``,
    ``close``), printing one line at most every ``interval`` seconds, and one at the end."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "",
        interval: float = LOG_INTERVAL_S,
        file: TextIO | None = None,
    ):
        self.total, self.n, self.desc, self.interval = total, initial, desc, interval
        self.file = file or sys.stderr
        self.postfix: dict[str, Any] = {}
        self._start_n, self._start = initial, time.monotonic()
        self._last = self._start
        self._printed_n: int | None = None
        self.leave = True  # as tqdm's: False, close() prints nothing

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print()

    def write(self, line: str) -> None:
        print(line, flush=True)

    def close(self) -> None:
        if self.leave and self._printed_n != self.n:
            self._print()

    def _print(self) -> None:
        from tqdm import tqdm

        elapsed = time.monotonic() - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else None
        postfix = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        line = tqdm.format_meter(
            self.n,
            self.total,
            elapsed,
            prefix=self.desc,
            unit="step",
            rate=rate,
            postfix=postfix or None,
            bar_format="{desc}: step {n_fmt}/{total_fmt} ({percentage:.0f}%) "
            "[{elapsed}<{remaining}, {rate_fmt}{postfix}]",
        )
        print(line, file=self.file, flush=True)
        self._printed_n = self.n


def progress_bar(total: int, initial: int = 0, desc: str = "", file: TextIO | None = None):
    """A tqdm bar where ``file`` (default stderr) is a terminal or a notebook, else LineProgress."""
    file = file or sys.stderr
    if _is_terminal(file) or _in_notebook():
        from tqdm.auto import tqdm

        return tqdm(
            total=total, initial=initial, unit="step", desc=desc, dynamic_ncols=True, file=file
        )
    return LineProgress(total, initial, desc, file=file)


def _is_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001 - any doubt: not a notebook
        return False
