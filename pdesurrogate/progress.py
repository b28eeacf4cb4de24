"""A dependency-free progress bar for long jobs: bar, count, throughput and ETA on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress of ``total`` units, redrawn in place on a terminal, every ``log_every`` s otherwise.

    Usage::

        bar = Progress(total=1000, desc="generate", unit="samples")
        for batch in ...:
            bar.update(len(batch), loss=0.1)
        bar.close()
    """

    def __init__(self, total: int, desc: str = "", unit: str = "it", initial: int = 0,
                 stream: TextIO | None = None, log_every: float = 10.0, enabled: bool = True):
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.count = int(initial)
        self._initial = int(initial)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._log_every = 0.2 if self._tty else log_every
        self._start = time.perf_counter()
        self._last = -1e9
        self._postfix = ""

    def rate(self) -> float:
        """Units per second since the start (units done before a resume do not count)."""
        elapsed = time.perf_counter() - self._start
        return (self.count - self._initial) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The current status line."""
        frac = self.count / self.total if self.total else 1.0
        width = 24
        filled = int(round(frac * width))
        rate = self.rate()
        eta = (self.total - self.count) / rate if rate > 0 else float("nan")
        eta_s = _fmt_time(eta) if eta == eta else "--:--"
        elapsed = _fmt_time(time.perf_counter() - self._start)
        return (f"{self.desc} |{'#' * filled}{'.' * (width - filled)}| {self.count}/{self.total} "
                f"[{elapsed}<{eta_s}, {rate:.3g} {self.unit}/s]{self._postfix}")

    def update(self, n: int = 1, **postfix: float | str) -> None:
        """Advance by ``n`` units; ``postfix`` values (e.g. ``loss=0.1``) are shown after the bar."""
        self.count += n
        if postfix:
            self._postfix = " " + " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self._log_every or self.count >= self.total):
            self._last = now
            end = "\r" if self._tty and self.count < self.total else "\n"
            self.stream.write(("\r" if self._tty else "") + self.line() + end)
            self.stream.flush()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled and self._tty and self.count < self.total:
            self.stream.write("\n")
            self.stream.flush()
