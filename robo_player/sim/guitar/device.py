"""``sim://`` for a guitar or bass spec: the stream of commands played on the simulated
guitar (:mod:`.physics`) and heard through the piano's microphone model
(:class:`~robo_player.sim.sensor.Microphone`).

Options as for the piano (``truth_seed``, ``truth`` (a file or a
:class:`~.truth.GuitarTruth`), ``sensor_seed``, ``timing_sd_us``, ``loudness_sd``,
``sensor``, and with ``sensor=audio`` the room's ``snr_db``, ``gain_db``, ``rt60_s``,
``offset_s``, ``drift_ppm``, ``sample_rate``). With ``sensor=audio`` each stream's
performance carries ``audio``: a :class:`~robo_player.sim.room.RoomTake` of the sounded
notes in the guitar's voice (Karplus-Strong, :mod:`.audio`; buzzed notes with their
rattle) through the room, as a microphone by the guitar records it. The guitar's default
sensor is :data:`DEFAULT_SENSOR`.

The coils' commands go through the one pulse/hold expansion
(:func:`robo_player.actuation.expand_commands`); a carriage's ``MOVE`` goes to the
simulated MCU's step generator (:mod:`robo_player.motion`, the firmware's trapezoid at the spec's speed and
acceleration; a move sent while the carriage still steps starts when its steps end),
whose step times the physics reads; a hobby servo's ``MOVE`` to the firmware's pulse
train (:class:`robo_player.servo.ServoTrain`), whose pulses the physics reads. The
physics never sees the plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...actuation import (
    OutputColumns,
    actuator_pwm_max,
    check_order,
    check_stream_commands,
    expand_commands,
    positioner_max,
)
from ...errors import TransportError
from ...motion import move_steps
from ...performance import Performance, Progress
from ...plan import Command, Op
from ...servo import FRAME_US, SLOT_US, train_of_moves
from ...spec.actuators import ActuatorKind
from ...spec.guitar import GuitarSpec, servo_carriages
from .. import sensor
from ..device import SimDevice
from ..instrument import _int_opt, spread_option
from ..sensor import Microphone
from ..spread import SPREAD_DEFAULT
from .audio import render_audio
from .physics import CarriageSteps, GuitarNotes, GuitarPhysics, ServoPulses
from .truth import GuitarTruth

# the guitar's sensor when none is asked for: a microphone in the room, as the piano's
# (sim/sensor.py), so that the calibration hears through audio unless told otherwise
# (sim://?sensor=notes: the note-level sensor). Through audio the take's level is anchored
# on the strings' full-drive picks (6 or 4) against the nominal unless the microphone's
# gain is given (calibrate --mic-gain-db): docs/guitar.md "Calibration"
DEFAULT_SENSOR = sensor.DEFAULT_SENSOR


class GuitarInstrument:
    """The guitar of ``spec`` with hidden ``truth``, heard through ``microphone``."""

    def __init__(self, spec: GuitarSpec, truth: GuitarTruth, microphone: Microphone,
                 spread: bool = SPREAD_DEFAULT) -> None:  # fmt: skip
        self.spec = spec
        self._truth = truth  # hidden: only the simulator may read it
        self.physics = GuitarPhysics(spec, truth, spread=spread)
        self.microphone = microphone
        self.last_notes: GuitarNotes | None = None  # exact, for the simulator's own tests
        self._carriages = {a.index for a in spec.actuators.of_kind(ActuatorKind.POSITIONER)}
        self._servos = set(servo_carriages(spec))

    def hear(self, outputs: Any, steps: dict[int, CarriageSteps | ServoPulses] | None = None,
             progress: Progress | None = None) -> Performance:  # fmt: skip
        """Play ``outputs`` (and ``steps``). Without ``steps`` (a firmware port: the
        driver hands over its trace's changes) the carriages' changes in ``outputs`` are
        their steps: each the position after a step, read from the step and dir pins
        (:mod:`robo_player.driver.trace`); a servo's are its pulses (rise, width µs)."""
        if steps is None:
            outputs, steps = split_steps(outputs, self._carriages, self._servos)
        perf, notes = self.physics.run(outputs, steps, progress)
        self.last_notes = notes
        buzzes = [int(b["t_us"]) for b in perf.extra.get("buzzes", [])]
        self.microphone.listen(perf, notes.sounded(), self.physics.clicks_us, buzzes_us=buzzes)
        return perf

    def energised(self) -> list[int]:
        return self.physics.energised()


def carriage_steps(positioners: dict[int, Any], moves: list[Command], pos: dict[int, int],
                   free: dict[int, float]) -> dict[int, CarriageSteps]:  # fmt: skip
    """The steps of ``moves`` (time order) as the firmware's step generator makes them
    (:mod:`robo_player.motion`'s trapezoid at the spec's speed and acceleration; a move
    asked while its carriage still steps starts when the steps end). ``pos`` and
    ``free`` (each carriage's position and the time of its last step) are updated."""
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for c in moves:
        a = positioners[c.actuator]
        per_mm = a.pwm_max / a.travel_mm
        start = max(float(c.t_us), free.get(c.actuator, 0.0))
        p0 = pos.get(c.actuator, 0)
        t = move_steps(p0, c.position, int(start), a.max_speed_mm_s * per_mm,
                       a.accel_mm_s2 * per_mm)  # fmt: skip
        if not len(t):
            continue
        sign = 1 if c.position > p0 else -1
        parts.setdefault(c.actuator, []).append((t, p0 + sign * np.arange(1, len(t) + 1, dtype=np.int64)))
        pos[c.actuator] = c.position
        free[c.actuator] = float(t[-1])
    return {a: CarriageSteps(np.concatenate([x[0] for x in v]), np.concatenate([x[1] for x in v]))
            for a, v in parts.items()}  # fmt: skip


def servo_pulses(servos: dict[int, Any], moves: list[Command]) -> dict[int, ServoPulses]:
    """The pulses of ``moves`` (time order) as the firmware's train makes them
    (:class:`robo_player.servo.ServoTrain`: slots in actuator order, the frames from the
    first move), up to two frames after the last move."""
    train = train_of_moves(servos, moves)
    last = max((c.t_us for c in moves), default=0)
    out: dict[int, list[tuple[int, int]]] = {}
    for rise, a, w in train.pulses(last + 2 * FRAME_US + SLOT_US):
        out.setdefault(a, []).append((rise, w))
    return {a: ServoPulses(np.array([r for r, _ in v], dtype=np.int64), np.array([w for _, w in v], dtype=np.int64))
            for a, v in out.items()}  # fmt: skip


def split_steps(outputs: OutputColumns, carriages: set[int], servos: set[int] | None = None,
                ) -> tuple[OutputColumns, dict[int, CarriageSteps | ServoPulses]]:  # fmt: skip
    """The coils' changes, and each carriage's steps (its changes: the position after
    each step, in time order; a servo's in ``servos``: its pulses, rise and width)."""
    is_car = np.isin(outputs.actuator, np.fromiter(carriages, dtype=np.int64, count=len(carriages)))
    coils = OutputColumns(outputs.t_us[~is_car], outputs.actuator[~is_car],
                          outputs.level[~is_car], outputs.pwm_max[~is_car])  # fmt: skip
    steps: dict[int, CarriageSteps | ServoPulses] = {}
    for a in sorted(carriages):
        m = outputs.actuator == a
        if m.any():
            kind = ServoPulses if a in (servos or ()) else CarriageSteps
            steps[a] = kind(outputs.t_us[m].astype(np.int64), outputs.level[m].astype(np.int64))
    return coils, steps


def guitar_instrument(url: str, spec: GuitarSpec, opts: dict[str, Any]) -> GuitarInstrument:
    """The instrument the options ask for (takes its options out of ``opts``)."""
    spread = spread_option(url, opts)
    truth = opts.pop("truth", None)
    truth_seed = opts.pop("truth_seed", None)
    if truth is not None and truth_seed is not None:
        raise TransportError(f"{url}: give either truth or truth_seed, not both")
    if isinstance(truth, GuitarTruth):
        the_truth, where = truth, "<truth>"
    elif truth is not None:
        if not isinstance(truth, str | Path):
            raise TransportError(f"{url}: option truth={truth!r} must be a file path")
        the_truth, where = GuitarTruth.load(truth), str(truth)
    else:
        seed = 0 if truth_seed is None else _int_opt(url, "truth_seed", truth_seed)
        the_truth, where = GuitarTruth.draw(spec, seed), f"truth_seed={seed}"
    the_truth.check_for(spec, where)
    return GuitarInstrument(spec, the_truth, _microphone(url, opts), spread=spread)


def _microphone(url: str, opts: dict[str, Any]) -> Microphone:
    """The piano's microphone with the same options; with ``sensor=audio`` its room
    records the guitar's voice."""
    opts.setdefault("sensor", DEFAULT_SENSOR)
    if "voice" in opts:
        raise TransportError(f"{url}: option voice= is the piano's (the guitar has its own voice)")
    mic = sensor.microphone_from_options(url, opts)
    mic.render = render_audio  # Karplus-Strong, not the piano's voice
    return mic


class GuitarSimDevice(SimDevice):
    """A simulated guitar or bass behind the :class:`~robo_player.driver.ports.Device`
    protocol (the piano's ``sim://`` stream, with carriages)."""

    def __init__(self, url: str, spec: GuitarSpec, instrument: GuitarInstrument) -> None:
        super().__init__(url, spec, instrument)  # type: ignore[arg-type]
        self.instrument: GuitarInstrument = instrument  # type: ignore[assignment]
        self._servos = servo_carriages(spec)
        self._positioners = {a.index: a for a in spec.actuators.of_kind(ActuatorKind.POSITIONER)
                             if a.index not in self._servos}  # fmt: skip
        self._travel = positioner_max(spec)
        self._car_pos = {a: 0 for a in self._positioners}  # where the step generator left each
        self._car_free = {a: 0.0 for a in self._positioners}  # absolute: its last step

    @property
    def _truth(self) -> GuitarTruth:  # type: ignore[override]
        return self.instrument._truth

    def _check(self, cmds: list[Command]) -> None:
        """check_commands for coils, and MOVEs against the positioners (PlanError)."""
        check_stream_commands(cmds, self._pwm_max, self._travel, self.spec.name, self._submitted)

    def submit(self, commands: Sequence[Command]) -> None:
        self._check_open("submit")
        cmds = list(commands)
        self._check(cmds)
        last = check_order(cmds, self._last_t, self.url, self._submitted)
        first_t = cmds[0].t_us if cmds else 0
        if not self._submitted:
            self._first_t = first_t
        self._submitted += len(cmds)
        self._last_t = last
        for c in cmds:
            if c.t_us >= self._now_us:
                self._cmds.append(c)
            elif c.op is Op.RELEASE:  # late, but a release still runs when it arrives
                self._cmds.append(Command(int(self._now_us), c.op, c.actuator, note=c.note))
                self._late_release += 1
            else:
                self._late += 1

    def _steps(self, moves: list[Command]) -> dict[int, CarriageSteps | ServoPulses]:
        """The simulated MCU's step generator: each move's steps, one move after another;
        a servo's pulses."""
        steppers = [c for c in moves if c.actuator not in self._servos]
        out: dict[int, CarriageSteps | ServoPulses] = {}
        out.update(carriage_steps(self._positioners, steppers, self._car_pos, self._car_free))
        out.update(servo_pulses(self._servos, [c for c in moves if c.actuator in self._servos]))
        return out

    def _end(self, progress: Progress | None = None, flush: bool = False) -> Performance:
        cmds, played, flushed, late, late_rel = self._ending(flush)
        self._cmds, self._late, self._late_release = [], 0, 0
        self._submitted, self._now_us, self._last_t = 0, -math.inf, -1
        moves = sorted((c for c in cmds if c.op is Op.MOVE), key=lambda c: c.t_us)
        coils = [c for c in cmds if c.op is not Op.MOVE]
        outputs = expand_commands(coils, self._pwm_max, self.spec.name, checked=True)
        self._car_free = {a: 0.0 for a in self._positioners}  # a new stream's time
        perf = self.instrument.hear(outputs, self._steps(moves), progress)
        counts = {"played": played, "late": late, "late_release": late_rel, "flushed": flushed}
        perf.extra["commands"] = {k: v for k, v in counts.items() if v}
        self.last_performance = perf
        return perf


def open_guitar_sim(url: str, spec: GuitarSpec, merged: dict[str, Any]) -> GuitarSimDevice:
    """The simulated guitar for ``spec`` with the (already merged, checked) options."""
    dev = GuitarSimDevice(url, spec, guitar_instrument(url, spec, dict(merged)))
    dev._pwm_max = actuator_pwm_max(spec)
    return dev


__all__ = [
    "GuitarInstrument",
    "GuitarSimDevice",
    "carriage_steps",
    "guitar_instrument",
    "open_guitar_sim",
    "servo_pulses",
    "split_steps",
]
