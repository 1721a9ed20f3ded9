"""
Counters shared between worker processes: one slot per worker in a small
anonymous shared memory file, each written by its worker alone and read by
all, so that any worker can answer C{/stats} and C{/metrics} with the totals;
and the counts the L{Limits} admit against (L{SharedLimits}), so that every
cap holds for the whole server.

The memory has no name in the file system: the parent makes it and its
workers inherit its descriptor, so nothing of it outlives them, however they
end.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import tempfile
import zlib
from typing import Any

from .. import Ending
from ..ledger import Totals

__all__ = ["BUCKETS", "SLOT", "SharedCounters", "SharedLimits"]

COPY = 4096
"""Bytes of one copy of a slot's state, its header included."""
SLOT = 2 * COPY
"""Bytes of one slot: two copies, so that one is always whole."""
_BEAT = struct.Struct("<Q")  # CLOCK_MONOTONIC nanoseconds, 0: not yet
_HEAD = struct.Struct("<QI")  # sequence number, length of the JSON that follows
_TRIES = 1000
BUCKETS = 1024
"""Per-client counters of one slot, for pending work and again for streams."""
_WORDS = 2 + 2 * BUCKETS  # the two totals, then the two tables of buckets


def _anonymous_file(size: int) -> int:
    """
    A descriptor of C{size} bytes of memory-backed file that no path names.
    """
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd: int = memfd_create("closedemo-counters", os.MFD_CLOEXEC)
    else:
        # Elsewhere, a temporary file unlinked at once does the same.
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        raise
    return fd


def _size(slots: int) -> int:
    # The slots, then one heartbeat per slot, then each slot's limit counts.
    return (SLOT + _BEAT.size + 8 * _WORDS) * slots


class SharedCounters:
    """
    C{slots} slots of JSON state in the shared memory of descriptor C{fd}
    (see L{create} and L{adopt}).

    A slot holds two copies of its state, each guarded by a sequence number
    that is odd while its writer writes it.  A writer writes the copy that
    does not hold the newest whole state, so a reader always finds one whole
    copy, even when a writer was killed in the middle of writing the other.
    """

    def __init__(self, fd: int, slots: int) -> None:
        self.slots = slots
        self._fd = fd
        self._map = mmap.mmap(fd, _size(slots))
        start = (SLOT + _BEAT.size) * slots
        # Eight-byte words, read and written as plain memory: no system call.
        self._words = memoryview(self._map)[start:].cast("q")
        self._last: dict[int, dict[str, Any] | None] = {}

    @classmethod
    def create(cls, slots: int) -> SharedCounters:
        """
        New, empty counters; pass L{fileno} to the processes that share them.
        """
        return cls(_anonymous_file(_size(slots)), slots)

    @classmethod
    def adopt(cls, fd: int, slots: int, *, keep: bool = False) -> SharedCounters:
        """
        The counters behind an inherited descriptor C{fd}, which is closed
        once mapped (the mapping keeps the memory), unless C{keep}: to hand
        it on to other processes.
        """
        if keep:
            return cls(fd, slots)
        try:
            counters = cls(fd, slots)
        finally:
            os.close(fd)
        counters._fd = -1
        return counters

    def fileno(self) -> int:
        """
        The shared memory's descriptor (closed by L{close}); -1 once
        closed, or if adopted without C{keep}.
        """
        return self._fd

    def _head(self, slot: int, copy: int) -> tuple[int, int]:
        sequence, length = _HEAD.unpack_from(self._map, slot * SLOT + copy * COPY)
        return sequence, length

    def publish(self, slot: int, state: dict[str, Any]) -> None:
        """
        Write C{state} into C{slot}; only that slot's worker may (or, once
        it has died, the parent).
        """
        data = json.dumps(state, separators=(",", ":")).encode()
        if len(data) > COPY - _HEAD.size:
            raise ValueError(f"state of {len(data)} bytes does not fit a slot")
        heads = [self._head(slot, 0), self._head(slot, 1)]
        odd = [copy for copy in (0, 1) if heads[copy][0] % 2]
        # A copy left odd was being written by a writer that died: it holds
        # nothing whole, so write that one; else the older one.
        copy = odd[0] if odd else min((0, 1), key=lambda c: heads[c][0])
        top = max(heads[0][0], heads[1][0])
        top += top % 2  # numbers above any seen, odd then even
        base = slot * SLOT + copy * COPY
        _HEAD.pack_into(self._map, base, top + 1, 0)
        self._map[base + _HEAD.size : base + _HEAD.size + len(data)] = data
        _HEAD.pack_into(self._map, base, top + 2, len(data))

    def read(self, slot: int) -> dict[str, Any] | None:
        """
        The state last published whole in C{slot}, or C{None} if none was.
        Never fails: a copy left half-written is passed over.
        """
        for _ in range(_TRIES):
            newest: tuple[int, dict[str, Any]] | None = None
            torn = False
            for copy in (0, 1):
                before, length = self._head(slot, copy)
                if before % 2 or not length:
                    continue  # being written (or its writer died), or empty
                start = slot * SLOT + copy * COPY + _HEAD.size
                data = self._map[start : start + length]
                if self._head(slot, copy)[0] != before:
                    torn = True
                    break
                try:
                    state = json.loads(data)
                except ValueError:
                    continue
                if newest is None or before > newest[0]:
                    newest = (before, state)
            if not torn:
                # A copy that changed while read means the writer moved on
                # past the other one too: only an untorn look is current.
                found = None if newest is None else newest[1]
                self._last[slot] = found
                return found
        # A writer that never pauses for that long: what was last seen.
        return self._last.get(slot)

    def bury(self, slot: int) -> int:
        """
        The writer of C{slot} has died: count the requests it last said were
        pending as ended by the server (L{Ending.WORKER_DIED}), and return
        how many they were, and give back what it held against the limits
        (L{release}).  Its successor carries on from the slot.
        """
        self.release(slot)
        state = self.read(slot)
        if state is None:
            return 0
        pending: int = state["pending"]
        endings = dict(state["server_endings"])
        code = Ending.WORKER_DIED.code
        endings[code] = endings.get(code, 0) + pending
        # Written even with none pending: it makes the slot whole again.  No
        # process writes it until the next worker does.
        buried = {**state, "pending": 0, "server_endings": endings, "pid": None}
        self.publish(slot, buried)
        return pending

    def limits(self, slot: int) -> SharedLimits:
        """
        The limit counts written by the worker of C{slot}, read with every
        other slot's (pass it to L{Limits} as C{counts}).
        """
        return SharedLimits(self, slot)

    def release(self, slot: int) -> None:
        """
        Give back what the worker of C{slot} held against the limits: it
        has died (or not started yet), so holds nothing.
        """
        begin = slot * _WORDS
        self._words[begin : begin + _WORDS] = memoryview(bytes(8 * _WORDS)).cast("q")

    def beat(self, slot: int, now: int) -> None:
        """
        Say that the worker of C{slot} is alive at C{now} (nanoseconds of
        C{time.monotonic_ns}, one clock for every process); 0 forgets its
        beats, for a new worker that has not beaten yet.
        """
        _BEAT.pack_into(self._map, SLOT * self.slots + slot * _BEAT.size, now)

    def last_beat(self, slot: int) -> int:
        """
        When the worker of C{slot} last beat (see L{beat}), 0 if never.
        """
        (now,) = _BEAT.unpack_from(self._map, SLOT * self.slots + slot * _BEAT.size)
        return int(now)

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
        """
        Unmap the memory and close its descriptor, if still open.
        """
        self._words.release()
        self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _bucket(client: str) -> int:
    # A hash every process agrees on (Python's own is salted per process).
    return zlib.crc32(client.encode("utf-8", "surrogatepass")) % BUCKETS


class SharedLimits:
    """
    The counts of the L{Limits} for the whole server (a
    L{twisted_close.ledger.LimitCounts}): each worker writes its own slot's,
    and reads the sum over every slot, so that no writes race.

    A client's count is kept in one of L{BUCKETS} buckets picked by a hash
    of its address: two clients whose addresses share a bucket share a cap,
    which only makes it stricter for them.
    """

    def __init__(self, shared: SharedCounters, slot: int) -> None:
        self._words = shared._words
        self._slots = shared.slots
        self._mine = slot * _WORDS

    def _sum(self, offset: int) -> int:
        # One word of every slot: a strided view, summed without a loop here.
        return sum(self._words[offset::_WORDS])

    def total(self, stream: bool) -> int:
        return self._sum(1 if stream else 0)

    def of(self, stream: bool, client: str) -> int:
        return self._sum(2 + (BUCKETS if stream else 0) + _bucket(client))

    def add(self, stream: bool, client: str | None, step: int) -> None:
        words, mine = self._words, self._mine
        words[mine + (1 if stream else 0)] += step
        if client is not None:
            at = mine + 2 + (BUCKETS if stream else 0) + _bucket(client)
            words[at] += step
