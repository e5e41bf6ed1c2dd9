"""The firmware's actuation trace: what its outputs did, and when.

The host build writes ``clock actuator level`` lines (a step/dir carriage: one per
step, its position after it; a hobby servo: one per pulse, its rise and its width in
µs); the simavr harness writes ``clock kind addr channel level`` lines (an output, not
an actuator: :func:`read_trace` maps it back through ``out_map``, and turns a
carriage's step and dir pins into its positions, a servo's pin into its pulses) and ``#`` lines with its clock, cycle counts, resets
and exit. A device's backend hands its trace to the driver, which measures actuation
errors against it (:mod:`.accuracy`) and turns it into output changes in performance
time (:func:`outputs_from_trace`) for an instrument that listens to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..actuation import OutputColumns
from ..errors import TransportError
from ..protocol.messages import OutKind


@dataclass(slots=True)
class Trace:
    """Output changes of one firmware run: ``(clock, actuator, level)``."""

    clock_hz: int = 0
    boot_id: int = 0
    changes: list[tuple[int, int, int]] = field(default_factory=list)
    cycles: int = 0  # simavr: total cycles
    busy: int = 0  # simavr: cycles awake
    wall_s: float = 0.0  # simavr: wall seconds it ran (cycles / clock_hz / wall_s = its speed)
    irq_off_cycles: int = 0  # simavr: the longest stretch with interrupts off (cycles)
    irq_off_pc: str = ""  # simavr: where it began and ended ("0x... to 0x...", byte addresses)
    stack_bytes: int = 0  # simavr: the deepest stack (bytes below RAMEND)
    # simavr: (cycles, busy) at each simulated second
    samples: list[tuple[int, int]] = field(default_factory=list)
    # simavr: trace clocks of the MCU's resets (the harness's RESET pin; the boards stay)
    resets: list[int] = field(default_factory=list)
    exited: bool = False
    # actuators whose trace is on/off under software PWM (direct AVR pins): their levels
    # come from :func:`soft_pwm_levels`; a release there has no edge of its own when it
    # falls in the PWM's off time
    soft_pwm: set[int] = field(default_factory=set)

    def busy_between(self, start: int, end: int) -> list[float]:
        """The CPU's awake share in each simulated second that lies wholly within
        cycles ``start..end`` (simavr traces only; empty when none does). The trace's
        clocks count from Timer1's start, a few hundred cycles after the CPU's."""
        return [
            (b1 - b0) / (c1 - c0)
            for (c0, b0), (c1, b1) in pairwise(self.samples)
            if c0 >= start and c1 <= end and c1 > c0
        ]


def read_trace(path: Path, out_map: dict[tuple[int, int, int], int] | None = None) -> Trace:
    """Parse a host (``clock actuator level``) or simavr (``clock kind addr channel level``)
    trace; ``out_map`` maps (kind, addr, channel) to the actuator for the latter."""
    return TraceReader(path, out_map).read(final=True)


class TraceReader:
    """A firmware's trace file read while the firmware writes it (it only grows): each
    :meth:`read` parses the complete lines written since the last one into the same
    :class:`Trace` (a line not finished yet waits for its newline, but at the end:
    ``final``). The host build flushes its trace on every pass of its loop (at least
    every 5 ms), the simavr harness line by line."""

    def __init__(self, path: Path, out_map: dict[tuple[int, int, int], int] | None = None) -> None:
        self.path = path
        self.trace = Trace()
        self._out_map = out_map or {}
        self._steps = _StepPins(self._out_map)
        self._servos = _ServoPins(self._out_map)
        self._pos = 0  # bytes of the file parsed
        self._line = 0  # lines parsed (for the error's place)

    def read(self, final: bool = False) -> Trace:
        try:
            with self.path.open("rb") as f:
                f.seek(self._pos)
                data = f.read()
        except OSError as err:
            raise TransportError(f"{self.path}: cannot read the firmware trace: {err.strerror}") from err
        end = len(data) if final else data.rfind(b"\n") + 1
        self._pos += end
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            self._line += 1
            self._parse(line)
        return self.trace

    def _parse(self, line: str) -> None:
        t = self.trace
        if line.startswith("#"):
            _parse_comment(t, line[1:].split())
            return
        f = line.split()
        try:
            if len(f) == 3:
                t.changes.append((int(f[0]), int(f[1]), int(f[2])))
            elif len(f) == 5:
                key = (int(f[1]), int(f[2]), int(f[3]))
                a = self._out_map.get(key)
                if a is not None:
                    t.changes.append((int(f[0]), a, int(f[4])))
                elif self._servos.pins and key[0] == OutKind.DIRECT and key[2] in self._servos.pins:
                    self._servos.edge(int(f[0]), key[2], int(f[4]), t.clock_hz, t.changes)
                elif self._steps.pins and key[0] == OutKind.DIRECT:
                    self._steps.edge(int(f[0]), key[2], int(f[4]), t.changes)
            elif f:
                raise ValueError(f"{len(f)} fields")
        except ValueError as err:
            raise TransportError(f"{self.path}:{self._line}: bad trace line {line!r}: {err}") from err


def _parse_comment(t: Trace, words: list[str]) -> None:
    """A ``#`` line of a trace: its clock, boot id, cycle counts, resets and exit."""
    for w in words:
        k, _, v = w.partition("=")
        if k == "clock_hz":
            t.clock_hz = int(v)
        elif k == "boot_id":
            t.boot_id = int(v, 0)
    if len(words) >= 4 and words[0] == "cycles" and words[2] == "busy":
        t.cycles, t.busy = int(words[1]), int(words[3])
        t.samples.append((t.cycles, t.busy))
        if len(words) >= 6 and words[4] == "wall":
            t.wall_s = float(words[5])
    if words[:5] == ["interrupts", "off", "for", "at", "most"] and len(words) >= 6:
        t.irq_off_cycles = int(words[5])
        if len(words) >= 12 and words[7:9] == ["(from", "pc"]:
            t.irq_off_pc = f"{words[9]} to {words[11].rstrip(';')}"
    if words[:3] == ["stack", "pointer", "at"] and len(words) >= 6:
        t.stack_bytes = int(words[5].lstrip("("))
    if words[:3] == ["mcu", "reset", "at"] and len(words) >= 7:
        t.resets.append(int(words[6]))
    if words[:1] == ["exit"]:
        t.exited = True


class _StepPins:
    """A step/dir carriage's pins (OutKind.STEP_DIR: step on output ``ch``, dir on
    ``ch + 1``) in a simavr trace: each rising step edge moves the carriage one count,
    up while the dir pin is high; it becomes a change ``(clock, carriage, position)``.
    The position counts from 0 at the trace's start (the carriage parked at the nut)
    and follows the pins across MCU resets (the carriage stays where it is)."""

    def __init__(self, out_map: Mapping[tuple[int, int, int], int]) -> None:
        self.pins = {ch: a for (k, _addr, ch), a in out_map.items() if k == OutKind.STEP_DIR}
        self.level = dict.fromkeys(self.pins, 0)
        self.up = dict.fromkeys(self.pins, 0)
        self.pos = dict.fromkeys(self.pins, 0)

    def edge(self, clock: int, ch: int, level: int, changes: list[tuple[int, int, int]]) -> None:
        if ch in self.pins:
            if level and not self.level[ch]:
                self.pos[ch] += 1 if self.up[ch] else -1
                changes.append((clock, self.pins[ch], self.pos[ch]))
            self.level[ch] = level
        elif ch - 1 in self.pins:
            self.up[ch - 1] = level


class _ServoPins:
    """A hobby servo's pin (OutKind.SERVO on output ``ch``) in a simavr trace: each pulse
    becomes a change ``(rise clock, servo, width in µs)`` at its falling edge, as the
    host build writes it (a pulse the trace ends while up: none)."""

    def __init__(self, out_map: Mapping[tuple[int, int, int], int]) -> None:
        self.pins = {ch: a for (k, _addr, ch), a in out_map.items() if k == OutKind.SERVO}
        self.rise: dict[int, int | None] = dict.fromkeys(self.pins)

    def edge(self, clock: int, ch: int, level: int, clock_hz: int,
             changes: list[tuple[int, int, int]]) -> None:  # fmt: skip
        rise = self.rise[ch]
        if level and rise is None:
            self.rise[ch] = clock
        elif not level and rise is not None:
            changes.append((rise, self.pins[ch], round((clock - rise) * 1e6 / (clock_hz or 1e6))))
            self.rise[ch] = None


# The AVR's software PWM on direct pins (firmware/boards/avr/out_pwm.h RP_SOFT_PWM_HZ;
# a test holds the two equal): a level between off and full drive is a duty of this
# period, Timer3 at 2 MHz with TOP = 2e6 / SOFT_PWM_HZ - 1
SOFT_PWM_HZ = 490
SOFT_PWM_PERIOD_US = (2_000_000 // SOFT_PWM_HZ) / 2.0  # 2041.0 µs: (TOP + 1) ticks of 0.5 µs


def _pulse_trains(edges: list[tuple[float, int]], period_us: float) -> list[list[tuple[float, float]]]:
    """On-intervals ``(on, off)`` of one pin, split into trains: a pin off for longer
    than a period (plus a margin for a late interrupt) starts a new train."""
    intervals: list[tuple[float, float]] = []
    on: float | None = None
    for t, lv in edges:
        if lv and on is None:
            on = t
        elif not lv and on is not None:
            intervals.append((on, t))
            on = None
    if on is not None:
        intervals.append((on, float("inf")))  # on at the trace's end
    trains: list[list[tuple[float, float]]] = []
    gap = period_us * 2.5  # (one period start lost under a long timer context)
    for iv in intervals:
        if trains and iv[0] - trains[-1][-1][1] <= gap:
            trains[-1].append(iv)
        else:
            trains.append([iv])
    return trains


def _train_levels(
    train: list[tuple[float, float]], period_us: float, pwm_max: int, tol: float
) -> list[tuple[float, int]]:
    """A train's levels ``(t, counts)``: what the pin delivered, period by period.

    An on-interval longer than a period is full drive; otherwise the pin runs PWM and a
    period's duty is its on-time from the period's start on the firmware's fixed grid
    (a late interrupt delays a rising edge, never the grid) over the period. Periods
    within ``tol`` of their segment's median form one level; a lone outlier (an
    interrupt that came late, the release cutting the last period) stays in its segment
    without moving its median; a change starts a new level when the next two periods
    keep it. A train's first stretch (a strike mid-period runs on into the next period's
    on-time) takes the median of the three periods after it. A later level starts at the
    falling edge that ended the one before (the firmware switches the pin off at a
    pulse's end); the train ends at its last falling edge (level 0).
    """
    n = len(train)
    # The firmware's period starts lie on a fixed grid (Timer3 in CTC mode); a late
    # interrupt only delays an edge. The grid's phase: the earliest rising edge of the
    # train's periods, modulo the period.
    rises = [on for on, _off in train[1:]]
    phase = None
    if rises:
        r0 = rises[0]
        phase = r0 + min(((r - r0 + period_us / 2) % period_us) - period_us / 2 for r in rises)
    # (start, duty) per period or full-on stretch
    periods: list[tuple[float, float]] = []
    start = train[0][0]  # the last period's start on the grid
    for k, (on, off) in enumerate(train):
        if off - on > period_us * 1.05 and not (k == 0 < n - 1 and off - on < 2.05 * period_us):
            periods.append((on, 1.0))
            start = on
            continue
        start = on
        if k and phase is not None:  # the grid's start of this period (<= the edge)
            start = phase + round((on - phase) / period_us) * period_us
            start = min(start, on)
        if k + 1 < n or k == 0:
            nxt = train[k + 1][0] if k + 1 < n else on + period_us
            span = period_us if k else max(nxt - on, 1e-9)
        else:
            span = period_us
        periods.append((on, min(1.0, max(0.0, off - start) / span)))
    if n > 2 and periods[0][1] != 1.0 or n == 2 and train[0][1] - train[0][0] < 2.05 * period_us:
        # a strike mid-period runs on into the next period's on-time (up to two periods):
        # its first stretch is not a period of its own; it carries the level after it
        periods[0] = (periods[0][0], float(np.median([d for _t, d in periods[1:4]])))
    segs: list[list[float]] = []  # [start, duties...]
    starts: list[float] = []
    for k, (t, d) in enumerate(periods):
        if segs:
            cur = segs[-1]
            med = float(np.median(cur))
            if abs(d - med) <= tol:
                cur.append(d)
                continue
            # a change lasts: the next two periods stay with it (or the one left)
            after = [x[1] for x in periods[k + 1 : k + 3]]
            persistent = bool(after) and all(abs(x - d) <= tol for x in after)
            if not persistent:
                continue  # a lone outlier (or the last period, cut by the release)
        segs.append([d])
        # a new level starts where the old one's last on-time ended (the firmware
        # switches the pin off at a pulse's end), the first at the strike's edge
        starts.append(train[k - 1][1] if k else t)
    out: list[tuple[float, int]] = []
    last = -1
    for t, duties in zip(starts, segs, strict=True):
        lv = max(1, min(pwm_max, round(float(np.median(duties)) * pwm_max)))
        if lv != last:
            out.append((t, lv))
            last = lv
    end = train[-1][1]
    if end != float("inf"):
        # A release in the PWM's off time has no edge of its own: the pin went off at its
        # duty's end and the next period start did not turn it on. The release came
        # between the two: take the middle (the last falling edge was up to a period
        # early on average half the off time, which gave every key a longer return
        # before its next strike than on sim://, so near-threshold re-strikes came out
        # stronger and earlier). A release that cut the period's on-time short is its edge.
        d_last = periods[-1][1]
        if phase is not None and n > 1 and d_last < 1.0 and d_last >= float(np.median(segs[-1])) - tol:
            end = (end + max(end, start + period_us)) / 2
        out.append((end, 0))
    return out


def soft_pwm_levels(
    trace: Trace,
    actuators: set[int],
    pwm_max: Mapping[int, int],
    period_us: float = SOFT_PWM_PERIOD_US,
) -> list[tuple[int, int, int]]:
    """The trace's on/off changes of ``actuators`` (direct AVR pins under software PWM)
    as levels in counts: ``(clock, actuator, level)``, from the measured on-time within
    each PWM period (never from the plan). Other actuators' changes pass unchanged."""
    hz = trace.clock_hz or 1_000_000
    per_act: dict[int, list[tuple[float, int]]] = {}
    out: list[tuple[int, int, int]] = []
    for clock, a, lv in trace.changes:
        if a in actuators:
            per_act.setdefault(a, []).append((clock * 1e6 / hz, lv))
        else:
            out.append((clock, a, lv))
    for a, edges in per_act.items():
        pm = pwm_max.get(a, 1)
        tol = max(1.5 / pm, 0.004)
        for train in _pulse_trains(edges, period_us):
            for t, lv in _train_levels(train, period_us, pm, tol):
                out.append((round(t * hz / 1e6), a, lv))
    out.sort(key=lambda c: c[0])
    return out


def outputs_from_trace(
    trace: Trace,
    t_us_for: Callable[[int], float],
    pwm_max: Mapping[int, int],
    binary: set[int],
) -> OutputColumns:
    """The trace's output changes in performance time, as levels in counts.

    ``binary``: actuators whose trace says only on/off (direct AVR pins under software
    PWM): their levels are measured from the pin's on-time in each PWM period
    (:func:`soft_pwm_levels`).
    """
    changes = soft_pwm_levels(trace, binary, pwm_max) if binary else trace.changes
    ot: list[int] = []
    oa: list[int] = []
    ol: list[int] = []
    for clock, a, level in changes:
        if a not in pwm_max:
            continue
        t = round(t_us_for(clock))
        if t >= 0:
            ot.append(t)
            oa.append(a)
            ol.append(min(level, pwm_max[a]))
    t_arr = np.asarray(ot, dtype=np.int64)
    a_arr = np.asarray(oa, dtype=np.int64)
    l_arr = np.asarray(ol, dtype=np.int64)
    o = np.lexsort((a_arr, t_arr))
    pm = np.asarray([pwm_max[a] for a in a_arr.tolist()], dtype=np.int64)
    return OutputColumns(t_arr[o], a_arr[o], l_arr[o], pm[o])


__all__ = [
    "SOFT_PWM_HZ",
    "SOFT_PWM_PERIOD_US",
    "Trace",
    "TraceReader",
    "outputs_from_trace",
    "read_trace",
    "soft_pwm_levels",
]
