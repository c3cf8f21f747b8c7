"""A progress bar for long work: tqdm when installed, else a plain line on stderr."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total, self.desc, self.n, self.enabled = total, desc, 0, enabled
        self._bar = None
        self._t0 = self._last = time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=desc, unit="it", file=sys.stderr,
                                 leave=False)
            except ImportError:
                pass

    def update(self, k: int = 1) -> None:
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(k)
            return
        now = time.perf_counter()
        if now - self._last > 0.5 or self.n >= self.total:
            self._last = now
            print(f"\r{self.desc}: {self.n}/{self.total} ({now - self._t0:.1f}s)",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n:
            print(file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
