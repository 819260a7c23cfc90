"""Progress bars for long loops (sweeps in chunks, bootstrap, profiles).

``progress(iterable, total=None, desc="", quiet=False)`` wraps an iterable; ``progress_bar(total, desc,
quiet)`` gives a bar to ``update(k)`` by hand.  Both use tqdm when it is installed and otherwise draw a
one-line text bar on stderr; ``quiet=True`` draws nothing.

Examples:
  >>> for r in progress(range(100), desc="bootstrap"):
  ...     pass
  >>> with progress_bar(1000, desc="fitting", unit="outcome") as bar:
  ...     bar.update(250)
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

__all__ = ["progress", "progress_bar", "TextBar", "NullBar"]

T = TypeVar("T")


def _tqdm():
    """tqdm's ``tqdm`` class, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class NullBar:
    """A bar that draws nothing (``quiet=True``)."""

    def __init__(self, total: int | None = None, desc: str = ""):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TextBar(NullBar):
    """``desc [#####.....] n/total 12s`` on one line of ``file`` (stderr), redrawn at most 10 times a second.

    Without a known total it shows the count and the elapsed time only.
    """

    width = 30

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", file: TextIO | None = None,
                 min_interval: float = 0.1):
        super().__init__(total, desc)
        self.unit, self.file, self.min_interval = unit, file if file is not None else sys.stderr, min_interval
        self.t0 = time.perf_counter()
        self._last = -float("inf")
        self._closed = False
        self._draw(force=True)

    def line(self) -> str:
        """The bar's current text."""
        el = time.perf_counter() - self.t0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            done = min(self.width, int(self.width * self.n / self.total))
            return (f"{head}[{'#' * done}{'.' * (self.width - done)}] {self.n}/{self.total} {self.unit} "
                    f"{el:.0f}s")
        return f"{head}{self.n} {self.unit} {el:.0f}s"

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        self.file.write("\r" + self.line())
        self.file.flush()

    def update(self, k: int = 1) -> None:
        self.n += k
        self._draw(force=self.total is not None and self.n >= self.total)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._draw(force=True)
        self.file.write("\n")
        self.file.flush()


def progress_bar(total: int | None = None, desc: str = "", quiet: bool = False, unit: str = "it"):
    """A bar with ``update(k)`` and ``close()`` (also a context manager): tqdm, a text bar, or nothing.

    Args:
      total: the number of steps (None: unknown; the bar counts only).
      desc: a label in front of the bar.
      quiet: draw nothing.
      unit: what one step is (``"outcome"``, ``"replicate"``, ...).
    """
    if quiet:
        return NullBar(total, desc)
    tqdm = _tqdm()
    if tqdm is not None:
        return tqdm(total=total, desc=desc or None, unit=unit, file=sys.stderr)
    return TextBar(total, desc, unit=unit)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", quiet: bool = False,
             unit: str = "it") -> Iterator[T]:
    """Yield the items of ``iterable`` while a bar counts them.

    Args:
      iterable: what to loop over.
      total: its length (default ``len(iterable)`` when it has one).
      desc: a label in front of the bar.
      quiet: draw nothing (the items are yielded all the same).
      unit: what one item is.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    bar = progress_bar(total, desc=desc, quiet=quiet, unit=unit)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
