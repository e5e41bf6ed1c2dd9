"""Hobby-servo carriages: the firmware's pulse train, one rule for the C firmware's
Python model (:mod:`robo_player.sim.vmcu`), ``sim://`` and the planner (docs/guitar.md,
"Hobby-servo carriages"; the C: ``firmware/boards/avr/out_servo_gen.h``).

A servo's position ``p`` (0..travel counts) is a pulse of :func:`width_us`: ``pulse_min``
at 0, ``pulse_max`` at the travel, in between on the straight line (integer, rounded
half up, as the C computes it). The board sends the servos their pulses one after
another in a frame of :data:`FRAME_US` (50 Hz): each servo has a slot of
:data:`SLOT_US`; slot ``k``'s pulse rises
at ``frame + k * SLOT_US`` and lasts its width. The frames start at the first move the
board takes (its clock) and follow one another.

- The slots are given at configure, in the order of the servos' actuators (a slot per
  output, kept until reset).
- A move at clock ``c`` sets the width of its servo's pulses that rise at or after
  ``c`` (until the next move); a servo's first pulse is the first of its slot that rises
  at or after its first move (before that it gets none: an unpowered servo stays).
- All-off (watchdog, shutdown) stops the train at its clock: every pin low at once (a
  pulse that was up ends there, short), no pulse rises after it; the next move starts
  the frames again from its own clock, every servo at the width it had.

So a move's new width reaches the servo within one frame of its clock
(:func:`frame_wait_us`: the planner counts the whole frame), and the carriage then
travels at the servo's speed (no acceleration phase) and settles: :func:`move_us`.

The hold (the firmware refuses a press while its carriage may move, REFUSED_BUSY): a
servo has no feedback, so the board bounds its motion from what it sent. Each servo is
configured with its speed, :func:`us_per_width_us` (µs per µs of pulse width, rounded
up), and its settle (``configure_servo``); a move taken at clock ``c`` to width ``w``
holds the carriage busy to a press on its presser from ``c`` to :func:`hold_until`: its
first pulse at ``w`` (the first of its slot rising at or after ``c``) + the width change
at that speed + the settle. The change counts from the width it was last sent (before
its first move: its width at 0, as the carriages are parked at the nut at boot, the
planner's and the steppers' rule), and from the end of a hold that still runs at that
first pulse (the carriage may not be there yet); a move to the width it was sent holds
nothing more. A servo without a ``configure_servo`` is held for the
slowest (:data:`MAX_US_PER_WIDTH_US`, :data:`MAX_SETTLE_US`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FRAME_US",
    "MAX_SERVOS",
    "MAX_SETTLE_US",
    "MAX_US_PER_WIDTH_US",
    "PULSE_MAX_US",
    "PULSE_MIN_US",
    "SLOT_US",
    "ServoTrain",
    "carriage_width_us",
    "compare_pulses",
    "train_of_moves",
    "frame_wait_us",
    "hold_until",
    "move_us",
    "us_per_width_us",
    "position_mm",
    "width_us",
]

FRAME_US = 20_000  # 50 Hz
SLOT_US = 2_500  # a servo's share of the frame: 8 servos
MAX_SERVOS = FRAME_US // SLOT_US
# the spec's allowed pulse widths: a pulse and a gap of >= 100 µs fit in a slot
PULSE_MIN_US = 500
PULSE_MAX_US = SLOT_US - 100
# configure_servo's ranges (the protocol's: robo_player/protocol/messages.py): a full
# travel under 24 s, a settle under 65.5 ms (the AVR's hold, 16-bit widths in ticks
# times the speed, stays in 31 bits of its clock)
MAX_US_PER_WIDTH_US = 10_000
MAX_SETTLE_US = 65_535


def width_us(position: int, travel: int, pulse_min_us: int, pulse_max_us: int) -> int:
    """The pulse width (µs) of ``position`` (0..``travel`` counts): the C's integer rule."""
    span = pulse_max_us - pulse_min_us
    return pulse_min_us + (position * span + travel // 2) // max(travel, 1)


def carriage_width_us(car: Any, position: int) -> int:
    """:func:`width_us` of a servo carriage's spec (``CarriageSpec``: its ``pwm_bits``
    counts, its pulse range, which the loader fills for ``drive: servo``)."""
    return width_us(position, (1 << car.pwm_bits) - 1, int(car.pulse_min_us), int(car.pulse_max_us))


def position_mm(width: float, pulse_min_us: float, pulse_max_us: float, travel_mm: float) -> float:
    """Where a servo drives its carriage for a pulse of ``width`` µs (clamped to its
    range, as a servo ignores what lies outside it)."""
    w = min(max(width, pulse_min_us), pulse_max_us)
    return (w - pulse_min_us) / (pulse_max_us - pulse_min_us) * travel_mm


def frame_wait_us() -> int:
    """The longest a move's new width waits for its servo's next pulse: one frame."""
    return FRAME_US


def move_us(distance_mm: float, speed_mm_s: float) -> float:
    """A servo carriage's move (µs) before it settles: the wait for the next frame (the
    whole frame: the planner does not know its phase) plus the distance at the servo's
    speed (no acceleration phase: a servo runs at its speed at once); 0 for no move."""
    if distance_mm == 0.0:
        return 0.0
    return frame_wait_us() + abs(distance_mm) / speed_mm_s * 1e6


def us_per_width_us(car: Any) -> int:
    """A servo carriage's speed as ``configure_servo`` sends it: µs per µs of pulse width
    (its full travel's time over its pulse range), rounded up (the hold is never shorter
    than the servo's move)."""
    travel_us = round(car.travel_mm / car.max_speed_mm_s * 1e6, 3)
    span = int(car.pulse_max_us) - int(car.pulse_min_us)
    return -int(-travel_us // span)


def hold_until(first_rise: int, width: int, last: int | None, held: int | None, rate: int,
               settle: int, ticks_per_us: int, home: int) -> int | None:  # fmt: skip
    """The clock a move's hold ends (None: a move to the width it was sent, nothing more):
    its first pulse at ``width`` (µs) rising at ``first_rise`` (or the end ``held`` of a
    hold still running then), the change from ``last`` (the width it was last sent, None
    before its first move: ``home``, its width at 0) at ``rate`` µs a µs of width, then
    ``settle`` µs (out_servo_gen.h rp_servo_set, on the clock's ticks)."""
    if last is None:
        last = home
    if last == width:
        return None
    d = abs(width - last)
    base = held if held is not None and held > first_rise else first_rise
    return base + d * ticks_per_us * rate + settle * ticks_per_us


@dataclass(slots=True)
class _Servo:
    actuator: int
    slot: int
    moves: list[tuple[int, int]] = field(default_factory=list)  # (clock, width), in order
    rate: int = MAX_US_PER_WIDTH_US  # configure_servo (unset: the slowest)
    settle: int = MAX_SETTLE_US
    presser: int | None = None  # the hold's presser and end clock
    until: int | None = None


@dataclass
class ServoTrain:
    """The board's servo pulses by the rule above, on the MCU's clock (``ticks_per_us``
    ticks a µs): ``add`` each servo's output at configure (its slot), ``move`` at each
    move the board takes, ``stop`` at each all-off; ``pulses`` gives every pulse
    ``(rise, actuator, width_us)`` that rose before a clock, in time order."""

    ticks_per_us: int = 1
    max_servos: int = MAX_SERVOS
    servos: dict[int, _Servo] = field(default_factory=dict)  # by output (pin)
    # runs of the frames: (first frame's clock, the all-off that ended it or None)
    runs: list[tuple[int, int | None]] = field(default_factory=list)
    _cursor: int = -(1 << 62)  # take(): the pulses rising before this are taken

    def add(self, pin: int, actuator: int = -1) -> bool:
        """Output ``pin``'s slot (the next free one; kept until reset); False when every
        slot is taken."""
        if pin not in self.servos:
            if len(self.servos) >= self.max_servos:
                return False
            self.servos[pin] = _Servo(actuator, len(self.servos))
        return True

    def rate(self, pin: int, us_per_width_us: int, settle_us: int) -> bool:
        """configure_servo: output ``pin``'s speed and settle (False: no slot there)."""
        sv = self.servos.get(pin)
        if sv is None:
            return False
        sv.rate, sv.settle = us_per_width_us, settle_us
        return True

    def unrate(self, pin: int) -> None:
        """configure_actuator: the speed and settle unset (the slowest) until its
        configure_servo."""
        sv = self.servos[pin]
        sv.rate, sv.settle = MAX_US_PER_WIDTH_US, MAX_SETTLE_US

    def move(self, pin: int, actuator: int, width: int, clock: int,
             presser: int | None = None, home: int = 0) -> bool:  # fmt: skip
        """A move's width (µs) from ``clock`` on; False without a slot. With a
        ``presser``, the carriage is held busy to it (:func:`hold_until`, ``home`` its
        width at 0 in µs)."""
        if not self.add(pin, actuator):
            return False
        sv = self.servos[pin]
        sv.actuator = actuator
        tpu = self.ticks_per_us
        if not self.runs or self.runs[-1][1] is not None:
            self.runs.append((clock, None))
            first = clock + sv.slot * SLOT_US * tpu
        else:
            r0 = self.runs[-1][0] + sv.slot * SLOT_US * tpu
            frame = FRAME_US * tpu
            first = r0 if clock <= r0 else r0 + -(-(clock - r0) // frame) * frame
        if presser is not None:
            last = sv.moves[-1][1] if sv.moves else None
            until = hold_until(first, width, last, sv.until, sv.rate, sv.settle, tpu, home)
            if until is not None:
                sv.presser, sv.until = presser, until
        sv.moves.append((clock, width))
        return True

    def busy(self, presser: int, clock: int) -> bool:
        """board_output_busy: a carriage whose presser is ``presser`` may move at ``clock``."""
        return any(sv.presser == presser and sv.until is not None and sv.until >= clock
                   for sv in self.servos.values())  # fmt: skip

    def stop(self, clock: int) -> None:
        """All-off at ``clock``: the train stops (pins low)."""
        if self.runs and self.runs[-1][1] is None:
            self.runs[-1] = (self.runs[-1][0], clock)

    def pulses(self, until: int) -> list[tuple[int, int, int]]:
        """Every pulse that rose before ``until``: ``(rise, actuator, width_us)`` in time
        order (a pulse an all-off cut short: its width to the all-off)."""
        return self._rising(0, until, all_runs=True)

    def take(self, until: int) -> list[tuple[int, int, int]]:
        """The pulses over by ``until`` that no call took before (each pulse once, a
        model's trace as its clock runs): those rising a slot before it, and every pulse
        of a train an all-off stopped by then."""
        slot = SLOT_US * self.ticks_per_us
        hi = until - slot
        if self.runs and self.runs[-1][1] is not None and self.runs[-1][1] <= until:
            hi = self.runs[-1][1]
        if hi <= self._cursor:
            return []
        out = self._rising(self._cursor, hi)
        self._cursor = hi
        return out

    def _rising(self, lo: int, hi: int, all_runs: bool = False) -> list[tuple[int, int, int]]:
        """The pulses rising in ``lo..hi - 1``."""
        tpu = self.ticks_per_us
        frame, slot = FRAME_US * tpu, SLOT_US * tpu
        out: list[tuple[int, int, int]] = []
        for sv in self.servos.values():
            clocks = [c for c, _w in sv.moves]
            for start, end in self.runs:
                last = hi if end is None else min(end, hi)
                r0 = start + sv.slot * slot
                f = 0 if all_runs or lo <= r0 else -(-(lo - r0) // frame)
                r = r0 + f * frame
                while r < last:
                    k = bisect_right(clocks, r)
                    if k:
                        w = sv.moves[k - 1][1]
                        if end is not None and r + w * tpu > end:
                            w = (end - r) // tpu
                        out.append((r, sv.actuator, w))
                    r += frame
        out.sort()
        return out


def train_of_moves(servos: Mapping[int, Any], moves: Iterable[Any],
                   clock_for: Callable[[int], float] | None = None,
                   ticks_per_us: int = 1) -> ServoTrain:  # fmt: skip
    """The train a board makes of plan ``moves`` (time order) to the servo carriages
    ``servos`` (actuator -> carriage spec): slots in actuator order (the configure
    order), each move at ``clock_for(t_us)`` (its clock on the board; default: t_us)."""
    train = ServoTrain(ticks_per_us=ticks_per_us)
    for a in sorted(servos):
        train.add(a, a)
    for c in moves:
        if c.actuator in servos:
            clock = int(clock_for(c.t_us)) if clock_for is not None else int(c.t_us)
            train.move(c.actuator, c.actuator, carriage_width_us(servos[c.actuator], c.position), clock)
    return train


def compare_pulses(want: list[tuple[int, int, int]], got: list[tuple[int, int, int]],
                   ticks_per_us: float) -> tuple[list[float], list[float], int]:  # fmt: skip
    """Pulses ``(rise, actuator, width_us)`` a board made (``got``: a trace's, in time
    order) against the rule's (``want``: :meth:`ServoTrain.pulses` on the same clock):
    each paired pulse's |width error| (µs) and its rise's delay (µs), and the pulses
    left unpaired on either side (a pair: the same servo, rises within half a slot).
    Each servo's last pulse is left out (a closing all-off may cut it short, as it
    should), and the rule's pulses after it."""
    half = SLOT_US * ticks_per_us / 2
    widths: list[float] = []
    rises: list[float] = []
    off = 0
    for a in sorted({p[1] for p in want} | {p[1] for p in got}):
        g = [(c, w) for c, aa, w in got if aa == a][:-1]
        wl = [(r, w) for r, aa, w in want if aa == a and (not g or r <= g[-1][0] + half)]
        wr = [r for r, _w in wl]
        paired = 0
        for clock, w in g:
            k = bisect_right(wr, clock - half)
            if k < len(wr) and abs(wr[k] - clock) <= half:
                widths.append(float(abs(w - wl[k][1])))
                rises.append((clock - wr[k]) / ticks_per_us)
                paired += 1
        off += (len(g) - paired) + (len(wl) - paired)
    return widths, rises, off
