"""The calibration session: rounds of strikes until every key's curves are known.

:func:`calibrate_session` runs the rounds (schedule, play, match, fit, choose the next
drives and key-return probes) and writes the fitted curves into a
:class:`~robo_player.spec.calibration.Calibration`; :func:`calibrate` is its short form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from ..driver.ports import Device
from ..errors import CalibrationError
from ..hearing.detector import REFERENCE_GAIN_DB
from ..hearing.level import MicGain, TakeLevel, fuse_level, remove_level
from ..plan import Command, Op, Plan
from ..spec.calibration import Calibration, KeyCurve
from ..spec.model import PianoSpec
from .drives import FIRST_ROUND_U, MAX_STRIKES_PER_KEY, next_requests, round_targets
from .fitting import KeyFit, curve_from_fit, fit_key
from .key_return import PROBE_GAP_FRACTION, next_probe, return_estimate
from .listening import (
    ONSET_GAP_US,
    KeyReads,
    add_sync,
    common_offset,
    fitted_full_drive_level,
    full_drive_level,
    full_drive_pair_sd_db,
    listen_round,
    mark_missed,
    read_and_pool,
    soonest_latency_us,
)
from .pedal import pedal_commands, pedal_latency
from .positions import (
    max_positions,
    planned_takes,
    position_of_take,
    refine_position_levels,
    refit_position_level,
)
from .scheduler import SETTLE_US, STAGGER_US, CoilHeat, StrikeRequest, build_round
from .strikes import (
    LAT_NOISE_AUDIO_US,
    LAT_NOISE_US,
    LAT_REL_NOISE_AUDIO,
    SILENT_LATENCY_US,
    VEL_NOISE,
    VEL_NOISE_AUDIO_ABS,
    VEL_REL_NOISE_AUDIO,
    StrikeResult,
    match_strikes,
)

NOISE_NOTES = (VEL_NOISE, LAT_NOISE_US, 0.0)  # what fit_key allows of a note-level sensor
NOISE_AUDIO = (VEL_NOISE_AUDIO_ABS, LAT_NOISE_AUDIO_US, LAT_REL_NOISE_AUDIO)  # ... and of the detector

Progress = Callable[[float], None]

log = logging.getLogger(__name__)

@dataclass(slots=True)
class CalibrationReport:
    """What a calibration session cost and how well the curves fit."""

    keys: int = 0
    strikes: int = 0
    play_calls: int = 0
    sim_time_us: int = 0  # performance time the device spent playing (a user's wait)
    max_coil_temp_ratio: float = 0.0
    isotonic_keys: list[int] = field(default_factory=list)
    lat_rms_us: dict[int, float] = field(default_factory=dict)
    vel_rms: dict[int, float] = field(default_factory=dict)
    pedal_latency_us: int | None = None
    pedal_measured: bool = False
    return_probes: int = 0  # key-return probe strikes (included in ``strikes``)
    return_us: dict[int, float] = field(default_factory=dict)  # measured, margin included
    return_kind: dict[int, str] = field(default_factory=dict)  # "measured" / "upper bound"
    return_unmeasured: list[int] = field(default_factory=list)  # keys left at the nominal
    heard_by: str = "notes"  # "audio": through the detector; "notes": a note-level sensor
    sync_offset_us: float | None = None  # audio: the constant c found (listening.py)
    # audio: what fixed the absolute time: "click" (spec.sync_click) or "curves" (c, guessed)
    clock_by: str | None = None
    # audio: the take's level (dB against the detector's reference microphone), fitted on
    # the first round's full-drive strikes against the spec's nominal (listening.py), and
    # how many keys told it; it is out of every heard loudness the curves are fitted on.
    # With the microphone's gain known (--mic-gain-db) the level is that and the anchor
    # weighed by their uncertainties: ``audio_level`` says what each said, ``by`` where
    # the level came from (hearing/level.py)
    audio_level_db: float | None = None
    audio_level_keys: int = 0
    audio_level: TakeLevel | None = None
    audio_sample_rate: int | None = None  # the takes' sample rate (the level law's band)
    # audio: the microphone's places (calibrate --mic-positions, calibrator/positions.py)
    # and each place's level as fitted (dB against the detector's reference microphone:
    # the first place's by the anchor, set_level; each other's against the curves)
    mic_positions: int = 1
    position_levels_db: list[float] = field(default_factory=list)

    @property
    def strikes_per_key(self) -> float:
        return self.strikes / self.keys if self.keys else 0.0


def calibrate_session(
    device: Device,
    spec: PianoSpec,
    *,
    max_strikes_per_key: int = MAX_STRIKES_PER_KEY,
    progress: Progress | None = None,
    seed: int = 0,
    pitches: Iterable[int] | None = None,
    mic: MicGain | None = None,
    mic_positions: int = 1,
) -> tuple[Calibration, CalibrationReport]:
    """Calibrate ``pitches`` (default: every key) of ``spec`` on ``device``.

    Keys not in ``pitches`` keep the spec's nominal curves (``strikes == 0``). ``mic``:
    the microphone chain's gain, measured (through audio only: the take's level then
    weighs it with the full-drive anchor, :func:`set_level`; at the microphone's first
    place). ``mic_positions``: through audio, the takes are heard from this many places,
    the device asked to move the microphone between them (``device.move_microphone(k,
    n)``; calibrator/positions.py).
    """
    if mic_positions < 1:
        raise CalibrationError(f"calibrate: mic_positions: {mic_positions} (allowed: >= 1)")
    if max_strikes_per_key < 3:
        raise CalibrationError(
            f"calibrate: max_strikes_per_key: {max_strikes_per_key} is too few (allowed: >= 3)"
        )
    todo = [k.pitch for k in spec.keys]
    if pitches is not None:
        wanted = sorted(set(pitches))
        bad = [p for p in wanted if not spec.has_pitch(p)]
        if bad:
            raise CalibrationError(
                f"calibrate: pitch {bad[0]} is not a key of spec {spec.name!r} "
                f"(allowed: {spec.lowest}..{spec.highest})"
            )
        todo = wanted
    rng = np.random.default_rng(seed)
    th_nom = spec.nominal.threshold
    first = [th_nom + u * (1.0 - th_nom) for u in FIRST_ROUND_U]
    lat_top = float(min(spec.timing.pipeline_delay_us, 0.8 * SILENT_LATENCY_US))
    report = CalibrationReport(keys=len(todo))
    strikes: dict[int, list[StrikeResult]] = {p: [] for p in todo}
    fits: dict[int, KeyFit | None] = dict.fromkeys(todo)

    def fit_keys(keys: Iterable[int]) -> None:
        for p in keys:
            # through audio loudness and onsets are noisier; the first method (no click)
            # kept the note-level figures, and its c comes from these fits: as measured
            if report.clock_by == "click":
                fits[p] = fit_key(strikes[p], *NOISE_AUDIO, vel_rel_noise=VEL_REL_NOISE_AUDIO)
            else:
                fits[p] = fit_key(strikes[p], *NOISE_NOTES)

    coils: dict[int, CoilHeat] = {}
    done: set[int] = set()
    pedal_lat: int | None = None
    reads: KeyReads = {}  # audio: each key's strikes as their partials said (a key's decay pooled)
    # what does the device's sensor hand back: audio (a microphone) or heard notes?
    check = device.play(
        Plan(
            commands=[Command(0, Op.RELEASE, spec.keys[0].channel)],
            pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash,
        )
    )
    audio = check.audio is not None
    rounds = round_targets(audio)
    report.play_calls += 1
    per_pass = audio and spec.sync_click is not None
    planned = planned_takes(len(first), rounds, per_pass)
    positions = mic_positions if audio else 1
    if mic_positions > 1 and not audio:
        log.warning("calibrate: %d microphone positions asked for, but the device hands back heard notes "
                    "(no microphone): one", mic_positions)  # fmt: skip
    most = max_positions(planned, len(first) if per_pass else 1)
    if positions > most:
        raise CalibrationError(
            f"calibrate: mic_positions: {positions} is too many for {planned} takes (allowed: 1..{most}: "
            "the first move comes after the first round, whose curves the next place's level is fitted against)"
        )
    move = getattr(device, "move_microphone", None)
    if positions > 1 and move is None:
        raise CalibrationError(f"calibrate: mic_positions: {positions}, but this device cannot move its microphone")
    report.mic_positions = positions
    take_no, place = 0, 0  # the session's takes so far, and the microphone's place now
    by_place: list[list[StrikeResult]] = [[] for _ in range(positions)]  # each place's strikes
    round_no = 0
    offset_us = 0.0  # audio: the constant c added to every heard latency so far
    first_gap = round(PROBE_GAP_FRACTION * spec.timing.key_return_us / STAGGER_US) * STAGGER_US
    while len(done) < len(todo):
        requests: dict[int, list[StrikeRequest]] = {}
        for p in todo:
            if p in done:
                continue
            left = max_strikes_per_key - len(strikes[p])
            if round_no == 0:
                reqs = [StrikeRequest(p, d, SILENT_LATENCY_US) for d in first[:left]]
            else:
                reqs = next_requests(strikes[p], fits[p], left, round_no, lat_top, rounds)
                probe = next_probe(fits[p], strikes[p], first_gap)
                if reqs and probe is not None and left > len(reqs):
                    reqs[-1].probe = probe  # struck right after the key's last strike
            if not reqs:
                done.add(p)
                continue
            for r in reqs:
                r.pitch = p
                r.soonest_us = soonest_latency_us(strikes[p], r.drive)
            requests[p] = reqs
        if not requests:
            break
        order = list(requests)
        rng.shuffle(order)
        # through a microphone with a sync click, each pass of the round (the j-th strike
        # of every key) is its own take: a take's room colours a key's loudness and onset
        # alike for all of that key's strikes in it, so a key's strikes spread over more
        # takes average that colour out of its curves (docs/calibration.md, "Through a
        # microphone: takes")
        takes = split_takes(requests) if audio and spec.sync_click is not None else [requests]
        pending: list[StrikeResult] = []
        for ti, take in enumerate(takes):
            # round 0 toggles the pedal in its last take (after its last pattern)
            pedal = round_no == 0 and ti == len(takes) - 1 and spec.pedal is not None
            where = f"calibration round {round_no}" + (f" take {ti}" if len(takes) > 1 else "")
            at = position_of_take(take_no, positions, planned)
            take_no += 1
            if positions > 1:
                where += f" (microphone position {at + 1} of {positions})"
            moved = at != place
            if moved:
                assert move is not None
                log.info("calibration: the microphone to position %d of %d", at + 1, positions)
                move(at, positions)
                place = at
            heard, lat = play_take(device, spec, take, [p for p in order if p in take], coils, audio, pedal,
                                   offset_us, report, where, mic, reads, place, fits if moved else None)
            pending += heard
            by_place[place] += heard
            pedal_lat = lat if lat is not None else pedal_lat
        for s in pending:
            strikes[s.pitch].append(s)
        report.strikes += len(pending)
        report.return_probes += sum(1 for s in pending if s.probe_gap_us is not None)
        refit = list(requests)
        if audio and spec.sync_click is not None:
            missed = sum(mark_missed(strikes[p]) for p in refit)
            if missed:
                log.info("calibration round %d: %d strikes not heard above a heard drive: missed", round_no, missed)
        if audio and round_no >= 1 and spec.sync_click is None:
            found = common_offset(strikes, float(spec.nominal.latency_us[-1]))
            if found is not None:
                for ss in strikes.values():
                    for s in ss:
                        s.latency_us += found - offset_us
                offset_us = found
                report.sync_offset_us = found
                refit = [p for p in todo if strikes[p]]
        fit_keys(refit)
        round_no += 1
        if progress is not None:
            finished = sum(1 for p in todo if p in done)
            progress(max(finished / len(todo), round_no / (len(rounds) + 1)))
        if round_no > len(rounds):
            break
    if report.clock_by == "curves":
        log.warning(
            "calibrate: spec %r has no sync_click: the absolute onsets are uncertain by c, the "
            "sync key's full-drive latency, guessed from the curves as %.1f ms (a piezo on a spare "
            "output fixes it: docs/hearing.md)", spec.name, offset_us / 1000,
        )
    if positions > 1 and report.audio_sample_rate and len(report.position_levels_db) > 1:
        # each place's level against the final curves, every strike of the place (its first
        # take's fit had the first round's curves only), and the curves fitted again
        report.position_levels_db = refine_position_levels(
            by_place[: len(report.position_levels_db)], fits, fit_keys, report.position_levels_db,
            report.audio_sample_rate)  # fmt: skip
    # through audio: the level read again on every key's fitted full-drive loudness (all
    # its strikes, ~11 takes' room colours), and what it moved taken out of the tables
    level_fix = reanchor(report, {p: f for p, f in fits.items() if f is not None}, spec, mic)
    cal = Calibration.nominal(spec)
    cal.measured = True
    for p in todo:
        fit = fits[p]
        if fit is None:
            raise CalibrationError(
                f"calibrate: key {p}: heard {sum(s.heard for s in strikes[p])} of "
                f"{len(strikes[p])} test strikes (need >= 2); is the key or its coil broken?"
            )
        sr = report.audio_sample_rate or 0
        cal.keys[p] = finish_key(p, fit, strikes[p], lat_top, report, level_fix, sr, spec, note_unmeasured=True)
    if pedal_lat is not None:
        cal.pedal_latency_us = pedal_lat
        report.pedal_measured = True
    report.pedal_latency_us = cal.pedal_latency_us
    if progress is not None:
        progress(1.0)
    log.info(
        "calibrated %d keys: %.1f strikes/key, %d plays, %.1f s of playing",
        len(todo),
        report.strikes_per_key,
        report.play_calls,
        report.sim_time_us / 1e6,
    )
    return cal, report


def finish_key(
    p: int,
    fit: KeyFit,
    strikes: list[StrikeResult],
    lat_top: float,
    report: CalibrationReport,
    level_fix: float,
    sample_rate: int,
    spec: PianoSpec,
    *,
    note_unmeasured: bool,
) -> KeyCurve:
    """One key's curve from its fit, as the session and the recorder path both finish it.

    The key's return from its probes (`return_estimate`, into the report's `return_*`), the
    curve (`curve_from_fit`), the take's level fix taken out of its velocity table (`reanchor`'s,
    when `level_fix` and `sample_rate`), and the fit's residuals into the report. A key whose
    return went unmeasured is listed (and logged) when `note_unmeasured` (the recorder path:
    only a key that had probes). Raises CalibrationError for a curve that maps no velocity.
    """
    ret = return_estimate(fit, strikes)
    if ret.return_us is None:
        if note_unmeasured:
            report.return_unmeasured.append(p)
            log.warning(
                "calibrate: key %d: return time not measured (%s %.0f us); the spec's nominal %d us applies",
                p, ret.kind, ret.value_us, spec.timing.key_return_us,
            )  # fmt: skip
    else:
        report.return_us[p], report.return_kind[p] = ret.return_us, ret.kind
    kc = curve_from_fit(p, fit, lat_top, len(strikes), return_us=ret.return_us, return_est_us=ret.estimate_us)
    if level_fix and sample_rate:
        kc = replace(kc, velocity=tuple(remove_level(p, v, level_fix, sample_rate) for v in kc.velocity))
    finite = all(np.isfinite(kc.drive)) and all(np.isfinite(kc.latency_us)) and all(np.isfinite(kc.velocity))
    if not finite or max(kc.velocity) <= min(kc.velocity):  # a flat table maps no velocity
        raise CalibrationError(
            f"calibrate: key {p}: no curve fits what was heard ({sum(s.heard for s in strikes)} "
            f"of {len(strikes)} strikes heard, by {report.heard_by})"
        )
    report.lat_rms_us[p], report.vel_rms[p] = fit.lat_rms_us, fit.vel_rms
    if fit.isotonic:
        report.isotonic_keys.append(p)
    return kc

def split_takes(requests: dict[int, list[StrikeRequest]]) -> list[dict[int, list[StrikeRequest]]]:
    """A round's requests as one take per pass: the j-th strike of every key (with the
    key-return probe it carries) in take j; a key with fewer strikes sits out the last."""
    depth = max((len(r) for r in requests.values()), default=0)
    return [{p: [r[j]] for p, r in requests.items() if j < len(r)} for j in range(depth)]


def play_take(
    device: Device, spec: PianoSpec, requests: dict[int, list[StrikeRequest]], order: list[int],
    coils: dict[int, CoilHeat], audio: bool, pedal: bool, offset_us: float, report: CalibrationReport,
    where: str, mic: MicGain | None, reads: KeyReads | None = None, place: int = 0,
    moved: dict[int, KeyFit | None] | None = None,
) -> tuple[list[StrikeResult], int | None]:
    """Schedule ``requests`` as one plan, play it and hear it (through audio: the sync
    patterns around it, the take's level fitted on the first take heard); returns the
    strikes as heard and, with ``pedal``, the pedal latency the take measured. ``place``:
    the microphone's (0-based); ``moved``: the first take since it was moved there, the
    keys' current fits, which the place's level is fitted against
    (:func:`~.positions.refit_position_level`)."""
    plan, pending, end_us = build_round(
        spec, requests, coils, order, ONSET_GAP_US if audio else 0, spec.sync_click is not None
    )
    starts: list[int] = []
    if audio and spec.sync_click is not None and pending:
        # a strike not heard where predicted is looked for up to the silent latency
        # (listening.expected_window): the end pattern's clicks come after that, so a
        # take's last strikes, late and soft, are not heard under them (or taken as silence)
        end_us = max(end_us, max(s.t_us for s in pending) + SILENT_LATENCY_US + SETTLE_US)
    if audio:
        starts, end_us = add_sync(spec, plan, pending, end_us)
    pedal_cmds: list[Command] = []
    if pedal:
        # listening: after the last pattern (a lifted damper lets every key ring on)
        pedal_cmds = pedal_commands(spec, end_us if audio else 0)
        plan.commands.extend(pedal_cmds)
        plan.sort()
        end_us = max(end_us, pedal_cmds[-1].t_us + 200_000)
    log.info("%s: %d keys, %d strikes, %.2f s", where, len(requests), len(pending), end_us / 1e6)
    perf = device.play(plan)
    report.play_calls += 1
    report.sim_time_us += end_us
    report.max_coil_temp_ratio = max(report.max_coil_temp_ratio, perf.max_coil_temp_ratio)
    if perf.coil_failures:
        raise CalibrationError(
            f"calibrate: {where}: coil failure during calibration: "
            f"{perf.coil_failures[0]} (calibration strikes must stay cool)"
        )
    if perf.audio is not None:
        report.heard_by = "audio"
        report.clock_by = "click" if spec.sync_click is not None else "curves"
        if spec.sync_click is not None:
            c_guess = 0.0  # clicked patterns: the clock is absolute
        elif report.sync_offset_us is not None:
            c_guess = offset_us
        else:
            c_guess = float(spec.nominal.latency_us[-1])
        # the level of the microphone's place (a new place: the last one's, refitted below)
        level = report.position_levels_db[min(place, len(report.position_levels_db) - 1)] if place else None
        clock = listen_round(perf, pending, spec, starts, where, c_guess,
                             report.audio_level_db if level is None else level, reads)  # fmt: skip
        if place and moved is not None and level is not None:
            report.position_levels_db.append(refit_position_level(perf, pending, clock, reads, moved, level, where))
        elif report.audio_level_db is None:
            # the microphone's gain is unknown: the first take strikes every key at full
            # drive; its level comes out of every loudness heard from here on, before any
            # curve is fitted (the adaptive rounds and the key-return probes compare heard
            # loudness with these fits); with it known, the loudness over the partials
            set_level(report, pending, spec, perf.audio.sample_rate, where, mic)
            read_and_pool(perf, pending, clock, report.audio_level_db or 0.0, reads)
        for s in pending:
            s.latency_us += offset_us
    else:
        stray = match_strikes(perf, pending)
        if stray > 0:
            log.warning("%s: %d heard notes matched no strike", where, stray)
    # coils cool between plays only as far as the device's clock says; keep the model's
    # times relative to the next plan's zero
    for c in coils.values():
        c.t_us -= end_us
    return pending, pedal_latency(perf, pedal_cmds) if pedal_cmds else None


def set_level(
    report: CalibrationReport, strikes: list[StrikeResult], spec: PianoSpec, sample_rate: int, where: str,
    mic: MicGain | None = None,
) -> None:
    """Fit the take's level on ``strikes`` (:func:`~.listening.full_drive_level`) and,
    with ``mic`` (the microphone chain's gain, measured), weigh it with that
    (:func:`~robo_player.hearing.level.fuse_level`); take it out of their heard
    loudness and note it in ``report``."""
    anchor, n = full_drive_level(strikes, spec, sample_rate)
    tl = fuse_level(anchor, n, full_drive_pair_sd_db(spec, sample_rate), mic, REFERENCE_GAIN_DB)
    if not n:
        log.warning("%s: no key heard at full drive: the loudness scale is %s (docs/hearing.md)", where,
                    "the measured microphone gain's" if mic else "the detector's reference microphone's")
    level = tl.level_db
    for s in strikes:
        if s.heard:
            s.velocity = remove_level(s.pitch, s.velocity, level, sample_rate)
    report.audio_level_db, report.audio_level_keys, report.audio_level = level, n, tl
    report.audio_sample_rate = sample_rate
    report.position_levels_db = [level]
    log.info("%s: the take's level %+.2f dB against the detector's reference microphone, by %s "
             "(anchor: %s over %d keys at full drive against the spec's nominal; microphone gain: %s)", where,
             level, tl.by, "-" if tl.anchor_db is None else f"{tl.anchor_db:+.2f} +- {tl.anchor_sd_db:.2f} dB", n,
             "not given" if tl.mic_db is None else f"{tl.mic_db:+.2f} +- {tl.mic_sd_db:.2f} dB")  # fmt: skip


def reanchor(report: CalibrationReport, fits: dict[int, KeyFit], spec: PianoSpec, mic: MicGain | None) -> float:
    """Through audio, at the end: the take's level read again on ``fits`` (every key's
    fitted full-drive loudness against the spec's nominal: :func:`~.listening.
    fitted_full_drive_level`), weighed with ``mic`` where given, and noted in ``report``;
    returns what it moved (dB, to take out of the fitted tables; 0.0 without audio or
    an anchor). The first take's one strike per key carries that take's room colour on
    each key; a key's curve averages ~11 takes' (docs/calibration.md, "Loudness through the microphone")."""
    old, sr = report.audio_level, report.audio_sample_rate
    if old is None or old.anchor_db is None or not sr or not fits:
        return 0.0
    left, n = fitted_full_drive_level(fits, spec, sr)
    if not n:
        return 0.0
    tl = fuse_level(old.level_db + left, n, full_drive_pair_sd_db(spec, sr), mic, REFERENCE_GAIN_DB)
    log.info("calibration: the level on the fitted curves %+.2f dB (the first take's %+.2f dB, %d keys), by %s: %+.2f dB",
             old.level_db + left, old.anchor_db, n, tl.by, tl.level_db)  # fmt: skip
    fix = tl.level_db - old.level_db
    report.audio_level_db, report.audio_level_keys, report.audio_level = tl.level_db, n, tl
    return fix


def calibrate(
    device: Device,
    spec: PianoSpec,
    *,
    max_strikes_per_key: int = MAX_STRIKES_PER_KEY,
    progress: Progress | None = None,
    seed: int = 0,
    mic: MicGain | None = None,
    mic_positions: int = 1,
) -> Calibration:
    """Calibrate every key of ``spec`` on ``device``; see :func:`calibrate_session`."""
    cal, _ = calibrate_session(
        device, spec, max_strikes_per_key=max_strikes_per_key, progress=progress, seed=seed, mic=mic,
        mic_positions=mic_positions,
    )
    return cal
