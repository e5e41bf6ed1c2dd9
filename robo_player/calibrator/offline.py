"""Calibration from a recording made with any recorder (a phone, a field recorder).

The adaptive session cannot run when nothing listens while it plays, so this is one
fixed take: the sync pattern, every key struck at :data:`FIXED_U` (from full drive down
towards the spec's nominal threshold, spaced like the adaptive rounds' targets), the
pattern again. :func:`fixed_take` builds the plan and what it played (``played.json``);
:func:`learn_from_recording` hears the recording through the detector, takes the
recorder's unknown level out of the loudness (anchored on the full-drive strikes, as the
session's first round) and fits the keys as the session does.

With ``positions`` > 1 (``--mic-positions N``, docs/calibration.md "Session 26, lead") the
take is split into N parts, one recording each, the recorder moved about a metre between
them: a room's colour of each key averages over the places, as in the session. Every part
has its own sync patterns (a recording is its own clock) and strikes every key once at full
drive; the other drives of :data:`FIXED_U` go round the parts in turn. Place 0's level is
anchored as one recording's; each other place's against place 0's on the keys' full-drive
strikes (the same key at the same drive: its own loudness cancels, the move's gain is left).
A key is struck ``len(FIXED_U) + N - 1`` times (13 at N = 5).
"""

from __future__ import annotations

import bisect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationError, HearingError
from ..fileio import atomic_open
from ..hearing.align import ClockFit
from ..hearing.level import MicGain, remove_level, take_level_db
from ..hearing.listen import Expected, hear_strikes
from ..performance import AudioTake, Performance
from ..plan import Plan
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from .drives import MAX_STRIKES_PER_KEY
from .fitting import fit_key
from .key_return import PROBE_DRIVE, PROBE_MIN_GAP_US
from .listening import (
    EARLY_US,
    FULL_DRIVE,
    ONSET_GAP_US,
    PROBE_LATE,
    WINDOW_MIN_US,
    KeyReads,
    add_sync,
    common_offset,
    next_guard_us,
    own_reach_us,
    partials_loudness,
    spectrum_offsets,
    sync_pitch,
)
from .positions import refine_position_levels
from .scheduler import STAGGER_US, ProbeRequest, StrikeRequest, build_round
from .session import CalibrationReport, finish_key, reanchor, set_level
from .strikes import SILENT_LATENCY_US, StrikeResult, latest_latency_us

log = logging.getLogger(__name__)

FIXED_U = (1.0, 0.7, 0.5, 0.36, 0.26, 0.19, 0.14, 0.10, 0.07)
PLAYED_VERSION = 1
# played.json of a take split over the microphone's places: ``parts``, one per recording
PLAYED_VERSION_PARTS = 2
# key-return probes (calibrator/key_return.py; the session's, at fixed gaps: nothing listens
# between them): a full-drive strike this fraction of the spec's nominal return time after
# the release of one of the key's strikes. Two where the strike budget has room: a return
# of 0.71-1.3 x the nominal (the simulator's 50-90 ms about 70) reads as measured on one of
# them at least (e / R within 0.5-0.95); one at N = 5 places (9 + 4 + 1 = 14), long enough
# that the slowest return sounds well (e / R >= 0.62), a fast one bounded from above (safe:
# the planner waits the gap, at most 0.3 x the nominal too long). 0.72 left 3 of 88 keys
# unheard (R 83-89 ms, a re-strike of the ringing key at e / R 0.56-0.60), 0.8 two; play's
# onset p99 2.90 -> 2.59 ms (truth seed 1; docs/calibration.md "Session 27, lead")
PROBE_GAPS = (0.6, 0.8)
PROBE_GAP_ONE = 0.8
# ... each probe right after the key's strike at this FIXED_U (of PROBE_GAPS' in order;
# PROBE_AFTER_ONE for PROBE_GAP_ONE), wherever the take plays it: a soft strike (velocity
# ~60-70 on the nominal curve; every key sounded at both on truth seed 1, the softest at
# velocity 34), so the key rings on under the probe at a third of a full-drive strike's
# amplitude or less. After the key's full-drive strike (session 27) its ringing, damped
# only R / 3 after the release and fading over ~50 ms, was as loud as the probe: the
# owner test's window before the probe's onset held it, and 70 of 176 probes of a 3-place
# take were read > 1.5 ms off (late by up to 40 ms, early by up to 8: key 34's return
# 12.7 ms short) or missed; now 9 (mostly the bass, 5-10 ms late: R read long). The softer of
# the two for the single probe (after 0.19: 3 of 88 reads off, after 0.26: 6).
# docs/calibration.md "Session 28, probe"
PROBE_AFTER_U = (0.26, 0.19)
PROBE_AFTER_ONE = 0.19
# a strike's first window ends listening.NEXT_GUARD of the nominal full-drive latency
# before the next strike's command; its second look leaves out the onsets heard for other
# strikes, ± this
TAKEN_US = 8_000


def part_drives(positions: int) -> list[list[float]]:
    """The :data:`FIXED_U` of each of ``positions`` parts: full drive in every part (each
    place's level is read on it), the others round the parts in turn (each place hears
    loud and soft strikes)."""
    return [[FIXED_U[0], *FIXED_U[1 + k :: positions]] for k in range(positions)]


def _probe_plan(positions: int) -> list[tuple[float, float]]:
    """(gap as a fraction of the nominal return, the FIXED_U of the strike it follows) of
    each key-return probe a key gets in a take over ``positions`` places: two
    (:data:`PROBE_GAPS`) where the strike budget has room, one (:data:`PROBE_GAP_ONE`)
    where it has room for one, else none."""
    room = MAX_STRIKES_PER_KEY - (len(FIXED_U) + positions - 1)
    if room >= 2:
        return list(zip(PROBE_GAPS, PROBE_AFTER_U, strict=True))
    return [(PROBE_GAP_ONE, PROBE_AFTER_ONE)] if room == 1 else []


def _gap_us(spec: PianoSpec, fraction: float) -> int:
    return max(PROBE_MIN_GAP_US, round(fraction * spec.timing.key_return_us / STAGGER_US) * STAGGER_US)


def probe_gaps(spec: PianoSpec, positions: int) -> list[int]:
    """The key-return probes' gaps (µs after a release) a key gets in a take over
    ``positions`` places (:func:`_probe_plan`)."""
    return [_gap_us(spec, f) for f, _ in _probe_plan(positions)]


def part_probes(spec: PianoSpec, positions: int) -> list[dict[float, int]]:
    """Each part's probes: the FIXED_U of the strike a probe follows -> its gap (µs);
    a probe lies in the (first) part that plays that strike (:func:`part_drives`)."""
    drives = part_drives(positions)
    out: list[dict[float, int]] = [{} for _ in drives]
    for f, u in _probe_plan(positions):
        k = next(k for k, us in enumerate(drives) if u in us)
        out[k][u] = _gap_us(spec, f)
    return out


def _probe_half_us(spec: PianoSpec) -> float:
    """A probe's latency at half its drive (e / R = 0.5: the slowest it sounds), on the
    spec's nominal curve (no key's own is known before the take)."""
    return float(np.interp(0.5 * PROBE_DRIVE, spec.nominal.drive, spec.nominal.latency_us))


def _part(
    spec: PianoSpec, todo: list[int], us: list[float], seed: int, probes: dict[float, int] | None = None
) -> tuple[Plan, dict[str, Any]]:
    """One part's plan and what it plays: each key struck at ``us``, a key-return probe
    right after the release of its strike at each FIXED_U of ``probes`` (-> its gap, µs)."""
    th = spec.nominal.threshold
    requests = {p: [StrikeRequest(p, th + u * (1 - th), SILENT_LATENCY_US) for u in us] for p in todo}
    half = _probe_half_us(spec)
    for rq in requests.values():
        for r, u in zip(rq, us, strict=True):
            if probes and u in probes:
                r.probe = ProbeRequest(probes[u], PROBE_DRIVE, latest_latency_us(half), onset_us=half)
    order = list(requests)
    np.random.default_rng(seed).shuffle(order)
    plan, pending, end_us = build_round(spec, requests, {}, order, ONSET_GAP_US)
    starts, end_us = add_sync(spec, plan, pending, end_us)
    return plan, {
        "sync_starts_us": starts,
        "end_us": end_us,
        "strikes": [
            {"pitch": s.pitch, "drive": s.drive, "t_us": s.t_us}
            | ({} if s.probe_gap_us is None else {"probe_gap_us": s.probe_gap_us})
            for s in pending
        ],
    }


def _head(spec: PianoSpec, version: int) -> dict[str, Any]:
    return {"version": version, "spec": spec.name, "spec_hash": spec.spec_hash, "sync_pitch": sync_pitch(spec)}


def _click_delay(spec: PianoSpec) -> int | None:
    """The patterns were clicked (spec.sync_click): the click's delay; None: struck on sync_pitch."""
    return spec.sync_click.delay_us if spec.sync_click is not None else None


def fixed_take(spec: PianoSpec, pitches: list[int] | None = None, seed: int = 0) -> tuple[Plan, dict[str, Any]]:
    """The one take to record, and what it plays (JSON-ready)."""
    todo = pitches if pitches is not None else [k.pitch for k in spec.keys]
    plan, part = _part(spec, todo, list(FIXED_U), seed, part_probes(spec, 1)[0])
    return plan, {**_head(spec, PLAYED_VERSION), "sync_starts_us": part["sync_starts_us"],
                  "click_delay_us": _click_delay(spec), "end_us": part["end_us"], "strikes": part["strikes"]}  # fmt: skip


def fixed_parts(
    spec: PianoSpec, positions: int, pitches: list[int] | None = None, seed: int = 0
) -> tuple[list[Plan], dict[str, Any]]:
    """The take split over ``positions`` places: a plan a place (one recording each), and
    what they play (JSON-ready, ``parts``); one place is :func:`fixed_take`'s."""
    if positions == 1:
        plan, played = fixed_take(spec, pitches, seed)
        return [plan], played
    todo = pitches if pitches is not None else [k.pitch for k in spec.keys]
    plans, parts = [], []
    probes = part_probes(spec, positions)
    for k, us in enumerate(part_drives(positions)):
        plan, part = _part(spec, todo, us, seed + k, probes[k])
        plans.append(plan)
        parts.append(part)
    return plans, {**_head(spec, PLAYED_VERSION_PARTS), "click_delay_us": _click_delay(spec),
                   "positions": positions, "parts": parts}  # fmt: skip


def played_parts(played: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of ``played`` (one recording each): a version 1 take is one part."""
    return list(played["parts"]) if played.get("version") == PLAYED_VERSION_PARTS else [played]


def save_played(path: str | Path, played: dict[str, Any]) -> None:
    with atomic_open(Path(path), "w") as fh:
        json.dump(played, fh, indent=1)


def load_played(path: str | Path, spec: PianoSpec) -> dict[str, Any]:
    path = Path(path)
    try:
        played = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CalibrationError(f"{path}: no such file") from err
    except json.JSONDecodeError as err:
        raise CalibrationError(f"{path}: not JSON ({err})") from err
    if not isinstance(played, dict) or played.get("version") not in (PLAYED_VERSION, PLAYED_VERSION_PARTS):
        raise CalibrationError(f"{path}: version: {played.get('version') if isinstance(played, dict) else None!r} "
                               f"(allowed: {PLAYED_VERSION}, {PLAYED_VERSION_PARTS})")  # fmt: skip
    if played["version"] == PLAYED_VERSION_PARTS and not (isinstance(played.get("parts"), list) and played["parts"]):
        raise CalibrationError(f"{path}: version {PLAYED_VERSION_PARTS} without its parts (one per recording)")
    if played.get("spec_hash") != spec.spec_hash:
        raise CalibrationError(f"{path}: spec: played for {played.get('spec')!r}, not for {spec.name!r} (spec hash differs)")
    return played


def fixed_windows(spec: PianoSpec, strikes: list[StrikeResult], absolute: bool = False) -> list[Expected]:
    """Where to look for each strike of a fixed take (no prediction: the keys are
    unknown): from :data:`EARLY_US` before its command, up to the silent latency but no
    later than the next strike's command less :func:`~.listening.next_guard_us` (that
    fraction of the nominal full-drive latency: its onset, read early by the sync key's
    latency, can come no sooner); a strike not heard there looked for again up to the silent latency, the
    onsets heard as other strikes' left out (``hear_strikes``'s ``taken_us``). Without
    the cap a soft or silent bass key was timed at the next key's onset, whose partials
    its dense ones meet: 250-330 ms late, keys 22, 36, 41 of one take (docs/calibration.md
    "Session 27, lead"). Before the key's own next strike (a key-return probe right after
    it) the window ends :data:`~robo_player.hearing.listen.OWN_REACH_US` before the earliest
    that strike's onset can read, as its rise reaches back so far and is its key's (session
    28): with an ``absolute`` clock (the patterns clicked) the guard **after** its command
    (the probe is the key's own full-drive strike, or slower where the key is not yet up:
    its latency at least the fastest full-drive latency, 0.75 x the nominal, more than the
    guard's 0.5), with struck patterns the guard **before** it (aligned times read early by
    the sync key's full-drive latency, up to 1.25 x the nominal: 0.75 - 1.25 = -0.5), as
    for the next strike. A key-return probe's window is the session's (to
    ``PROBE_LATE`` x the slowest a strike at half drive sounds, on the nominal curve: its
    return at half the gap or more), no second look (silent: the key was not up); with an
    ``absolute`` clock (the patterns clicked) from its command, as the session's (the
    damper of the key's strike before lands in the 50 ms before it: four silent probes of a
    3-place take were "heard" there, 10-29 ms before their commands, docs/calibration.md
    "Session 28, probe")."""
    full = SILENT_LATENCY_US + 5_000
    guard = next_guard_us(spec)
    probe_end = int(PROBE_LATE * latest_latency_us(_probe_half_us(spec)) + WINDOW_MIN_US)
    times = sorted(s.t_us for s in strikes)
    out = []
    for s, reach in zip(strikes, own_reach_us(spec, strikes, absolute), strict=True):
        k = bisect.bisect_right(times, s.t_us)
        cap = full if k == len(times) else int(times[k] - guard - s.t_us)
        if reach is not None:  # the key's own next strike (its return probe): its rise reaches further back
            cap = min(cap, reach)
        if s.probe_gap_us is not None:  # the session's probe window: no later than half drive's slowest
            out.append(Expected(s.pitch, s.t_us, 0 if absolute else EARLY_US, max(min(cap, probe_end), 0)))
        elif cap < full:
            out.append(Expected(s.pitch, s.t_us, EARLY_US, max(cap, 0), (EARLY_US, full)))
        else:
            out.append(Expected(s.pitch, s.t_us, EARLY_US, full))
    return out


def _hear_part(
    spec: PianoSpec, recording: AudioTake, part: dict[str, Any], played: dict[str, Any], where: str
) -> tuple[list[StrikeResult], ClockFit]:
    """The strikes of one part of ``played`` heard in its ``recording`` (the comb's
    loudness at the detector's reference gain), and the recording's clock. A key-return
    probe whose loudness the detector could not read (velocity 0: no attack over the
    key's ringing) is taken as not heard: a probe is a full-drive strike at half its
    drive or more, louder than the soft strike it follows. All 7 such reads of the 3-place
    takes measured were something else: five silent probes "heard" at -29..+24 ms (the
    damper's landing), two sounding ones read 41 ms early and 71 ms late (key 94 of truth
    seed 2's return 15.4 ms short by one: docs/calibration.md "Session 28, probe")."""
    strikes = [
        StrikeResult(int(s["pitch"]), float(s["drive"]), int(s["t_us"]),
                     probe_gap_us=None if s.get("probe_gap_us") is None else int(s["probe_gap_us"]))
        for s in part["strikes"]
    ]  # fmt: skip
    click = played.get("click_delay_us")
    heard, clock = hear_strikes(
        recording.samples(), recording.sample_rate, fixed_windows(spec, strikes, click is not None),
        int(played["sync_pitch"]),
        [int(t) for t in part["sync_starts_us"]], where=where,
        click_delay_us=None if click is None else int(click), taken_us=TAKEN_US,
    )
    for s, h in zip(strikes, heard, strict=True):
        if h is not None and np.isfinite(h.velocity) and (s.probe_gap_us is None or h.velocity > 0.0):
            s.heard, s.latency_us, s.velocity = True, h.t_us - s.t_us, h.velocity
            s.onset_us, s.doubtful = h.t_us, not h.sure
    return strikes, clock


def _full_drive(strikes: list[StrikeResult]) -> dict[int, float]:
    """Each key's heard full-drive loudness (its first)."""
    out: dict[int, float] = {}
    for s in strikes:
        if s.heard and s.drive >= FULL_DRIVE and s.probe_gap_us is None:
            out.setdefault(s.pitch, s.velocity)
    return out


def place_level_db(first: dict[int, float], other: list[StrikeResult], sample_rate: int) -> tuple[float, int]:
    """Another place's level against the first's (dB; their loudness as heard, no level
    out yet) and how many keys tell it: each key's full-drive strike at the place against
    its full-drive loudness at the first (``first``: :func:`_full_drive`; the key's own
    loudness cancels), the interquartile mean (:func:`~robo_player.hearing.level.take_level_db`)."""
    b = _full_drive(other)
    return take_level_db(((p, b[p], first[p]) for p in first if p in b), sample_rate)


def learn_from_recording(
    spec: PianoSpec, recording: AudioTake | list[AudioTake], played: dict[str, Any], where: str | list[str],
    mic: MicGain | None = None,
) -> tuple[Calibration, CalibrationReport]:
    """Hear the strikes of ``played`` in ``recording`` (a list, one a place, for a take
    split over the microphone's places: :func:`fixed_parts`) and fit every key struck
    (``mic``: the recorder's gain at the first place, measured: :func:`.session.set_level`)."""
    recordings = recording if isinstance(recording, list) else [recording]
    wheres = where if isinstance(where, list) else [where]
    parts = played_parts(played)
    if len(recordings) != len(parts):
        raise CalibrationError(
            f"{', '.join(wheres)}: {len(recordings)} recording(s) for a take played in {len(parts)} part(s), one "
            "recording a microphone place: give them in the order they were played (played.json's parts)"
        )
    rates = {r.sample_rate for r in recordings}
    if len(rates) > 1:
        raise CalibrationError(f"{', '.join(wheres)}: the recordings' sample rates differ "
                               f"({', '.join(str(r.sample_rate) for r in recordings)} Hz): record every place "
                               "with the same recorder and settings")  # fmt: skip
    told = [_hear_part(spec, r, part, played, w) for r, part, w in zip(recordings, parts, wheres, strict=True)]
    heard = [ss for ss, _ in told]
    strikes = [s for ss in heard for s in ss]
    by: dict[int, list[StrikeResult]] = {}
    for s in strikes:
        by.setdefault(s.pitch, []).append(s)
    click = played.get("click_delay_us")
    report = CalibrationReport(keys=len(by), strikes=len(strikes), play_calls=len(parts), heard_by="audio",
                               return_probes=sum(s.probe_gap_us is not None for s in strikes))  # fmt: skip
    # the recorder's gain is unknown: the first place's level, from every key's full-drive
    # strike (FIXED_U[0]) against the spec's nominal, out of every heard loudness there;
    # each other place's against the first's on the same keys at full drive
    sr0 = recordings[0].sample_rate
    full0 = _full_drive(heard[0])  # as heard, before the first place's level is taken out
    set_level(report, heard[0], spec, sr0, wheres[0], mic)
    base = report.audio_level_db or 0.0
    for k in range(1, len(parts)):
        rel, n = place_level_db(full0, heard[k], sr0)
        if not n:
            raise HearingError(f"{wheres[k]}: no key heard at full drive both here and in {wheres[0]}: the "
                               "place's level cannot be told (is this the recording of part "
                               f"{k + 1} of {len(parts)}?)")  # fmt: skip
        for s in heard[k]:
            if s.heard:
                s.velocity = remove_level(s.pitch, s.velocity, base + rel, sr0)
        report.position_levels_db.append(base + rel)
        log.info("%s: the microphone's place %d of %d: %+.2f dB against the first (%d keys at full drive)",
                 wheres[k], k + 1, len(parts), rel, n)  # fmt: skip
    # with each place's level known, every strike's loudness read again over its key's
    # partials, each key's decay and spectrum offset pooled over all its strikes (the
    # session's read: listening.partials_loudness; docs/calibration.md "Session 27, lead"),
    # pooled once every place is read (each place's pooling was redone by the next's)
    reads: KeyReads = {}
    for (ss, clock), rec, level in zip(told, recordings, report.position_levels_db, strict=True):
        partials_loudness(Performance(audio=rec), ss, clock, level, reads)
    spectrum_offsets(reads)
    report.mic_positions = len(parts)
    report.clock_by = "curves" if click is None else "click"
    if click is None:  # struck patterns: aligned times are early by c, guessed from the curves
        c = common_offset(by, float(spec.nominal.latency_us[-1])) or 0.0
        for ss in by.values():
            for s in ss:
                s.latency_us += c
        report.sync_offset_us = c
    report.sim_time_us = sum(int(part.get("end_us", 0)) for part in parts)
    cal = Calibration.nominal(spec)
    cal.measured = True
    lat_top = float(min(spec.timing.pipeline_delay_us, 0.8 * SILENT_LATENCY_US))
    fits = {p: fit_key(ss) for p, ss in by.items()}
    if len(parts) > 1:  # each other place's level again against the curves of all the places' strikes

        def refit(keys: set[int]) -> None:
            fits.update({p: fit_key(by[p]) for p in keys})

        report.position_levels_db = refine_position_levels(heard, fits, refit, report.position_levels_db, sr0)
    # the level read again on every key's fitted full-drive loudness (all its strikes'
    # places and room colours), what it moved out of the tables (the session's reanchor)
    level_fix = reanchor(report, {p: f for p, f in fits.items() if f is not None}, spec, mic)
    for p, ss in sorted(by.items()):
        fit = fits[p]
        if fit is None:
            raise HearingError(
                f"{', '.join(wheres)}: key {p}: heard {sum(s.heard for s in ss)} of {len(ss)} strikes "
                "(need >= 2): is this the recording of the take that played.json describes?"
            )
        probed = any(s.probe_gap_us is not None for s in ss)
        cal.keys[p] = finish_key(p, fit, ss, lat_top, report, level_fix, sr0, spec, note_unmeasured=probed)
    return cal, report
