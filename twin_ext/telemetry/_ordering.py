# SPDX-License-Identifier: Apache-2.0
"""Sequence-number bookkeeping: duplicates, late (out-of-order) samples, gaps, wrap and restarts.

Sequence numbers are uint32 and compared with serial-number arithmetic (RFC 1982): ``b`` is newer
than ``a`` when ``(b - a) mod 2**32`` is in ``(0, 2**31)``, so the wrap from ``2**32 - 1`` to ``0``
is just "one newer". A bitmask remembers which of the last ``window`` sequence numbers were
accepted, which tells a duplicate (seen) from a late sample (never seen, but older than the
newest). Neither is accepted: the estimator wants samples in source order.

A robot that restarts announces it with a new birth (new ``boot_id``) and `reset` is called. A
restart without a birth shows up as a jump back by more than ``window``; after
``restart_confirm`` consecutive such samples that continue each other, the tracker accepts the
new numbering (counted in `resets`) — a single stray old sample never resets it.
"""

from __future__ import annotations

import enum

from ._messages import SEQ_MODULUS

__all__ = ["SeqVerdict", "SequenceTracker"]

_HALF = SEQ_MODULUS // 2
_MASK32 = SEQ_MODULUS - 1


class SeqVerdict(enum.Enum):
    """What `SequenceTracker.check` decided about one sequence number."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"


class SequenceTracker:
    """Classifies sequence numbers of one robot boot; not thread-safe (one feeding thread).

    Args:
        window: how many recent sequence numbers are remembered (duplicate vs late), and how far
            back a number may be before it counts as a possible restart.
        restart_confirm: consecutive far-back, self-consistent numbers that confirm an
            unannounced restart.
        max_gap: forward jumps larger than this are counted in `jumps`, not in `gaps`
            (a robot restarting with a random first sequence number is not "lost messages").
    """

    def __init__(self, *, window: int = 1024, restart_confirm: int = 3, max_gap: int = 100_000) -> None:
        if window < 1 or restart_confirm < 1 or max_gap < 1:
            raise ValueError("window, restart_confirm and max_gap must be >= 1")
        self.window = int(window)
        self.restart_confirm = int(restart_confirm)
        self.max_gap = int(max_gap)
        self._window_mask = (1 << self.window) - 1
        self.gaps = 0
        """Sequence numbers skipped when the newest advanced (upper bound of lost messages)."""
        self.late = 0
        """Late (out-of-order) numbers that had been counted in `gaps` (so lost ≈ gaps - late)."""
        self.jumps = 0
        """Forward jumps larger than ``max_gap``."""
        self.resets = 0
        """Unannounced restarts accepted (sequence numbering started over without a new birth)."""
        self.reset()

    def reset(self) -> None:
        """Forget the numbering (a new boot): the next number is accepted whatever it is."""
        self.last: int | None = None
        self._seen = 0  # bit i set <=> (last - i) mod 2**32 was accepted
        self._candidate: int | None = None
        self._candidate_run = 0

    def check(self, seq: int) -> SeqVerdict:
        """Classify ``seq`` and, if accepted, make it the newest."""
        last = self.last
        if last is None:
            self._accept_first(seq)
            return SeqVerdict.ACCEPT
        ahead = (seq - last) & _MASK32
        if ahead == 0:
            return SeqVerdict.DUPLICATE
        if ahead < _HALF:
            if ahead - 1 > self.max_gap:
                self.jumps += 1
            else:
                self.gaps += ahead - 1
            self._seen = ((self._seen << ahead) | 1) & self._window_mask if ahead < self.window else 1
            self.last = seq
            self._candidate = None
            self._candidate_run = 0
            return SeqVerdict.ACCEPT
        behind = SEQ_MODULUS - ahead
        if behind < self.window:
            bit = 1 << behind
            if self._seen & bit:
                return SeqVerdict.DUPLICATE
            self._seen |= bit  # a second copy of this late sample is then a duplicate
            self.late += 1
            return SeqVerdict.OUT_OF_ORDER
        # Far behind: a stray old sample, or the robot restarted and counts from a new start.
        cand = self._candidate
        if cand is not None and 0 < ((seq - cand) & _MASK32) <= self.window:
            self._candidate_run += 1
        else:
            self._candidate_run = 1
        self._candidate = seq
        if self._candidate_run >= self.restart_confirm:
            self.resets += 1
            self._accept_first(seq)
            return SeqVerdict.ACCEPT
        return SeqVerdict.OUT_OF_ORDER

    def _accept_first(self, seq: int) -> None:
        self.last = seq
        self._seen = 1
        self._candidate = None
        self._candidate_run = 0
