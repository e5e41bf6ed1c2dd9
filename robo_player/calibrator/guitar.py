"""Calibration of a guitar or bass by listening: pickers' curves, fret contacts' settle.

Like the piano's calibrator it sees the instrument only as a
:class:`~robo_player.driver.ports.Device`: it plays plans and reads what the sensor
heard (onset, pitch, loudness); it never reads the simulator's truth.

1. **Pickers** (one round, every string at once, staggered): each string's open string
   is picked at ``PICK_DRIVES`` (damped between picks); the heard onsets give latency
   and loudness per drive, fitted with the piano key's family
   (:func:`robo_player.calibrator.fitting.fit_key`: the same solenoid physics) into a
   :class:`~robo_player.spec.calibration.KeyCurve` per picker.
2. **Fret contacts** (``SETTLE_ROUNDS`` rounds of bisection; every presser or fret
   solenoid of every string in each round): press, then pick so that the note sounds
   ``delta`` after the press (the picker's fitted latency says when to pick). A contact
   that has not settled buzzes, heard as a note clearly quieter than the picker's curve
   predicts (``BUZZ_RATIO``); the bisection narrows ``delta`` between a buzzed and a
   clean probe. The settle time written is the clean bound plus ``SETTLE_MARGIN_US``.
   On a slider the carriage first moves to ``SETTLE_FRET`` and parks at the nut after.

Through a microphone (the device hands back audio: a real guitar, or ``sim://`` with
``sensor=audio``) the same rounds are heard by the guitar's ear
(:mod:`.guitar_listening`): the pickers' picks one at a time, the contacts string by
string, each round between two sync patterns (clicked on ``spec.sync_click``: an
absolute clock). With the picks' and presses' own spread the pickers are fitted
through their scatter (:func:`~.fitting.fit_key`'s allowance and robust second pass)
and each contact's written settle allows for its spread (:func:`settle_written_us`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..driver.ports import Device
from ..errors import CalibrationError
from ..hearing.guitar import Pick
from ..hearing.level import MicGain, TakeLevel
from ..plan import Command, Op, Plan
from ..planner.fingering import CAL_MARGIN_US
from ..spec.guitar import GuitarSpec, Mechanism, press_position_mm
from ..spec.string_calibration import StringCalibration
from .fitting import KeyFit, curve_from_fit, fit_key
from .guitar_listening import ONSET_NOISE_US, PICK_SLOT_US, GuitarEar, nominal_full_drive_latency_us
from .strikes import LAT_NOISE_US, SILENT_LATENCY_US, StrikeResult, match_strikes

log = logging.getLogger(__name__)

Progress = Callable[[float], None]

PICK_DRIVES = (0.16, 0.2, 0.23, 0.26, 0.29, 0.32, 0.36, 0.42, 0.5, 0.6, 0.72, 0.86, 1.0)
PICK_GAP_US = 450_000  # between two picks on one string: the slowest pick sounds, is damped
DAMP_AFTER_US = 250_000  # the damper lands this long after a pick
STAGGER_US = 7_000  # strings start this far apart (no two onsets together)
START_US = 100_000
PROBE_DRIVE = 0.8
SETTLE_HI_US = 80_000  # the bisection's clean bound at the start
SETTLE_ROUNDS = 7  # 80 ms / 2^7: 0.6 ms
SETTLE_MARGIN_US = 1_000
# A fret contact does not settle the same time twice (docs/simulator.md, "Spread": the
# simulator's assumed s.d. is 3-6 % of the settle time; no published figure). A bisection
# of single probes ends near the middle of that spread (a probe late in it is heard clean
# at a shorter delta, one early in it buzzes at a longer one), so the written settle adds
# SETTLE_SPREAD_Z s.d. at the top of the assumed range: a press that settles slowly still
# settles before the planner's pick (which adds its own CAL_MARGIN_US for the pick's spread)
SETTLE_SPREAD = 0.06
SETTLE_SPREAD_Z = 3.0
SETTLE_FRET = 5  # where a slider's carriage presses while its presser is measured
BUZZ_RATIO = 0.75  # heard / predicted loudness below this: a buzz
PROBE_GAP_US = 450_000
MAX_LATENCY_RATIO = 2.0  # picker tables: drives up to this x full drive's latency


@dataclass(slots=True)
class GuitarCalibrationReport:
    pickers: int = 0
    picks: int = 0
    play_calls: int = 0
    sim_time_us: int = 0
    lat_rms_us: dict[int, float] = field(default_factory=dict)
    vel_rms: dict[int, float] = field(default_factory=dict)
    settle_us: dict[str, int] = field(default_factory=dict)
    unsettled: list[str] = field(default_factory=list)  # contacts never heard clean
    heard_by: str = "notes"  # "audio": through the guitar's ear; "notes": a note-level sensor
    sync_offset_us: float | None = None  # audio, no click: the constant c found (the sync picker's full-drive latency)
    # audio: what fixed the absolute time: "click" (spec.sync_click) or "curves" (c, guessed)
    clock_by: str | None = None
    audio_level_db: float | None = None  # audio: the take's level against the ear's law
    audio_level: TakeLevel | None = None  # ... and where it came from (anchor, measured gain, both)


def _play(device: Device, spec: GuitarSpec, cmds: list[Command], rep: GuitarCalibrationReport
          ) -> object:  # fmt: skip
    plan = Plan(commands=cmds, pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)
    plan.sort()
    perf = device.play(plan)
    rep.play_calls += 1
    rep.sim_time_us += max((c.t_us for c in cmds), default=0)
    return perf


def _play_heard(device: Device, spec: GuitarSpec, cmds: list[Command], pending: list[StrikeResult],
                rep: GuitarCalibrationReport, ear: GuitarEar | None, where: str) -> list[Pick | None]:  # fmt: skip
    """Play ``cmds`` and hear ``pending``: matched against the heard notes, or through
    ``ear`` (audio: between sync patterns). Returns what the ear heard (audio; else [])."""
    if ear is None:
        match_strikes(_play(device, spec, cmds, rep), pending)  # type: ignore[arg-type]
        return []
    starts = ear.add_sync(spec, cmds, pending)
    return ear.hear(spec, _play(device, spec, cmds, rep), pending, starts, where)  # type: ignore[arg-type]


def _ear_of(device: Device, spec: GuitarSpec, rep: GuitarCalibrationReport,
           mic: MicGain | None = None) -> GuitarEar | None:  # fmt: skip
    """A :class:`GuitarEar` when the device's sensor hands back audio (one silent play
    tells), else None. ``mic``: the microphone chain's gain, measured."""
    a = spec.actuators[spec.strings[0].picker.channel]
    perf = _play(device, spec, [Command(0, Op.RELEASE, a.index)], rep)
    if getattr(perf, "audio", None) is None:
        return None
    rep.heard_by = "audio"
    return GuitarEar(mic=mic)


def _pick(spec: GuitarSpec, s: int, t: int, drive: float, note: int) -> tuple[Command, float]:
    """A pick at ``drive`` (quantised to the picker's counts) and the drive it gives."""
    a = spec.actuators[spec.strings[s].picker.channel]
    counts = max(1, round(drive * a.pwm_max))
    return Command(t, Op.PULSE_HOLD, a.index, counts, spec.timing.pick_pulse_us, 0, note), counts / a.pwm_max


def _damp(spec: GuitarSpec, s: int, t: int) -> Command:
    a = spec.actuators[spec.strings[s].damper.channel]
    return Command(t, Op.PULSE_HOLD, a.index, a.pwm_max, spec.timing.damp_us, 0)


def calibrate_guitar(
    device: Device,
    spec: GuitarSpec,
    *,
    strings: Iterable[int] | None = None,
    settle: bool = True,
    progress: Progress | None = None,
    mic: MicGain | None = None,
) -> tuple[StringCalibration, GuitarCalibrationReport]:
    """Calibrate the pickers (and, with ``settle``, the fret contacts) of ``strings``
    (default: all) of ``spec`` on ``device``. ``mic``: the microphone chain's gain,
    measured (through audio: weighed with the strings' full-drive anchor for the take's
    level, :mod:`.guitar_listening`)."""
    n = len(spec.strings)
    todo = sorted(set(range(n) if strings is None else strings))
    bad = [s for s in todo if not 0 <= s < n]
    if bad:
        raise CalibrationError(f"calibrate: string {bad[0]} is not a string of spec "
                               f"{spec.name!r} (allowed: 0..{n - 1})")  # fmt: skip
    rep = GuitarCalibrationReport(pickers=len(todo))
    cal = StringCalibration(spec.name, spec.spec_hash, spec.family)
    ear = _ear_of(device, spec, rep, mic)
    # -- 1. pickers on the open strings -------------------------------------------------
    cmds, results = pickers_round(spec, todo, ear is not None)
    pending = [r for s in todo for r in results[s]]
    heard = _play_heard(device, spec, cmds, pending, rep, ear, "calibration: pickers")
    if ear is not None:
        at = iter(heard)
        ear.fix(spec, results, {s: [next(at) for _ in results[s]] for s in todo})
        note_ear(spec, ear, rep)
    rep.picks += len(pending)
    fits = fit_pickers(spec, results, cal, rep, ear is not None)
    if progress is not None:
        progress(0.3)
    # -- 2. fret contacts: bisection on press-to-sound time ------------------------------
    if settle and ear is None:
        _settle(device, spec, todo, cal, fits, rep, progress)
    elif settle:  # through audio: string by string (one probe sounding at a time)
        for s in todo:
            _settle(device, spec, [s], cal, fits, rep, None, ear)
    if progress is not None:
        progress(1.0)
    rep.settle_us = dict(cal.settle_us)
    return cal, rep


def pickers_round(spec: GuitarSpec, todo: list[int], audio: bool) -> tuple[list[Command], dict[int, list[StrikeResult]]]:
    """The pickers' round: every string of ``todo`` picked open at :data:`PICK_DRIVES`
    (damped after each pick), staggered, or through audio one pick at a time, every
    string in turn; the commands and each string's picks (drive as quantised)."""
    cmds: list[Command] = []
    results: dict[int, list[StrikeResult]] = {s: [] for s in todo}
    for k, s in enumerate(todo):
        for j, d in enumerate(PICK_DRIVES):
            t = START_US + k * STAGGER_US + j * PICK_GAP_US
            if audio:  # one pick at a time, every string in turn
                t = START_US + (j * len(todo) + k) * max(PICK_SLOT_US, PICK_GAP_US // len(todo))
            c, dq = _pick(spec, s, t, d, j)
            cmds += [c, _damp(spec, s, t + DAMP_AFTER_US)]
            results[s].append(StrikeResult(pitch=spec.open_pitch(s), drive=dq, t_us=t))
    return cmds, results


def note_ear(spec: GuitarSpec, ear: GuitarEar, rep: GuitarCalibrationReport) -> None:
    """After the pickers' round through audio: what the ear fixed, into ``rep`` (and the
    warning where the absolute time is a guess: no sync click)."""
    rep.audio_level_db, rep.audio_level = ear.level_db, ear.take_level
    rep.clock_by = "click" if spec.sync_click is not None else "curves"
    rep.sync_offset_us = ear.offset_us if rep.clock_by == "curves" else None
    if rep.clock_by == "curves":
        log.warning("calibrate: spec %r has no sync_click: the absolute onsets are uncertain by c, the sync "
                    "picker's full-drive latency, guessed from the curves as %.1f ms (a piezo on a spare "
                    "output fixes it: docs/guitar.md)", spec.name, ear.offset_us / 1000)  # fmt: skip


def fit_pickers(spec: GuitarSpec, results: dict[int, list[StrikeResult]], cal: StringCalibration,
                rep: GuitarCalibrationReport, audio: bool) -> dict[int, KeyFit]:  # fmt: skip
    """Each string's picker curve from its picks (into ``cal.pickers``); the fits."""
    fits: dict[int, KeyFit] = {}
    for s, picks in results.items():
        # weighed by the ear's noise and the picks' own spread, a robust second pass
        # (calibrator/fitting.py, as the piano keys'): docs/guitar.md "Calibration"
        fit = fit_key(picks, lat_noise_us=ONSET_NOISE_US if audio else LAT_NOISE_US)
        if fit is None:
            raise CalibrationError(
                f"calibrate: string {s} ({spec.name}): fewer than two of its "
                f"{len(picks)} picks were heard; is its picker connected?"
            )
        lat_full = float(fit.latency_us(1.0))
        if not (math.isfinite(lat_full) and lat_full > 0.0 and math.isfinite(float(fit.latency_us(PROBE_DRIVE)))):
            raise CalibrationError(
                f"calibrate: string {s} ({spec.name}): its picks' latencies fit no curve (full drive "
                f"{lat_full:.0f} us; allowed: a finite latency > 0); heard through audio, the clock "
                f"offset read from the pickers' curves ({rep.sync_offset_us} us) may be wrong: "
                "try the note-level sensor or a sync click"
            )
        fits[s] = fit
        rep.lat_rms_us[s] = round(fit.lat_rms_us, 1)
        rep.vel_rms[s] = round(fit.vel_rms, 2)
        # the table spans drives whose latency is within MAX_LATENCY_RATIO of full drive's
        max_lat = min(SILENT_LATENCY_US * 0.5, MAX_LATENCY_RATIO * float(fit.latency_us(1.0)))
        cal.pickers[s] = curve_from_fit(spec.open_pitch(s), fit, max_lat, len(picks))
    return fits


def _contacts(spec: GuitarSpec, s: int) -> list[tuple[str, int, int]]:
    """(role, actuator, fret) of each fret contact of string ``s``."""
    st = spec.strings[s]
    if st.presser is not None:
        return [(f"press:{s}", st.presser.channel, SETTLE_FRET)]
    return [(f"fret:{s}:{f}", ch, f) for f, ch in enumerate(st.fret_channels or (), start=1)]


def _settle(device: Device, spec: GuitarSpec, todo: list[int], cal: StringCalibration,
            fits: dict, rep: GuitarCalibrationReport, progress: Progress | None,  # type: ignore[type-arg]
            ear: GuitarEar | None = None) -> None:  # fmt: skip
    slider = spec.mechanism is Mechanism.SLIDER
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    clean_seen: dict[str, bool] = {}
    for s in todo:
        for role, _, _ in _contacts(spec, s):
            lo[role], hi[role], clean_seen[role] = 0.0, float(SETTLE_HI_US), False
    t_tail = spec.timing.damp_us + spec.timing.release_us
    for rnd in range(SETTLE_ROUNDS):
        cmds: list[Command] = []
        probes: list[tuple[str, StrikeResult, float]] = []
        for k, s in enumerate(todo):
            st = spec.strings[s]
            t = START_US + k * STAGGER_US
            if slider:
                assert st.carriage is not None
                car = spec.actuators[st.carriage.channel]
                pos = round(press_position_mm(spec.neck.scale_length_mm, SETTLE_FRET)
                            / car.travel_mm * car.pwm_max)  # fmt: skip
                cmds.append(Command(t, Op.MOVE, car.index, position=pos))
                t += car.travel_us + 100_000
            fit = fits[s]
            for j, (role, ch, fret) in enumerate(_contacts(spec, s)):
                delta = 0.5 * (lo[role] + hi[role])
                press = spec.actuators[ch]
                lat = float(fit.latency_us(PROBE_DRIVE))
                t_press = t + int(lat) + 10_000
                t_pick = int(round(t_press + delta - lat))
                pick, dq = _pick(spec, s, t_pick, PROBE_DRIVE, j)
                sound = t_press + delta
                cmds += [
                    Command(t_press, Op.PULSE_HOLD, ch, press.pwm_max, spec.timing.press_pulse_us,
                            press.hold_counts, j),  # fmt: skip
                    pick,
                    _damp(spec, s, int(sound) + DAMP_AFTER_US),
                    Command(int(sound) + DAMP_AFTER_US + t_tail, Op.RELEASE, ch, note=j),
                ]
                r = StrikeResult(pitch=spec.open_pitch(s) + fret, drive=dq, t_us=t_pick)
                probes.append((role, r, float(fit.velocity(dq))))
                t = int(sound) + DAMP_AFTER_US + t_tail + PROBE_GAP_US
            if slider:
                assert st.carriage is not None
                cmds.append(Command(t, Op.MOVE, st.carriage.channel, position=0))
        _play_heard(device, spec, cmds, [p[1] for p in probes], rep, ear, f"calibration: contacts, round {rnd + 1}")
        rep.picks += len(probes)
        for role, r, v_pred in probes:
            mid = 0.5 * (lo[role] + hi[role])
            clean = r.heard and r.velocity >= BUZZ_RATIO * v_pred
            if clean:
                hi[role], clean_seen[role] = mid, True
            else:
                lo[role] = mid
        if progress is not None:
            progress(0.3 + 0.7 * (rnd + 1) / SETTLE_ROUNDS)
    for role in hi:
        cal.settle_us[role] = settle_written_us(hi[role])
        if not clean_seen[role] and hi[role] >= SETTLE_HI_US:
            rep.unsettled.append(role)
            log.warning("calibrate: %s never sounded clean within %d us of its press", role,
                        SETTLE_HI_US)  # fmt: skip


def settle_written_us(clean_us: float) -> int:
    """The settle time written for a contact whose bisection ended at ``clean_us``: the
    clean bound, :data:`SETTLE_MARGIN_US` and :data:`SETTLE_SPREAD_Z` s.d. of the
    contact's assumed spread (:data:`SETTLE_SPREAD`)."""
    return int(math.ceil(clean_us * (1.0 + SETTLE_SPREAD_Z * SETTLE_SPREAD))) + SETTLE_MARGIN_US


def calibrate_command(args: Any, spec: GuitarSpec, open_device: Callable[[], Device],
                      say: Callable[[str], None],
                      simulated: dict[str, int | str] | None = None) -> int:  # fmt: skip
    """``robo-player calibrate --spec guitar-…``: calibrate, write ``args.out``, summarise
    through ``say`` (the CLI's print). ``simulated``: the simulated instrument the port
    plays (written to the file, so that ``play`` plays that one by default)."""
    from ..fileio import Outputs
    from ..progress import Progress as Bar

    with Outputs() as outputs:
        out = outputs.reserve(args.out)
        bar = Bar("calibrating", enabled=not args.quiet)
        with open_device() as device:
            cal, rep = calibrate_guitar(device, spec, progress=bar, mic=getattr(args, "mic_gain", None))
        bar.done()
        cal.simulated = simulated
        cal.save(out)
    if not args.quiet:
        worst = max(cal.settle_us.values(), default=0)
        say(f"calibrated {len(cal.pickers)} pickers and {len(cal.settle_us)} fret contacts of "
            f"{spec.name} with {rep.picks} picks ({rep.sim_time_us / 1e6:.1f} s of playing)")  # fmt: skip
        say(f"slowest fret contact settles in {worst / 1000:.1f} ms (the spec's fret_settle_us: "
            f"{spec.timing.fret_settle_us / 1000:.1f} ms); with this calibration the planner presses "
            f"each fret its contact's settle plus {CAL_MARGIN_US / 1000:.0f} ms before its pick sounds")  # fmt: skip
        if rep.clock_by == "click":
            say("heard through audio: the absolute time from the sync click (docs/guitar.md)")
        if rep.heard_by == "audio" and rep.sync_offset_us is not None:
            say(f"heard through audio: the sync picker's full-drive latency (c) {rep.sync_offset_us / 1000:.2f} ms "
                "from the curves (docs/guitar.md)")
            nominal_us = nominal_full_drive_latency_us(spec)
            if not 0.5 * nominal_us <= rep.sync_offset_us <= 2.0 * nominal_us:
                say(f"warning: c is far from the spec's nominal full-drive latency ({nominal_us / 1000:.1f} ms; "
                    "plausible: half to twice it): the picks scatter more than the curves' shape can tell c "
                    "from, so every absolute onset of this calibration may be off by the difference; "
                    "calibrate with the note-level sensor (sim://?sensor=notes) or give the guitar a sync click")
        if rep.audio_level is not None:
            say(rep.audio_level.line("the ear's law", "strings at full drive against the spec's nominal"))
        elif getattr(args, "mic_gain", None) is not None:
            say("note: --mic-gain-db is for a calibration through audio; this device hands back heard notes")
        if rep.unsettled:
            say(f"warning: never sounded clean: {', '.join(rep.unsettled[:10])}")
        say(f"wrote {args.out}")
    return 0


__all__ = ["GuitarCalibrationReport", "calibrate_command", "calibrate_guitar", "fit_pickers", "note_ear",
           "pickers_round", "settle_written_us"]
