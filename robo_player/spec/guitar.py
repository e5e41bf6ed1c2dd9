"""The guitar and bass families: strings, neck, carriages, fret solenoids, and their map.

Two mechanisms (``neck.mechanism``):

- ``matrix``: a solenoid at every string and fret (``strings[].fret_channels``, one
  global channel per fret 1..frets), a picker and a damper per string.
- ``slider``: per string a carriage (a positioner: stepper on step/dir or hobby servo)
  that slides along the neck with a presser solenoid on it, a picker and a damper.

Geometry: fret ``n`` lies ``d(n) = L (1 - 2^(-n/12))`` mm from the nut (``L`` the scale
length). A carriage presses fret ``n`` one third of the way back from the fret wire
toward fret ``n-1`` (where a finger presses); position 0 is the nut (parked; the
string sounds open). A stepper carriage's moves follow a trapezoidal speed profile
(maximum speed, acceleration), a hobby servo's wait for its next pulse (up to a 20 ms
frame) and run at its speed (:mod:`robo_player.servo`); then they settle
(:func:`carriage_move_us`).

Strings are numbered in the order the spec lists them (0 = the first, by convention
the lowest). Roles in the actuator map: ``pick:S``, ``damp:S``, ``press:S``,
``carriage:S``, ``fret:S:F``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import ClassVar

from .actuators import Actuator, ActuatorKind, ActuatorMap
from .model import (
    DriverBoard,
    DriverKind,
    NominalCurves,
    PowerSpec,
    SyncClickSpec,
    ThermalSpec,
    spec_hash,
)

__all__ = [
    "DAMPER_LIFT_US",
    "PICKER_LOUDNESS_TOLERANCE",
    "CarriageSpec",
    "GuitarSpec",
    "GuitarTiming",
    "Mechanism",
    "NeckSpec",
    "OutputSpec",
    "StringSpec",
    "carriage_move_us",
    "damper_lift_us",
    "fret_distance_mm",
    "guitar_actuators",
    "press_position_mm",
    "servo_carriages",
    "travel_us",
]


# A picker's full-drive loudness lies within this fraction of the nominal curve's (120 +-
# 10: the simulator's truth draws 110..130, sim/guitar/truth.py PICK_GAIN). The take's
# level through audio is anchored on the nominal: this is what one string's pick can be
# off by (calibrator/guitar_listening.py, hearing/level.py).
PICKER_LOUDNESS_TOLERANCE = 10.0 / 120.0


class Mechanism(Enum):
    MATRIX = "matrix"  # a solenoid at every string and fret
    SLIDER = "slider"  # a carriage per string with a presser on it


class CarriageDrive(Enum):
    STEP_DIR = "step_dir"  # stepper driver: step and direction pins
    SERVO = "servo"  # hobby servo: 50 Hz pulse width


@dataclass(frozen=True, slots=True)
class NeckSpec:
    mechanism: str  # Mechanism value
    scale_length_mm: float  # nut to bridge
    neck_length_mm: float  # nut to the end of the fretboard: room for frets
    frets: int  # highest fret the mechanism can press
    capo: int  # 0: none; n: every string sounds n semitones up, frets n+1.. usable


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """A coil output: picker, damper or presser."""

    channel: int  # global actuator index
    board: str
    pwm_bits: int


@dataclass(frozen=True, slots=True)
class CarriageSpec:
    """A carriage's positioner. Position counts 0..2**pwm_bits-1 span 0..travel_mm."""

    channel: int
    board: str
    pwm_bits: int  # position resolution (counts of the travel)
    drive: str  # CarriageDrive value
    travel_mm: float  # from the nut to the far end of its travel
    max_speed_mm_s: float
    accel_mm_s2: float
    settle_us: int  # after the move, before the presser may press
    # drive: servo (absent for step_dir; the loader fills a servo's defaults): the pulse
    # width at 0 and at the travel, and its frame rate (the firmware's: 50 Hz)
    pulse_min_us: int | None = field(default=None, metadata={"hashed": "if set"})
    pulse_max_us: int | None = field(default=None, metadata={"hashed": "if set"})
    frame_hz: int | None = field(default=None, metadata={"hashed": "if set"})


@dataclass(frozen=True, slots=True)
class StringSpec:
    tuning: int  # MIDI pitch of the open string (without capo)
    picker: OutputSpec
    damper: OutputSpec
    presser: OutputSpec | None = None  # slider
    carriage: CarriageSpec | None = None  # slider
    fret_channels: tuple[int, ...] | None = None  # matrix: fret 1..frets


@dataclass(frozen=True, slots=True)
class GuitarTiming:
    pipeline_delay_us: int  # every note is held back by this much
    pick_pulse_us: int  # picker pulse
    min_repeat_us: int  # shortest pick-to-pick interval on one string
    fret_settle_us: int  # fret pressed this long before the pick (25 ms on GT GuitarBot)
    press_pulse_us: int  # full-drive pulse of a presser or fret solenoid, then hold
    press_hold_duty: float  # hold duty of a presser or fret solenoid
    release_us: int  # a released presser is clear of the string after this
    damp_us: int  # damper pulse: the string is silent after it
    min_sound_us: int  # shortest a picked note may ring before it is cut
    travel_margin: float  # carriage travel time padded by this fraction (MechBass: 0.15)
    # a damper's felt is off the string at most this long after its coil goes off (None:
    # DAMPER_LIFT_US, :func:`damper_lift_us`); hashed only when set, so a spec without it
    # keeps its hash and its plans
    damper_lift_us: int | None = field(default=None, metadata={"hashed": "if set"})


@dataclass(frozen=True, slots=True)
class GuitarSpec:
    """A guitar or bass (``instrument: guitar | bass``): shared part, neck, strings."""

    FAMILY_NAMES: ClassVar[tuple[str, ...]] = ("guitar", "bass")

    name: str
    description: str
    instrument: str  # "guitar" | "bass"
    boards: tuple[DriverBoard, ...]
    neck: NeckSpec
    strings: tuple[StringSpec, ...]
    timing: GuitarTiming
    nominal: NominalCurves  # picker: drive -> velocity, latency
    thermal: ThermalSpec
    power: PowerSpec
    # the hearing's time reference, as the piano's (a piezo by the microphone on a spare
    # output: docs/guitar.md "Calibration"); plans and calibrations do not depend on it,
    # so it is not part of the content hash
    sync_click: SyncClickSpec | None = field(default=None, metadata={"hashed": False})
    actuators: ActuatorMap = field(init=False, repr=False, compare=False)
    _positions: tuple[tuple[tuple[int, int], ...], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "actuators", guitar_actuators(self))
        object.__setattr__(self, "_positions", tuple(self._positions_of(p) for p in range(128)))

    @property
    def family(self) -> str:
        return self.instrument

    @property
    def spec_hash(self) -> str:
        return spec_hash(self)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism(self.neck.mechanism)

    def open_pitch(self, string: int) -> int:
        """Pitch of the string with nothing pressed (capo included)."""
        return self.strings[string].tuning + self.neck.capo

    @property
    def lowest(self) -> int:
        return min(self.open_pitch(s) for s in range(len(self.strings)))

    @property
    def highest(self) -> int:
        return max(s.tuning for s in self.strings) + self.neck.frets

    def has_pitch(self, pitch: int) -> bool:
        return bool(self.positions(pitch))

    def positions(self, pitch: int) -> list[tuple[int, int]]:
        """Every (string, fret) that sounds ``pitch``; fret 0 is the open string."""
        if 0 <= pitch < 128:
            return list(self._positions[pitch])
        return []

    def _positions_of(self, pitch: int) -> tuple[tuple[int, int], ...]:
        out = []
        capo, top = self.neck.capo, self.neck.frets
        for s, st in enumerate(self.strings):
            f = pitch - st.tuning
            if f == capo:
                out.append((s, 0))
            elif capo < f <= top:
                out.append((s, f))
        return tuple(out)

    @property
    def pipeline_delay_us(self) -> int:
        return self.timing.pipeline_delay_us


# A damper's lift where the spec gives none (``timing.damper_lift_us``): nothing measures
# it; the simulator's truth draws 2-6 ms (docs/guitar.md "Simulator"), and 8 ms was the
# planner's constant before it was a spec field.
DAMPER_LIFT_US = 8_000


def damper_lift_us(spec: GuitarSpec) -> int:
    """How long after its damper's coil goes off a string may sound again (the felt
    lifting): ``timing.damper_lift_us``, else :data:`DAMPER_LIFT_US`. The file planner
    (``fingering.Layout``) and the live one both wait it out."""
    lift = spec.timing.damper_lift_us
    return DAMPER_LIFT_US if lift is None else lift


# ---- geometry and travel -------------------------------------------------------------


def fret_distance_mm(scale_length_mm: float, n: int) -> float:
    """Nut to fret wire ``n``: ``L (1 - 2^(-n/12))`` (equal temperament)."""
    return scale_length_mm * (1.0 - 2.0 ** (-n / 12.0))


def press_position_mm(scale_length_mm: float, n: int) -> float:
    """Where a carriage presses fret ``n``: a third back from the wire; 0 at the nut."""
    if n <= 0:
        return 0.0
    d1, d0 = fret_distance_mm(scale_length_mm, n), fret_distance_mm(scale_length_mm, n - 1)
    return d1 - (d1 - d0) / 3.0


def servo_carriages(spec: object) -> dict[int, CarriageSpec]:
    """actuator -> its carriage, for every hobby-servo carriage (``drive: servo``) of a
    spec (none for a spec without strings)."""
    return {c.channel: c for st in getattr(spec, "strings", ())
            if (c := st.carriage) is not None and c.drive == CarriageDrive.SERVO.value}  # fmt: skip


def carriage_move_us(car: CarriageSpec, distance_mm: float) -> float:
    """A carriage's move over ``distance_mm`` (µs), before it settles: a stepper's
    trapezoid (:func:`travel_us`), a hobby servo's wait for its next frame plus the
    distance at its speed (:func:`robo_player.servo.move_us`)."""
    if car.drive == CarriageDrive.SERVO.value:
        from ..servo import move_us

        return move_us(distance_mm, car.max_speed_mm_s)
    return travel_us(distance_mm, car.max_speed_mm_s, car.accel_mm_s2)


def travel_us(distance_mm: float, max_speed_mm_s: float, accel_mm_s2: float) -> float:
    """Time (µs) to move ``distance_mm`` from rest to rest: trapezoidal speed profile
    (triangular when the distance is too short to reach the maximum speed)."""
    d = abs(distance_mm)
    if d == 0.0:
        return 0.0
    v, a = max_speed_mm_s, accel_mm_s2
    if d >= v * v / a:
        t = d / v + v / a
    else:
        t = 2.0 * math.sqrt(d / a)
    return t * 1e6


# ---- actuator map ----------------------------------------------------------------------


def _first_index(boards: tuple[DriverBoard, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    first = 0
    for b in boards:
        out[b.id] = first
        first += b.channels
    return out


def board_of(boards: tuple[DriverBoard, ...], channel: int) -> DriverBoard | None:
    """The board whose block holds global ``channel`` (None outside every block)."""
    first = 0
    for b in boards:
        if first <= channel < first + b.channels:
            return b
        first += b.channels
    return None


def guitar_actuators(spec: GuitarSpec, source: str | None = None) -> ActuatorMap:
    """Coils for pickers, dampers, pressers and fret solenoids; positioners for carriages;
    the hearing's click (``sync_click``: a piezo off its own small supply, never held)."""
    first = _first_index(spec.boards)
    boards = {b.id: b for b in spec.boards}
    p, th, t = spec.power, spec.thermal, spec.timing
    full_a = p.supply_v / p.coil_ohm
    heat = p.supply_v * p.supply_v / p.coil_ohm / th.coil_heat_capacity_j_per_k
    entries: list[Actuator] = []

    def add(channel: int, board: str, bits: int, role: str, pulse_us: int, hold: float,
            kind: ActuatorKind = ActuatorKind.COIL, car: CarriageSpec | None = None) -> None:  # fmt: skip
        b = boards.get(board)
        full_travel = 0
        if car is not None:
            far = press_position_mm(spec.neck.scale_length_mm, spec.neck.frets)
            full_travel = round(carriage_move_us(car, far)) + car.settle_us
        entries.append(
            Actuator(
                index=channel,
                kind=kind,
                board=board,
                board_kind=b.kind if b is not None else DriverKind.DIRECT,
                output=channel - first.get(board, 0),
                pwm_bits=bits,
                role=role,
                max_on_us=th.max_on_us,
                max_pulse_us=pulse_us,
                hold_duty=hold,
                full_a=full_a if car is None else 0.0,
                on_supply=car is None,
                heat_k_per_s=heat,
                tau_s=th.coil_tau_s,
                max_rise_k=th.coil_max_rise_k,
                i2c_address=b.i2c_address if b is not None else None,
                travel_us=full_travel,
                travel_mm=car.travel_mm if car is not None else 0.0,
                max_speed_mm_s=car.max_speed_mm_s if car is not None else 0.0,
                accel_mm_s2=car.accel_mm_s2 if car is not None else 0.0,
                settle_us=car.settle_us if car is not None else 0,
            )
        )

    for s, st in enumerate(spec.strings):
        add(st.picker.channel, st.picker.board, st.picker.pwm_bits, f"pick:{s}", t.pick_pulse_us, 0.0)
        add(st.damper.channel, st.damper.board, st.damper.pwm_bits, f"damp:{s}", t.damp_us, 0.0)
        if st.presser is not None:
            pr = st.presser
            add(pr.channel, pr.board, pr.pwm_bits, f"press:{s}", t.press_pulse_us, t.press_hold_duty)
        if st.carriage is not None:
            c = st.carriage
            add(c.channel, c.board, c.pwm_bits, f"carriage:{s}", 0, 0.0, ActuatorKind.POSITIONER, c)
        for f, ch in enumerate(st.fret_channels or (), start=1):
            b = board_of(spec.boards, ch)
            bid = b.id if b is not None else "?"
            bits = b.pwm_bits if b is not None else 1
            add(ch, bid, bits, f"fret:{s}:{f}", t.press_pulse_us, t.press_hold_duty)
    if spec.sync_click is not None:
        sc = spec.sync_click
        add(sc.channel, sc.board, sc.pwm_bits, "sync_click", sc.pulse_us, 0.0)
        entries[-1] = replace(entries[-1], on_supply=False)
    return ActuatorMap(
        tuple(entries),
        supply_a=p.supply_a,
        max_concurrent=p.max_simultaneous_strikes,
        source=source or f"spec {spec.name!r}",
    )
