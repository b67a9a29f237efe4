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

Forward jumps are treated the same way: a number more than ``max_jump`` ahead of the newest is
HELD, not accepted, until ``restart_confirm`` numbers near it confirm the new numbering (then the
held ones are released in order: nothing is lost, they are a few samples late). Meanwhile the
old numbering goes on being accepted. So one message with ``seq = last + 1000`` (a spoof or a
corrupt counter) cannot make the next 1000 real samples "late": the real ones keep flowing and
the stray is discarded (`expire_held`, `discarded`) once the old numbering has gone on live for a
while; a genuine jump (samples lost on a QoS 0 link) costs ``restart_confirm - 1`` sample
periods of delay.
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
    HELD = "held"
    """Far ahead of the newest: kept aside until later numbers confirm it (`SequenceTracker.released`)."""
    CONFIRMED = "confirmed"
    """This number confirmed a held forward jump: the numbers in `SequenceTracker.released` (this one
    included) are accepted, in that order."""


class SequenceTracker:
    """Classifies sequence numbers of one robot boot; not thread-safe (one feeding thread).

    Args:
        window: how many recent sequence numbers are remembered (duplicate vs late), and how far
            back a number may be before it counts as a possible restart.
        restart_confirm: consecutive far-back, self-consistent numbers that confirm an
            unannounced restart.
        max_gap: forward jumps larger than this are counted in `jumps`, not in `gaps`
            (a robot restarting with a random first sequence number is not "lost messages").
        max_jump: forward gaps (skipped numbers) larger than this are held until confirmed;
            0 accepts every forward jump at once (the behaviour before holding existed).
    """

    def __init__(
        self,
        *,
        window: int = 1024,
        restart_confirm: int = 3,
        max_gap: int = 100_000,
        max_jump: int = 0,
    ) -> None:
        if window < 1 or restart_confirm < 1 or max_gap < 1 or max_jump < 0:
            raise ValueError("window, restart_confirm and max_gap must be >= 1, max_jump >= 0")
        self.window = int(window)
        self.restart_confirm = int(restart_confirm)
        self.max_gap = int(max_gap)
        self.max_jump = int(max_jump)
        self.released: list[int] = []
        """After `check` returned CONFIRMED (or ACCEPT with held numbers caught up): the numbers accepted
        by that call, in order. The caller delivers their samples and clears the list."""
        self.discarded: list[int] = []
        """Held numbers given up as strays (never confirmed); the caller refuses their samples and clears it."""
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
        """Forget the numbering (a new boot): the next number is accepted whatever it is. Held numbers
        are discarded (see `discarded`)."""
        self.last: int | None = None
        self._seen = 0  # bit i set <=> (last - i) mod 2**32 was accepted
        self._candidate: int | None = None
        self._candidate_run = 0
        held = getattr(self, "_held", None)
        if held:
            self.discarded.extend(held)
        self._held: list[int] = []  # far-ahead numbers awaiting confirmation, first = the candidate
        self._held_since = 0

    def fork(self) -> SequenceTracker:
        """An independent copy of the numbering (counters included; nothing held)."""
        twin = SequenceTracker(
            window=self.window,
            restart_confirm=self.restart_confirm,
            max_gap=self.max_gap,
            max_jump=self.max_jump,
        )
        twin.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("released", "discarded", "_held")})
        return twin

    def adopt(self, other: SequenceTracker) -> None:
        """Take over ``other``'s numbering (newest number, seen-bitmask, restart candidate); keep the counters."""
        self.last = other.last
        self._seen = other._seen
        self._candidate = other._candidate
        self._candidate_run = other._candidate_run

    def ahead(self, seq: int) -> int | None:
        """How far ``seq`` is ahead of the newest accepted number (serial arithmetic; negative: behind),
        or None before the first."""
        if self.last is None:
            return None
        ahead = (seq - self.last) & _MASK32
        return ahead if ahead < _HALF else ahead - SEQ_MODULUS

    @property
    def holding(self) -> int:
        """How many numbers are held awaiting confirmation."""
        return len(self._held)

    def check(self, seq: int, now_ns: int = 0) -> SeqVerdict:
        """Classify ``seq`` (arrived at twin time ``now_ns``) and, if accepted, make it the newest."""
        last = self.last
        if last is None:
            self._accept_first(seq)
            return SeqVerdict.ACCEPT
        ahead = (seq - last) & _MASK32
        if ahead == 0:
            return SeqVerdict.DUPLICATE
        if ahead < _HALF:
            if self.max_jump and ahead - 1 > self.max_jump:
                return self._hold(seq, now_ns)
            self._advance(seq, ahead)
            self._candidate = None
            self._candidate_run = 0
            if self._held:
                self._caught_up(now_ns)
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
        if self._held:
            self.discarded.extend(self._held)
            self._held = []

    def _advance(self, seq: int, ahead: int) -> None:
        if ahead - 1 > self.max_gap:
            self.jumps += 1
        else:
            self.gaps += ahead - 1
        self._seen = ((self._seen << ahead) | 1) & self._window_mask if ahead < self.window else 1
        self.last = seq

    def _hold(self, seq: int, now_ns: int) -> SeqVerdict:
        held = self._held
        if held:
            if seq in held:
                return SeqVerdict.DUPLICATE
            offset = (seq - held[0]) & _MASK32
            if min(offset, SEQ_MODULUS - offset) > self.window:  # another stray: give up the first one
                self.discarded.extend(held)
                held.clear()
        if not held:
            self._held_since = now_ns
        held.append(seq)
        if len(held) < self.restart_confirm:
            return SeqVerdict.HELD
        # Confirmed: the robot's numbering really jumped ahead. Accept the held numbers in order.
        last = self.last
        order = sorted(held, key=lambda s: (s - last) & _MASK32)
        held.clear()
        for s in order:
            self._advance(s, (s - self.last) & _MASK32)
        self._candidate = None
        self._candidate_run = 0
        self.released.extend(order)
        return SeqVerdict.CONFIRMED

    def held_age_ns(self, now_ns: int) -> int:
        """How long the oldest held number has been waiting (0 if none)."""
        return now_ns - self._held_since if self._held else 0

    def expire_held(self) -> None:
        """Give up the held numbers as strays (see `discarded`): the caller decides when (the ingest: after
        ``hold_s`` while the old numbering arrives live, i.e. it is not a backlog catching up)."""
        self.discarded.extend(self._held)
        self._held.clear()

    def _caught_up(self, now_ns: int) -> None:
        """The old numbering advanced: held numbers it came within ``max_jump`` of are ordinary reordered samples
        (released: e.g. a robot's client resending its outage backlog while new samples overtake it)."""
        held = self._held
        last = self.last
        close = [s for s in held if (s - last) & _MASK32 >= _HALF or ((s - last) & _MASK32) - 1 <= self.max_jump]
        for s in sorted(close, key=lambda s: (s - last) & _MASK32):
            held.remove(s)
            ahead = (s - self.last) & _MASK32
            if 0 < ahead < _HALF:
                self._advance(s, ahead)
                self.released.append(s)
            else:
                self.discarded.append(s)
