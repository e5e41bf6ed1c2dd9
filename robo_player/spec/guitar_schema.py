"""The guitar and bass families' part of the spec table (:mod:`robo_player.spec.schema`).

``instrument: guitar`` or ``instrument: bass`` picks :data:`GUITAR`: the shared fields
plus ``neck``, ``strings``, ``timing`` (the guitar's) and ``nominal`` (the pickers'
curves, the piano's section).
"""

from __future__ import annotations

from ..servo import FRAME_US, PULSE_MAX_US, PULSE_MIN_US
from .guitar import (
    CarriageDrive,
    CarriageSpec,
    GuitarSpec,
    GuitarTiming,
    Mechanism,
    NeckSpec,
    OutputSpec,
    StringSpec,
)
from .schema import ID_PATTERN, NOMINAL, SHARED_FIELDS, SYNC_CLICK, Field, Kind, Section

NECK = Section(
    "neck",
    NeckSpec,
    "The neck: mechanism, scale length, room for frets, fret count and capo. Fret n lies "
    "L (1 - 2^(-n/12)) mm from the nut.",
    (
        Field("mechanism", Kind.ENUM, "matrix: a solenoid at every string and fret; slider: "
              "a carriage per string", choices=tuple(m.value for m in Mechanism)),
        Field("scale_length_mm", Kind.FLOAT, "nut to bridge", "mm", 300.0, 1200.0),
        Field("neck_length_mm", Kind.FLOAT, "nut to the end of the fretboard (room for frets)",
              "mm", 50.0, 1200.0),
        Field("frets", Kind.INT, "highest fret the mechanism presses", "count", 1, 36),
        Field("capo", Kind.INT, "capo fret (0: none); strings sound this many semitones up",
              "fret", 0, 12),
    ),
)  # fmt: skip

OUTPUT = Section(
    "output",
    OutputSpec,
    "A coil output (picker, damper, presser): its global channel, board and resolution.",
    (
        Field("channel", Kind.INT, "global actuator index, unique, inside its board's block",
              "index", 0, 4095),
        Field("board", Kind.STR, "id of the driver board", pattern=ID_PATTERN),
        Field("pwm_bits", Kind.INT, "PWM resolution (<= its board's)", "bits", 1, 16),
    ),
)  # fmt: skip

CARRIAGE = Section(
    "carriage",
    CarriageSpec,
    "A slider's carriage: a positioner whose position counts 0..2^pwm_bits-1 span "
    "0..travel_mm from the nut; a stepper's moves follow a trapezoidal speed profile, a "
    "hobby servo's wait for its next 50 Hz pulse and run at max_speed_mm_s; then settle.",
    (
        Field("channel", Kind.INT, "global actuator index, unique, inside its board's block",
              "index", 0, 4095),
        Field("board", Kind.STR, "id of the driver board", pattern=ID_PATTERN),
        Field("pwm_bits", Kind.INT, "position resolution (<= its board's)", "bits", 1, 16),
        Field("drive", Kind.ENUM, "step_dir: stepper driver; servo: hobby servo pulses",
              choices=tuple(d.value for d in CarriageDrive)),
        Field("travel_mm", Kind.FLOAT, "travel from the nut; must reach the last fret",
              "mm", 10.0, 1200.0),
        Field("max_speed_mm_s", Kind.FLOAT, "top speed (servo: its speed through the linkage)",
              "mm/s", 10.0, 20_000.0),
        Field("accel_mm_s2", Kind.FLOAT, "acceleration and deceleration (servo: unused)",
              "mm/s^2", 100.0, 1_000_000.0),
        Field("settle_us", Kind.INT, "after a move, before the presser may press", "us",
              0, 500_000),
        Field("pulse_min_us", Kind.INT, "servo: pulse width at position 0 (default 1000; "
              "step_dir: absent)", "us", PULSE_MIN_US, PULSE_MAX_US, required=False),
        Field("pulse_max_us", Kind.INT, "servo: pulse width at the travel, above "
              "pulse_min_us (default 2000; step_dir: absent)", "us", PULSE_MIN_US, PULSE_MAX_US,
              required=False),
        Field("frame_hz", Kind.INT, "servo: pulse frame rate, the firmware's (default 50; "
              "step_dir: absent)", "Hz", 1000 // (FRAME_US // 1000), 1000 // (FRAME_US // 1000),
              required=False),
    ),
)  # fmt: skip

STRING = Section(
    "strings[]",
    StringSpec,
    "One string, listed from the lowest: its tuning and its actuators. A slider string "
    "has presser and carriage; a matrix string has fret_channels.",
    (
        Field("tuning", Kind.PITCH, "open string's pitch (without capo)", "MIDI", 0, 127),
        Field("picker", Kind.SECTION, "picker solenoid", section=OUTPUT),
        Field("damper", Kind.SECTION, "damper solenoid", section=OUTPUT),
        Field("presser", Kind.SECTION, "presser solenoid on the carriage (slider)",
              section=OUTPUT, required=False),
        Field("carriage", Kind.SECTION, "the carriage (slider)", section=CARRIAGE,
              required=False),
        Field("fret_channels", Kind.INT_LIST, "matrix: global channel of the solenoid at "
              "fret 1, 2, ... (one per fret; the board is the one whose block holds it)",
              "index", 0, 4095, required=False, min_items=1, max_items=36),
    ),
)  # fmt: skip

GUITAR_TIMING = Section(
    "timing (guitar)",
    GuitarTiming,
    "The guitar's delays and limits.",
    (
        Field("pipeline_delay_us", Kind.INT, "every note is held back by this much "
              "(>= slowest pick latency + fret_settle_us)", "us", 0, 2_000_000),
        Field("pick_pulse_us", Kind.INT, "picker pulse", "us", 500, 200_000),
        Field("min_repeat_us", Kind.INT, "shortest pick-to-pick interval on one string",
              "us", 1_000, 2_000_000),
        Field("fret_settle_us", Kind.INT, "fret pressed this long before the pick", "us",
              0, 500_000),
        Field("press_pulse_us", Kind.INT, "full-drive pulse of a presser or fret solenoid",
              "us", 500, 200_000),
        Field("press_hold_duty", Kind.FLOAT, "hold duty of a presser or fret solenoid",
              "fraction", 0.0, 1.0),
        Field("release_us", Kind.INT, "a released presser is clear of the string after this",
              "us", 0, 500_000),
        Field("damp_us", Kind.INT, "damper pulse; the string is silent after it", "us",
              500, 500_000),
        Field("min_sound_us", Kind.INT, "shortest a picked note rings before it may be cut",
              "us", 0, 2_000_000),
        Field("travel_margin", Kind.FLOAT, "carriage travel time padded by this fraction",
              "fraction", 0.0, 2.0),
        Field("damper_lift_us", Kind.INT, "a damper's felt is off the string this long after "
              "its coil goes off: a pick sounds no sooner (default 8000)", "us", 0, 100_000,
              required=False),
    ),
)  # fmt: skip

GUITAR_FIELDS: tuple[Field, ...] = (
    Field("neck", Kind.SECTION, "the neck", section=NECK),
    Field("strings", Kind.SECTION_LIST, "one entry per string, lowest first", section=STRING,
          min_items=1, max_items=12),
    Field("timing", Kind.SECTION, "delays and limits", section=GUITAR_TIMING),
    Field("nominal", Kind.SECTION, "the pickers' nominal curves", section=NOMINAL),
    Field("sync_click", Kind.SECTION, "a click for hearing's clock (as the piano's)", section=SYNC_CLICK,
          required=False),
)  # fmt: skip

GUITAR = Section(
    "",
    GuitarSpec,
    "A robotic guitar or bass (`instrument: guitar | bass`): the shared part plus "
    f"{', '.join(f.name for f in GUITAR_FIELDS)}.",
    SHARED_FIELDS + GUITAR_FIELDS,
)

GUITAR_SECTIONS: tuple[Section, ...] = (GUITAR, NECK, STRING, OUTPUT, CARRIAGE, GUITAR_TIMING)

GUITAR_RULES: tuple[str, ...] = (
    "guitar/bass: every string's tuning + neck.frets is a MIDI pitch (0..127)",
    "guitar/bass: pickers, dampers, pressers, carriages, fret channels and sync_click name a "
    "listed board, lie in its block and use each channel once",
    "guitar/bass: fret n at L (1 - 2^(-n/12)) mm must lie within neck.neck_length_mm <= "
    "neck.scale_length_mm; neck.capo < neck.frets",
    "slider: every string has presser and carriage and no fret_channels; a carriage's "
    "travel_mm reaches its last fret",
    "slider, drive servo: pulse_max_us > pulse_min_us, at most 8 servo carriages (the "
    "firmware's 20 ms frame has 8 slots of 2.5 ms); drive step_dir: no pulse_min_us, "
    "pulse_max_us, frame_hz",
    "matrix: every string has fret_channels (one per fret) and no presser or carriage",
    "guitar timing: pipeline_delay_us >= max(nominal.latency_us) + fret_settle_us; "
    "min_repeat_us >= pick_pulse_us",
)
