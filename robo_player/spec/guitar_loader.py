"""Build and check a guitar or bass spec (the loader's family hook).

Per-field rules come from :mod:`robo_player.spec.guitar_schema`; the rules across
fields (:data:`~robo_player.spec.guitar_schema.GUITAR_RULES`) are checked here, each
error naming the file, the key path, the value and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from ..servo import MAX_SERVOS, PULSE_MAX_US
from .guitar import (
    CarriageDrive,
    CarriageSpec,
    GuitarSpec,
    Mechanism,
    StringSpec,
    fret_distance_mm,
    press_position_mm,
)
from .guitar_schema import GUITAR
from .model import DriverBoard, DriverKind

if TYPE_CHECKING:
    from .loader import _Checker


def guitar_from_mapping(c: _Checker, doc: Any, family: str) -> GuitarSpec:
    from .loader import _board_blocks, _check_actuator, _check_boards, _line_of, _tuples

    top = c.section(GUITAR, doc, "")
    boards: list[dict[str, Any]] = top["boards"]
    _check_boards(c, boards, doc.get("boards") if isinstance(doc, Mapping) else None)
    blocks = _board_blocks(boards)
    neck = top["neck"]
    mech = Mechanism(neck.mechanism)
    _check_neck(c, neck)
    string_lines = doc.get("strings") if isinstance(doc, Mapping) else None
    used: dict[int, str] = {}
    strings: list[StringSpec] = []
    for i, st in enumerate(top["strings"]):
        p, line = f"strings[{i}]", _line_of(string_lines, i)
        top_pitch = st["tuning"] + neck.frets
        if top_pitch > 127:
            raise c.fail(
                f"{p}.tuning",
                f"{st['tuning']} + neck.frets {neck.frets} reaches MIDI {top_pitch}, out of "
                f"range (allowed 0..{127 - neck.frets})",
                line,
            )
        for role in ("picker", "damper", "presser", "carriage"):
            act = st[role]
            if act is not None:
                wiring = {"channel": act.channel, "board": act.board, "pwm_bits": act.pwm_bits}
                _check_actuator(c, f"{p}.{role}", wiring, boards, blocks, used, line)
        frets = st["fret_channels"]
        if mech is Mechanism.SLIDER:
            for role in ("presser", "carriage"):
                if st[role] is None:
                    raise c.fail(f"{p}.{role}", "missing required key for a slider neck", line)
            if frets is not None:
                raise c.fail(f"{p}.fret_channels", "not allowed on a slider neck (allowed: absent)",
                             line)  # fmt: skip
            _check_carriage(c, f"{p}.carriage", st["carriage"], neck, line)
            n_servos = sum(1 for x in top["strings"]
                           if x["carriage"] is not None and x["carriage"].drive == CarriageDrive.SERVO.value)  # fmt: skip
            _check_servo(c, f"{p}.carriage", st["carriage"], n_servos, line)
        else:
            for role in ("presser", "carriage"):
                if st[role] is not None:
                    raise c.fail(f"{p}.{role}", "not allowed on a matrix neck (allowed: absent)",
                                 line)  # fmt: skip
            if frets is None:
                raise c.fail(f"{p}.fret_channels", "missing required key for a matrix neck", line)
            if len(frets) != neck.frets:
                raise c.fail(
                    f"{p}.fret_channels",
                    f"{len(frets)} items (allowed exactly neck.frets = {neck.frets})",
                    line,
                )
            for f, ch in enumerate(frets):
                board = _board_at(boards, blocks, ch)
                if board is None:
                    last = sum(b["channels"] for b in boards) - 1
                    raise c.fail(f"{p}.fret_channels[{f}]",
                                 f"{ch} is outside every board's block (allowed 0..{last})", line)  # fmt: skip
                wiring = {"channel": ch, "board": board, "pwm_bits": 1}
                _check_actuator(c, f"{p}.fret_channels[{f}]", wiring, boards, blocks, used, line)
        if st["carriage"] is not None and st["carriage"].drive == CarriageDrive.SERVO.value:
            st["carriage"] = _servo_defaults(st["carriage"])
        elif st["carriage"] is not None:
            st["carriage"] = _step_share(st["carriage"], boards, top["strings"])
        strings.append(
            StringSpec(
                tuning=st["tuning"],
                picker=st["picker"],
                damper=st["damper"],
                presser=st["presser"],
                carriage=st["carriage"],
                fret_channels=tuple(frets) if frets is not None else None,
            )
        )
    click = top["sync_click"]
    if click is not None:  # the piano's check: its own output, on a listed board
        cd = {"channel": click.channel, "board": click.board, "pwm_bits": click.pwm_bits}
        _check_actuator(c, "sync_click", cd, boards, blocks, used, _line_of(doc, "sync_click"))
    spec = GuitarSpec(
        name=top["name"],
        description=top["description"],
        instrument=family,
        boards=tuple(DriverBoard(**{**b, "kind": DriverKind(b["kind"])}) for b in boards),
        neck=neck,
        strings=tuple(strings),
        timing=top["timing"],
        nominal=_tuples(top["nominal"]),
        thermal=top["thermal"],
        power=top["power"],
        sync_click=click,
    )
    _check_timing_power(c, spec)
    return spec


DEFAULT_MAX_STEPS_PER_S = 15_000  # an ATmega2560 board: ~19,000 measured (docs/guitar.md)


def _step_share(car: CarriageSpec, boards: list[dict[str, Any]],
                strings: list[dict[str, Any]]) -> CarriageSpec:  # fmt: skip
    """The carriage with its top speed capped at its share of its board's step rate
    (``max_steps_per_s`` over the carriages on that board): the steps of every carriage
    moving at once at top speed stay within what the board's MCU makes, and the
    planner's travel times (which read this speed) stay honest."""
    board = next((b for b in boards if b["id"] == car.board), {})
    rate = board.get("max_steps_per_s") or DEFAULT_MAX_STEPS_PER_S
    n = sum(1 for s in strings if s["carriage"] is not None and s["carriage"].board == car.board)
    steps_per_mm = ((1 << car.pwm_bits) - 1) / car.travel_mm
    top = rate / max(n, 1) / steps_per_mm
    if car.max_speed_mm_s <= top:
        return car
    return replace(car, max_speed_mm_s=round(top, 1))


SERVO_DEFAULTS = {"pulse_min_us": 1000, "pulse_max_us": 2000, "frame_hz": 50}


def _servo_defaults(car: CarriageSpec) -> CarriageSpec:
    """A servo carriage with its absent pulse keys at their defaults."""
    d = SERVO_DEFAULTS
    return replace(car, pulse_min_us=car.pulse_min_us or d["pulse_min_us"],
                   pulse_max_us=car.pulse_max_us or d["pulse_max_us"],
                   frame_hz=car.frame_hz or d["frame_hz"])  # fmt: skip


def _check_servo(c: _Checker, path: str, car: Any, n_servos: int, line: int | None) -> None:
    """A servo's pulse range (its keys absent on a stepper) and the frame's slots."""
    if car.drive != CarriageDrive.SERVO.value:
        for k in SERVO_DEFAULTS:
            if getattr(car, k) is not None:
                raise c.fail(f"{path}.{k}", f"not allowed with drive {car.drive} (allowed: absent, "
                             "or drive servo)", line)  # fmt: skip
        return
    lo = car.pulse_min_us if car.pulse_min_us is not None else SERVO_DEFAULTS["pulse_min_us"]
    hi = car.pulse_max_us if car.pulse_max_us is not None else SERVO_DEFAULTS["pulse_max_us"]
    if hi <= lo:
        raise c.fail(f"{path}.pulse_max_us", f"{hi} is not above pulse_min_us {lo} "
                     f"(allowed {lo + 1}..{PULSE_MAX_US})", line)  # fmt: skip
    if n_servos > MAX_SERVOS:
        raise c.fail(f"{path}.drive", f"servo: {n_servos} servo carriages, more than the "
                     f"firmware's 20 ms frame holds (allowed 1..{MAX_SERVOS} servos)", line)  # fmt: skip


def _board_at(boards: list[dict[str, Any]], blocks: dict[str, tuple[int, int, int]],
              ch: int) -> str | None:  # fmt: skip
    for b in boards:
        _, first, end = blocks[b["id"]]
        if first <= ch < end:
            return str(b["id"])
    return None


def _check_neck(c: _Checker, neck: Any) -> None:
    if neck.neck_length_mm > neck.scale_length_mm:
        raise c.fail(
            "neck.neck_length_mm",
            f"{neck.neck_length_mm:g} is longer than neck.scale_length_mm (allowed "
            f"50..{neck.scale_length_mm:g})",
        )
    last = fret_distance_mm(neck.scale_length_mm, neck.frets)
    if last > neck.neck_length_mm:
        room = 0
        while fret_distance_mm(neck.scale_length_mm, room + 1) <= neck.neck_length_mm:
            room += 1
        raise c.fail(
            "neck.frets",
            f"{neck.frets} needs {last:.1f} mm of neck (fret {neck.frets} at L(1-2^(-n/12))), "
            f"more than neck.neck_length_mm {neck.neck_length_mm:g} (allowed 1..{room})",
        )
    if neck.capo >= neck.frets:
        raise c.fail("neck.capo", f"{neck.capo} is not below neck.frets (allowed 0..{neck.frets - 1})")


def _check_carriage(c: _Checker, path: str, car: Any, neck: Any, line: int | None) -> None:
    far = press_position_mm(neck.scale_length_mm, neck.frets)
    if car.travel_mm < far:
        raise c.fail(
            f"{path}.travel_mm",
            f"{car.travel_mm:g} does not reach fret {neck.frets} (pressed at {far:.1f} mm; "
            f"allowed {math.ceil(far * 10) / 10:.1f}..1200)",
            line,
        )


def _check_timing_power(c: _Checker, spec: GuitarSpec) -> None:
    from .loader import _check_duty_limit, _check_nominal_curves

    t, p = spec.timing, spec.power
    _check_nominal_curves(c, spec.nominal)
    need = max(spec.nominal.latency_us) + t.fret_settle_us
    if t.pipeline_delay_us < need:
        raise c.fail(
            "timing.pipeline_delay_us",
            f"{t.pipeline_delay_us} is less than the slowest pick latency + "
            f"timing.fret_settle_us (allowed {need}..2000000)",
        )
    if t.min_repeat_us < t.pick_pulse_us:
        raise c.fail(
            "timing.min_repeat_us",
            f"{t.min_repeat_us} is less than timing.pick_pulse_us (allowed {t.pick_pulse_us}..2000000)",
        )
    for name in ("pick_pulse_us", "press_pulse_us", "damp_us"):
        v = getattr(t, name)
        if v > spec.thermal.max_on_us:
            raise c.fail(f"timing.{name}", f"{v} is more than thermal.max_on_us "
                         f"(allowed ..{spec.thermal.max_on_us})")  # fmt: skip
    coil_a = p.supply_v / p.coil_ohm
    if coil_a > p.supply_a:
        raise c.fail("power.coil_ohm", f"{p.coil_ohm:g} draws {coil_a:.3g} A at {p.supply_v:g} V, "
                     f"over power.supply_a {p.supply_a:g} (allowed >= {p.supply_v / p.supply_a:.3g})")  # fmt: skip
    n = sum(1 for a in spec.actuators if a.on_supply)
    budget = min(int(p.supply_a / coil_a + 1e-9), n)
    if p.max_simultaneous_strikes > budget:
        raise c.fail(
            "power.max_simultaneous_strikes",
            f"{p.max_simultaneous_strikes} needs {p.max_simultaneous_strikes * coil_a:.3g} A "
            f"with {n} coils and power.supply_a {p.supply_a:g} (allowed 1..{budget})",
        )
    _check_duty_limit(c, spec)


def load_guitar_spec(name_or_path: str | Path) -> GuitarSpec:
    """:func:`~robo_player.spec.load_spec`, typed for a guitar or bass (SpecError for a
    spec of another family)."""
    from .loader import load_spec

    spec: object = load_spec(name_or_path)
    if not isinstance(spec, GuitarSpec):
        raise SpecError(
            f"spec {getattr(spec, 'name', name_or_path)!r}: instrument "
            f"{getattr(spec, 'family', '?')!r} is not a guitar or bass (allowed: guitar | bass)"
        )
    return spec
