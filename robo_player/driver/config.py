"""What the firmware is told: the configuration a spec's actuator map asks for, and
each plan command as the wire's timed command."""

from __future__ import annotations

import math

from .. import rules
from ..errors import PlanError, SpecError
from ..plan import Command
from ..plan import Op as PlanOp
from ..protocol.messages import PCA_OSC_HZ, PCA_PRESCALE_DEFAULT, Message, Op, OutKind
from ..protocol.schedule import TimedCommand
from ..servo import MAX_SETTLE_US, MAX_US_PER_WIDTH_US, us_per_width_us
from ..spec.actuators import Actuator, ActuatorKind
from ..spec.guitar import CarriageSpec, servo_carriages
from ..spec.model import DriverKind, InstrumentSpec


def actuator_outputs(spec: InstrumentSpec) -> dict[int, tuple[int, int, int, int]]:
    """actuator -> (out_kind, out_addr, out_channel, pwm_max), from the actuator map
    (a step/dir carriage: :func:`stepper_output`; a hobby servo: OutKind.SERVO on its
    direct output, ``out_addr`` the presser on its carriage)."""
    out: dict[int, tuple[int, int, int, int]] = {}
    pressers = _pressers(spec)
    steppers = _step_dir(spec)
    servos = servo_carriages(spec)
    for act in spec.actuators:
        if act.index in steppers and act.board_kind is DriverKind.DIRECT:
            out[act.index] = stepper_output(act, pressers.get(act.index, act.index))
            continue
        if act.index in servos and act.board_kind is DriverKind.DIRECT:
            out[act.index] = (int(OutKind.SERVO), pressers.get(act.index, act.index), act.output,
                              act.pwm_max)  # fmt: skip
            continue
        kind = OutKind.PCA9685 if act.board_kind is DriverKind.PCA9685 else OutKind.DIRECT
        addr = act.i2c_address or 0 if kind is OutKind.PCA9685 else 0
        out[act.index] = (int(kind), addr, act.output, act.pwm_max)
    return out


def _step_dir(spec: InstrumentSpec) -> set[int]:
    """The positioners on a stepper driver (a carriage's ``drive: step_dir``)."""
    drive = {c.channel: c.drive for st in getattr(spec, "strings", ()) if (c := st.carriage)}
    return {a.index for a in spec.actuators
            if a.kind is ActuatorKind.POSITIONER and drive.get(a.index, "step_dir") == "step_dir"}  # fmt: skip


def _pressers(spec: InstrumentSpec) -> dict[int, int]:
    """carriage actuator -> the presser on it (roles ``carriage:s`` and ``press:s``)."""
    by_role = {a.role: a.index for a in spec.actuators}
    return {
        a.index: by_role[f"press:{a.role.split(':', 1)[1]}"]
        for a in spec.actuators
        if a.role.startswith("carriage:") and f"press:{a.role.split(':', 1)[1]}" in by_role
    }


def stepper_output(act: Actuator, presser: int) -> tuple[int, int, int, int]:
    """A carriage on a stepper driver (OutKind.STEP_DIR): output ``o`` of its direct
    board drives the MCU's outputs ``2 o`` (step) and ``2 o + 1`` (dir); ``out_addr`` is
    the presser on its carriage, which the firmware refuses to strike while it moves
    (its own index: none)."""
    if not 0 <= presser <= 127:
        raise SpecError(
            f"actuator {act.index} ({act.role}): its presser is actuator {presser}; the "
            "firmware's configuration carries 0..127 there"
        )
    if 2 * act.output + 1 > 255:
        raise SpecError(f"actuator {act.index} ({act.role}): output {act.output} out of range "
                        "for a step/dir pair (allowed 0..127)")  # fmt: skip
    return (int(OutKind.STEP_DIR), presser, 2 * act.output, act.pwm_max)


def stepper_rates(act: Actuator) -> tuple[int, int]:
    """A carriage's top speed (steps/s) and acceleration (steps/s²): position counts
    per mm times the spec's mm/s and mm/s², rounded as :func:`robo_player.motion.profile`
    rounds them (the firmware's configuration carries them in max_pulse_us, max_on_us)."""
    per_mm = act.pwm_max / act.travel_mm
    return round(act.max_speed_mm_s * per_mm), round(act.accel_mm_s2 * per_mm)


def pca_prescale(spec: InstrumentSpec) -> int:
    """The PCA9685 PRE_SCALE for the spec's ``pwm_hz`` (the nearest the chip has:
    25 MHz / (4096 (prescale + 1))). The firmware runs every board at one frequency,
    so boards that ask for different ones are refused; no PCA9685 board: the default."""
    hz = {b.id: b.pwm_hz for b in spec.boards if b.kind is DriverKind.PCA9685}
    if not hz:
        return PCA_PRESCALE_DEFAULT
    if len(set(hz.values())) > 1:
        each = ", ".join(f"{k} {v} Hz" for k, v in hz.items())
        raise SpecError(
            f"spec {spec.name!r}: boards[].pwm_hz: the firmware drives every PCA9685 board "
            f"at one PWM frequency; these differ ({each})"
        )
    f = next(iter(hz.values()))
    return max(3, min(255, round(PCA_OSC_HZ / (4096 * f)) - 1))


def actuator_duty_permille(act: Actuator) -> int:
    """The firmware's sustained-duty limit of one coil: :func:`robo_player.rules.duty_permille`."""
    return rules.duty_permille(act)


def duty_permille(spec: InstrumentSpec) -> int:
    """The lowest duty limit of the spec's actuators (the one a piano's coils share)."""
    return min((actuator_duty_permille(a) for a in spec.actuators), default=1000)


def configure_messages(
    spec: InstrumentSpec,
    *,
    watchdog_ms: int,
    time_shift: int,
    level_shift: int,
    watchdog_drain_ms: int = 0,
) -> list[Message]:
    """The firmware's configuration: every actuator's output and limits, from the map;
    the watchdog fires after ``watchdog_ms`` of silence and plays out the queue for at
    most ``watchdog_drain_ms`` (docs/protocol.md "Watchdog")."""
    amap = spec.actuators
    count = amap.count
    msgs = [
        Message.make(
            "configure_begin",
            actuator_count=count,
            max_concurrent=min(amap.max_concurrent, count),
            watchdog_ms=watchdog_ms,
            duty_window_ms=rules.map_duty_window_ms(amap),
            time_shift=time_shift,
            level_shift=level_shift,
            pca_prescale=pca_prescale(spec),
            watchdog_drain_ms=watchdog_drain_ms,
        )
    ]
    outs = actuator_outputs(spec)
    for i in range(count):
        act = amap.get(i)
        if act is None:  # a gap in the indices: an unused output of its board, or none
            ref = amap.entries[0]
            kind, addr, ch = _unused_output(spec, i)
            msgs.append(
                Message.make(
                    "configure_actuator", actuator=i, out_kind=kind, out_addr=addr,
                    out_channel=ch, pwm_max=1, max_drive=1, max_on_us=ref.max_on_us,
                    max_pulse_us=ref.max_pulse_us, duty_permille=actuator_duty_permille(ref),
                )
            )
            continue
        kind, addr, ch, pwm_max = outs[i]
        if kind == OutKind.SERVO:  # the travel, the pulse widths at 0 and at the travel
            car = servo_carriages(spec)[i]
            msgs.append(
                Message.make(
                    "configure_actuator", actuator=i, out_kind=kind, out_addr=addr,
                    out_channel=ch, pwm_max=pwm_max, max_drive=pwm_max,
                    max_on_us=car.pulse_max_us, max_pulse_us=car.pulse_min_us,
                    duty_permille=1000,
                )
            )  # fmt: skip
            msgs.append(servo_rate_message(spec, i, car))
            continue
        if kind == OutKind.STEP_DIR:  # the positioner's travel, speed and acceleration
            speed, accel = stepper_rates(act)
            msgs.append(
                Message.make(
                    "configure_actuator", actuator=i, out_kind=kind, out_addr=addr,
                    out_channel=ch, pwm_max=pwm_max, max_drive=pwm_max,
                    max_on_us=max(1000, accel), max_pulse_us=min(speed, 65535),
                    duty_permille=1000,
                )
            )  # fmt: skip
            continue
        msgs.append(
            Message.make(
                "configure_actuator",
                actuator=i,
                out_kind=kind,
                out_addr=addr,
                out_channel=ch,
                pwm_max=pwm_max,
                max_drive=pwm_max,
                max_on_us=act.max_on_us,
                max_pulse_us=act.max_pulse_us,
                duty_permille=actuator_duty_permille(act),
            )
        )
    return msgs


def servo_rate_message(spec: InstrumentSpec, actuator: int, car: CarriageSpec) -> Message:
    """``configure_servo`` for a hobby-servo carriage: its speed (µs per µs of pulse
    width, rounded up) and settle, the numbers the planner's moves use; a carriage
    outside the protocol's ranges is a SpecError naming it."""
    rate = us_per_width_us(car)
    where = f"{spec.name}: carriage of actuator {actuator}"
    if not 0 <= rate <= MAX_US_PER_WIDTH_US:
        raise SpecError(
            f"{where}: travel_mm / max_speed_mm_s = {rate} us per us of pulse width, "
            f"allowed 0..{MAX_US_PER_WIDTH_US} (configure_servo)"
        )
    if not 0 <= car.settle_us <= MAX_SETTLE_US:
        raise SpecError(f"{where}: settle_us {car.settle_us}, allowed 0..{MAX_SETTLE_US} for a servo")
    return Message.make("configure_servo", actuator=actuator, us_per_width_us=rate,
                        settle_us=car.settle_us)  # fmt: skip


def _unused_output(spec: InstrumentSpec, index: int) -> tuple[int, int, int]:
    """A gap in the actuator indices: the board channel it numbers (boards own
    consecutive blocks of indices: a PCA9685 board's unused channel), so that no two
    slots share an output; past every board, direct channel 255 (the host build's)."""
    first = 0
    for b in spec.boards:
        if first <= index < first + b.channels:
            if b.kind is DriverKind.PCA9685:
                return int(OutKind.PCA9685), b.i2c_address or 0, index - first
            return int(OutKind.DIRECT), 0, index - first
        first += b.channels
    return int(OutKind.DIRECT), 0, 255


def time_shift_for(clock_hz: int) -> int:
    """The shift that makes the schedule's time unit the nearest power of two <= 1 µs."""
    return max(0, min(8, int(math.floor(math.log2(max(1, clock_hz) / 1e6)))))


def to_timed(cmd: Command, clock: int, pwm_max: int) -> TimedCommand:
    if cmd.op is PlanOp.PULSE_HOLD:
        return TimedCommand(clock, Op.STRIKE, cmd.actuator, cmd.drive, cmd.pulse_us, cmd.hold)
    if cmd.op is PlanOp.RELEASE:
        return TimedCommand(clock, Op.RELEASE, cmd.actuator)
    if cmd.op is PlanOp.SET:  # plan levels are PWM counts already (plan v2)
        return TimedCommand(clock, Op.SET, cmd.actuator, cmd.drive)
    if cmd.op is PlanOp.MOVE:  # protocol 5: schedule_move, the target in `level`
        return TimedCommand(clock, Op.MOVE, cmd.actuator, cmd.position)
    raise PlanError(f"plan command {cmd.op.value} at t_us={cmd.t_us}: not supported by the firmware yet")


__all__ = [
    "actuator_duty_permille",
    "actuator_outputs",
    "configure_messages",
    "duty_permille",
    "pca_prescale",
    "stepper_output",
    "stepper_rates",
    "time_shift_for",
    "to_timed",
]
