"""Block pool (free list + reference counts) and per-sequence page tables.

Invariants (checked by ``BlockPool.check`` against the tables that hold pages):
  * every page id 0 .. num_pages-1 is either on the free list (refcount 0) or held by
    page tables, and its refcount equals the number of table entries holding it;
  * the free list holds no page twice;
  * a page table is append-only: entries are only added at the end, except that
    copy-on-write may replace a shared page by a private copy holding the same rows;
  * a page whose refcount is > 1 is never written: a writer first copies it.
Nothing here touches page contents: that is the ``Storage``'s job.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class KvCacheFull(RuntimeError):
    """The pool has too few free pages for an operation; nothing was changed."""


class BlockPool:
    """Fixed set of ``num_pages`` page ids with a free list and reference counts."""

    def __init__(self, num_pages: int):
        self.num_pages = int(num_pages)
        self.refcount = [0] * self.num_pages          # (num_pages,) table entries per page
        # Free list used as a stack; page 0 is handed out first.
        self._free = list(range(self.num_pages - 1, -1, -1))

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_pages - len(self._free)

    def free_pages(self) -> list[int]:
        """A copy of the free list (top of the stack last)."""
        return list(self._free)

    def allocate(self, n: int) -> list[int]:
        """Take ``n`` free pages (refcount 1 each); KvCacheFull if fewer are free."""
        if n > len(self._free):
            raise KvCacheFull(f"KV cache full: need {n} free pages, {len(self._free)} of "
                              f"{self.num_pages} free")
        pages = [self._free.pop() for _ in range(n)]
        for p in pages:
            self.refcount[p] = 1
        return pages

    def incref(self, pages) -> None:
        for p in pages:
            if self.refcount[p] < 1:
                raise AssertionError(f"incref of free page {p}")
            self.refcount[p] += 1

    def decref(self, pages) -> None:
        """Drop one reference to each page; pages reaching 0 go back to the free list."""
        for p in pages:
            if self.refcount[p] < 1:
                raise AssertionError(f"decref of free page {p}")
            self.refcount[p] -= 1
            if self.refcount[p] == 0:
                self._free.append(p)

    def check(self, tables) -> None:
        """Raise AssertionError unless refcounts and free list match ``tables``."""
        held = [0] * self.num_pages
        for t in tables:
            for p in t.pages:
                held[p] += 1
        if held != self.refcount:
            bad = [p for p in range(self.num_pages) if held[p] != self.refcount[p]]
            raise AssertionError(f"refcount mismatch at pages {bad[:10]}")
        free = set(self._free)
        if len(free) != len(self._free):
            raise AssertionError("free list holds a page twice")
        want = {p for p in range(self.num_pages) if held[p] == 0}
        if free != want:
            raise AssertionError(f"free list {sorted(free)[:10]} != unreferenced "
                                 f"{sorted(want)[:10]}")

    def state(self):
        """(refcounts, free list) copies, for before/after comparisons."""
        return list(self.refcount), list(self._free)


@dataclass
class PageTable:
    """One sequence's pages and how many tokens each layer has written.

    pages    page ids in token order: token t of any layer lives in
             pages[t // page_size], slot t % page_size
    lengths  (num_layers,) tokens written per layer; always non-increasing
             (lengths[0] >= lengths[1] >= ... >= lengths[-1]), and the sequence's
             length is lengths[-1]
    """

    pages: list = field(default_factory=list)
    lengths: list = field(default_factory=list)

    def copy(self) -> "PageTable":
        return PageTable(list(self.pages), list(self.lengths))
