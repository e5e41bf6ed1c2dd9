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
from ..spec.actuators import Actuator
from ..spec.model import DriverKind, InstrumentSpec


def actuator_outputs(spec: InstrumentSpec) -> dict[int, tuple[int, int, int, int]]:
    """actuator -> (out_kind, out_addr, out_channel, pwm_max), from the actuator map."""
    out: dict[int, tuple[int, int, int, int]] = {}
    for act in spec.actuators:
        kind = OutKind.PCA9685 if act.board_kind is DriverKind.PCA9685 else OutKind.DIRECT
        addr = act.i2c_address or 0 if kind is OutKind.PCA9685 else 0
        out[act.index] = (int(kind), addr, act.output, act.pwm_max)
    return out


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
    slowest = max(amap, key=lambda a: a.tau_s, default=None)
    msgs = [
        Message.make(
            "configure_begin",
            actuator_count=count,
            max_concurrent=min(amap.max_concurrent, count),
            watchdog_ms=watchdog_ms,
            duty_window_ms=rules.duty_window_ms(slowest) if slowest else 1000,
            time_shift=time_shift,
            level_shift=level_shift,
            pca_prescale=pca_prescale(spec),
            watchdog_drain_ms=watchdog_drain_ms,
        )
    ]
    outs = actuator_outputs(spec)
    for i in range(count):
        act = amap.get(i)
        if act is None:  # a gap in the indices: a slot with no output (channel 255)
            ref = amap.entries[0]
            msgs.append(
                Message.make(
                    "configure_actuator", actuator=i, out_kind=int(OutKind.DIRECT), out_addr=0,
                    out_channel=255, pwm_max=1, max_drive=1, max_on_us=ref.max_on_us,
                    max_pulse_us=ref.max_pulse_us, duty_permille=actuator_duty_permille(ref),
                )
            )
            continue
        kind, addr, ch, pwm_max = outs[i]
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
    "time_shift_for",
    "to_timed",
]
