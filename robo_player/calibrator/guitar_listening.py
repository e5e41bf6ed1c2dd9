"""A guitar's calibration through a microphone (the device hands back audio).

As the piano's (:mod:`.listening`): every round starts and ends with a sync pattern
(:data:`~robo_player.hearing.align.PATTERN_US`), clicked on the spec's sync click
(``spec.sync_click``: the clock is then absolute, :func:`take_clock`), else picked on
the sync string (the highest open string: the shortest period, the sharpest step) at
full drive and damped after each pick; the round's picks are heard by the guitar's ear
(:mod:`robo_player.hearing.guitar`), each in its window, with its pitch known (the
string's open pitch + the fret). Without a click the aligned times are early by one
constant ``c`` for the whole session, the sync picker's full-drive latency: found once,
from the pickers' curves (:func:`common_offset`: the latency family has no constant
term; with the picks' own spread it is tens of ms off, docs/guitar.md).
The microphone's gain is unknown too: the take's level is fitted once, on the pickers'
round, against the spec's nominal curve at full drive, the geometric mean over every
string (each string's own loudness against the nominal averages out, as the piano's
keys' do, but over 6 or 4 strings only). A measured microphone (``--mic-gain-db``,
:class:`~robo_player.hearing.level.MicGain`) is weighed with that anchor by their
uncertainties (:func:`~robo_player.hearing.level.fuse_level`).

The picks of a round must be heard one at a time (the ear has no owner test): the
pickers' round plays them one after another, :data:`PICK_SLOT_US` apart, every
string in turn; the contacts' rounds run string by string (the calibrator's
``_settle`` per string).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import HearingError
from ..hearing.align import PATTERN_SPAN_US, PATTERN_US, ClockFit, align_clicks
from ..hearing.guitar import (
    REFERENCE_GAIN_DB,
    Pick,
    PickEar,
    align_picks,
    level_db,
    power_of_velocity,
    take_level,
)
from ..hearing.level import MicGain, TakeLevel, fuse_level
from ..hearing.listen import check_take
from ..performance import Performance
from ..plan import Command, Op
from ..spec.guitar import PICKER_LOUDNESS_TOLERANCE, GuitarSpec
from .fitting import _golden
from .listening import OFFSET_PRIOR_SD_US, OFFSET_RANGE_US, _cost
from .strikes import LAT_NOISE_US, StrikeResult

GOLDEN = 2 / (math.sqrt(5) - 1)  # each golden-section step narrows the bracket this much

PICK_SLOT_US = 400_000  # the pickers' round: one pick every this long (its onset alone)
ONSET_NOISE_US = 30.0  # the ear's onset noise on a pick (s.d.; measured ~20 us, tests/test_guitar_audio.py)
MIN_STRINGS_FOR_C = 3  # strings whose curves tell c with the weak prior
SYNC_DAMP_US = 120_000  # a sync pick is damped this long after its command
SYNC_AFTER_US = 1_000_000  # the end pattern this long after the last command (a carriage back at the nut)
WINDOW_BEFORE_US = 40_000  # a pick's onset, aligned (early by c), from this before its command ...
WINDOW_AFTER_US = 260_000  # ... to this after (the next pick is PICK_SLOT_US on)
# the take's level from the picks at full drive, where the strings differ least from the
# nominal (near the threshold each picker's own threshold moves its loudness most)
LEVEL_MIN_DRIVE = 1.0 - 1e-6
# one string's full-drive pick through the ear's law, besides its picker's loudness: its
# pitch's timbre against the ear's reference (s.d. 0.32 dB over pitches 28-88,
# hearing/guitar.py REFERENCE_GAIN_DB) and the room's noise on one pick: 0.35 dB s.d. in all
PICK_LEVEL_NOISE_DB = 0.35


def sync_string(spec: GuitarSpec) -> int:
    """The string whose open pitch is highest."""
    return max(range(len(spec.strings)), key=lambda s: (spec.open_pitch(s), -s))


@dataclass(slots=True)
class GuitarEar:
    """The session's hearing: the take's level (None until the pickers' round) and
    ``c`` (µs, added to every aligned latency)."""

    level: float | None = None
    offset_us: float = 0.0
    level_db: float | None = None
    mic: MicGain | None = None  # the microphone chain's gain, measured (--mic-gain-db)
    take_level: TakeLevel | None = None  # what fixed ``level``: the anchor, the gain, both

    def add_sync(self, spec: GuitarSpec, cmds: list[Command], pending: list[StrikeResult]) -> list[int]:
        """Shift ``cmds`` and ``pending`` by one pattern span and sound the pattern before
        and after them (in place): on the sync click where the spec has one (a plain
        pulse of its output, timed by the firmware like a pick), else picked on the sync
        string; returns the patterns' start times."""
        s = sync_string(spec)
        picker = spec.actuators[spec.strings[s].picker.channel]
        damper = spec.actuators[spec.strings[s].damper.channel]
        click = spec.sync_click
        end = max((c.t_us for c in cmds), default=0)
        cmds[:] = [replace(c, t_us=c.t_us + PATTERN_SPAN_US) for c in cmds]
        for r in pending:
            r.t_us += PATTERN_SPAN_US
        starts = [0, PATTERN_SPAN_US + end + SYNC_AFTER_US]
        for t0 in starts:
            for dt in PATTERN_US:
                t = t0 + dt
                if click is not None:
                    cmds.append(Command(t, Op.PULSE_HOLD, click.channel, click.pwm_max, click.pulse_us, 0))
                    continue
                cmds.append(Command(t, Op.PULSE_HOLD, picker.index, picker.pwm_max, spec.timing.pick_pulse_us, 0))
                cmds.append(Command(t + SYNC_DAMP_US, Op.PULSE_HOLD, damper.index, damper.pwm_max,
                                    spec.timing.damp_us, 0))  # fmt: skip
        return starts

    def hear(self, spec: GuitarSpec, perf: Performance, pending: list[StrikeResult], starts: list[int],
             where: str) -> list[Pick | None]:  # fmt: skip
        """Each pending pick heard or not: ``heard``, ``latency_us`` (aligned, plus
        ``offset_us``) and, with the level known, ``velocity``; returns what the ear
        heard of each (None: nothing)."""
        assert perf.audio is not None
        y = perf.audio.samples()
        check_take(y, where)
        ear = PickEar(y, perf.audio.sample_rate, where)
        clock = take_clock(spec, ear, starts, where)
        picks: list[Pick | None] = []
        for r in pending:
            t0 = clock.to_audio_s(r.t_us - WINDOW_BEFORE_US)
            t1 = clock.to_audio_s(r.t_us + WINDOW_AFTER_US)
            pk = ear.find(r.pitch, t0, t1)
            if pk is None or pk.power <= 0:
                r.heard = False
                picks.append(None)
                continue
            r.heard = True
            r.latency_us = clock.to_mcu_us(pk.t_s) - r.t_us + self.offset_us
            if self.level is not None:
                r.velocity = pk.velocity(self.level)
            picks.append(pk)
        if pending and not any(r.heard for r in pending):
            raise HearingError(f"{where}: none of {len(pending)} picks heard (the sync pattern was)")
        return picks

    def fix(self, spec: GuitarSpec, results: dict[int, list[StrikeResult]],
            picks: dict[int, list[Pick | None]]) -> None:  # fmt: skip
        """After the pickers' round (``results`` and what was heard of them, ``picks``,
        per string): the take's level, every pick's velocity, and ``c`` (added to their
        latencies)."""
        nominal = spec.nominal
        pairs = []
        for s, rs in results.items():
            for r, pk in zip(rs, picks[s], strict=True):
                v = float(np.interp(r.drive, nominal.drive, nominal.velocity))
                if pk is not None and r.drive >= LEVEL_MIN_DRIVE:
                    pairs.append((pk, v))
        anchor = level_db(take_level(pairs)) if pairs or self.mic is None else 0.0
        n = len(pairs)  # one per string: its full-drive pick
        self.take_level = fuse_level(anchor, n, pick_pair_sd_db(spec), self.mic, REFERENCE_GAIN_DB)
        self.level_db = self.take_level.level_db
        self.level = 10.0 ** (self.level_db / 10.0)
        for s, rs in results.items():
            for r, pk in zip(rs, picks[s], strict=True):
                if pk is not None:
                    r.velocity = pk.velocity(self.level)
        if spec.sync_click is not None:  # clicked patterns: the aligned times are the MCU's own
            return
        by_pitch = {spec.open_pitch(s): rs for s, rs in results.items()}
        self.offset_us = c = common_offset(by_pitch, nominal_full_drive_latency_us(spec))
        for rs in results.values():
            for r in rs:
                if r.heard:
                    r.latency_us += c


def take_clock(spec: GuitarSpec, ear: PickEar, starts: list[int], where: str) -> ClockFit:
    """The take's clock line from its sync patterns: clicked (``spec.sync_click``:
    absolute, :func:`~robo_player.hearing.align.align_clicks`, as the piano's), else
    picked on the sync string (early by that picker's full-drive latency ``c``)."""
    click = spec.sync_click
    if click is not None:
        return align_clicks(ear.y, ear.sr, list(starts), click.delay_us, where)
    return align_picks(ear, spec.open_pitch(sync_string(spec)), starts, where)


def pick_pair_sd_db(spec: GuitarSpec) -> float:
    """What one string's full-drive pick can tell of the take's level (dB, one s.d.):
    its picker's loudness against the nominal (:data:`PICKER_LOUDNESS_TOLERANCE`, a
    uniform spread: / sqrt(3)) through the ear's law, and :data:`PICK_LEVEL_NOISE_DB`."""
    v = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
    hi = min(127.0, v * (1.0 + PICKER_LOUDNESS_TOLERANCE / math.sqrt(3.0)))
    lo = v * (1.0 - PICKER_LOUDNESS_TOLERANCE / math.sqrt(3.0))
    loud = 5.0 * math.log10(float(power_of_velocity(hi)) / float(power_of_velocity(lo)))  # half the span
    return math.hypot(loud, PICK_LEVEL_NOISE_DB)


def nominal_full_drive_latency_us(spec: GuitarSpec) -> float:
    """The spec's nominal picker latency at full drive: ``c``'s prior, and what a ``c``
    found from the curves is checked against."""
    return float(np.interp(1.0, spec.nominal.drive, spec.nominal.latency_us))


def common_offset(strikes: dict[int, list[StrikeResult]], prior_us: float) -> float:
    """The constant ``c`` (µs) to add to every heard latency: the one that lets every
    string's latency curve fit best (:func:`.listening._cost`, the piano's), with a weak
    prior on the spec's nominal full-drive latency (the ear's onsets are precise to tens
    of µs, so the curves tell ``c`` better than the piano's detector lets them:
    :data:`ONSET_NOISE_US` weighs the prior)."""
    heard = sum(r.heard for rs in strikes.values() for r in rs)
    telling = sum(sum(r.heard for r in rs) >= 5 for rs in strikes.values())
    if telling == 0:
        return prior_us
    # fewer than MIN_STRINGS_FOR_C strings: one curve barely tells c (seed 5's string 3
    # alone put it 29 ms off), the prior weighs as in the piano's
    noise = ONSET_NOISE_US if telling >= MIN_STRINGS_FOR_C else LAT_NOISE_US

    def cost(c: float) -> float:
        return _cost(strikes, c) + heard * noise**2 * ((c - prior_us) / OFFSET_PRIOR_SD_US) ** 2

    lo, hi = OFFSET_RANGE_US
    grid = np.linspace(lo, hi, 45)
    i = int(np.argmin([cost(float(c)) for c in grid]))
    a, b = float(grid[max(0, i - 1)]), float(grid[min(len(grid) - 1, i + 1)])
    # golden section to 5 µs
    return _golden(cost, a, b, iters=max(1, math.ceil(math.log(max(b - a, 5.0) / 5.0) / math.log(GOLDEN))))


__all__ = ["PICK_SLOT_US", "GuitarEar", "pick_pair_sd_db", "sync_string", "take_clock"]
