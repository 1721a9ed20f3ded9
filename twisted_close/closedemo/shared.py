"""
Counters shared between worker processes: one slot per worker in a small
memory-mapped file, each written by its worker alone and read by all, so
that any worker can answer C{/stats} and C{/metrics} with the totals.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Any

from .._ledger import Totals

__all__ = ["SharedCounters"]

SLOT = 4096
_HEAD = struct.Struct("<QI")  # sequence number, length of the JSON that follows


class SharedCounters:
    """
    C{slots} slots of JSON state in the file at C{path}.

    A slot is guarded by a sequence number that is odd while its writer is
    writing, so a reader never takes a half-written state for a whole one.
    """

    def __init__(self, path: str, slots: int) -> None:
        self.path = path
        self.slots = slots
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SLOT * slots:
                os.ftruncate(fd, SLOT * slots)
            self._map = mmap.mmap(fd, SLOT * slots)
        finally:
            os.close(fd)

    def publish(self, slot: int, state: dict[str, Any]) -> None:
        """
        Write C{state} into C{slot}; only that slot's worker may.
        """
        data = json.dumps(state, separators=(",", ":")).encode()
        if len(data) > SLOT - _HEAD.size:
            raise ValueError(f"state of {len(data)} bytes does not fit a slot")
        base = slot * SLOT
        sequence, _ = _HEAD.unpack_from(self._map, base)
        _HEAD.pack_into(self._map, base, sequence + 1, 0)
        self._map[base + _HEAD.size : base + _HEAD.size + len(data)] = data
        _HEAD.pack_into(self._map, base, sequence + 2, len(data))

    def read(self, slot: int) -> dict[str, Any] | None:
        """
        The state last published in C{slot}, or C{None} if none was.
        """
        base = slot * SLOT
        for _ in range(1000):
            before, length = _HEAD.unpack_from(self._map, base)
            if before % 2:
                continue
            start = base + _HEAD.size
            data = self._map[start : start + length]
            after, _ = _HEAD.unpack_from(self._map, base)
            if after == before:
                state: dict[str, Any] | None = json.loads(data) if length else None
                return state
        raise RuntimeError(f"slot {slot} of {self.path} is never still")

    def states(self) -> list[dict[str, Any] | None]:
        """
        Every slot's state, C{None} where none was published.
        """
        return [self.read(slot) for slot in range(self.slots)]

    def totals(self) -> Totals:
        """
        The counters summed over every slot.
        """
        return Totals.of(s for s in self.states() if s is not None)

    def close(self) -> None:
        self._map.close()
