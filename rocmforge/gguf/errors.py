"""The one error type of the GGUF layer.

Every malformed-file condition the reader detects raises ``GGUFError``; its message
always names the file, the field being read and the byte offset of that field, e.g.::

    model.gguf: tensor[3] 'blk.0.attn_q.weight'.type at byte 1234: unknown tensor type id 77
"""
from __future__ import annotations

__all__ = ["GGUFError"]


class GGUFError(ValueError):
    """A GGUF file is malformed or unsupported.

    Attributes: ``source`` (path or ``"<bytes>"``), ``field`` (dotted field name),
    ``offset`` (byte offset of the field in the file, or None), ``problem`` (what is wrong).
    """

    def __init__(self, source: str, field: str, offset: int | None, problem: str):
        self.source = str(source)
        self.field = field
        self.offset = offset
        self.problem = problem
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.source}: {field}{where}: {problem}")

    def __reduce__(self):  # picklable (multiprocessing, pytest-xdist)
        return (type(self), (self.source, self.field, self.offset, self.problem))
