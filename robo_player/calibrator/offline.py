"""Calibration from a recording made with any recorder (a phone, a field recorder).

The adaptive session cannot run when nothing listens while it plays, so this is one
fixed take: the sync pattern, every key struck at :data:`FIXED_U` (from full drive down
towards the spec's nominal threshold, spaced like the adaptive rounds' targets), the
pattern again. :func:`fixed_take` builds the plan and what it played (``played.json``);
:func:`learn_from_recording` hears the recording through the detector, takes the
recorder's unknown level out of the loudness (anchored on the full-drive strikes, as the
session's first round) and fits the keys as the session does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationError, HearingError
from ..fileio import atomic_open
from ..hearing.level import MicGain
from ..hearing.listen import Expected, hear_strikes
from ..performance import AudioTake
from ..plan import Plan
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from .fitting import curve_from_fit, fit_key
from .listening import EARLY_US, ONSET_GAP_US, add_sync, common_offset, sync_pitch
from .scheduler import StrikeRequest, build_round
from .session import CalibrationReport, set_level
from .strikes import SILENT_LATENCY_US, StrikeResult

FIXED_U = (1.0, 0.7, 0.5, 0.36, 0.26, 0.19, 0.14, 0.10, 0.07)
PLAYED_VERSION = 1


def fixed_take(spec: PianoSpec, pitches: list[int] | None = None, seed: int = 0) -> tuple[Plan, dict[str, Any]]:
    """The one take to record, and what it plays (JSON-ready)."""
    todo = pitches if pitches is not None else [k.pitch for k in spec.keys]
    th = spec.nominal.threshold
    requests = {p: [StrikeRequest(p, th + u * (1 - th), SILENT_LATENCY_US) for u in FIXED_U] for p in todo}
    order = list(requests)
    np.random.default_rng(seed).shuffle(order)
    plan, pending, end_us = build_round(spec, requests, {}, order, ONSET_GAP_US)
    starts, end_us = add_sync(spec, plan, pending, end_us)
    played = {
        "version": PLAYED_VERSION,
        "spec": spec.name,
        "spec_hash": spec.spec_hash,
        "sync_pitch": sync_pitch(spec),
        "sync_starts_us": starts,
        # the patterns were clicked (spec.sync_click): the click's delay; None: struck on sync_pitch
        "click_delay_us": spec.sync_click.delay_us if spec.sync_click is not None else None,
        "end_us": end_us,
        "strikes": [{"pitch": s.pitch, "drive": s.drive, "t_us": s.t_us} for s in pending],
    }
    return plan, played


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
    if not isinstance(played, dict) or played.get("version") != PLAYED_VERSION:
        raise CalibrationError(f"{path}: version: {played.get('version') if isinstance(played, dict) else None!r} (allowed: {PLAYED_VERSION})")
    if played.get("spec_hash") != spec.spec_hash:
        raise CalibrationError(f"{path}: spec: played for {played.get('spec')!r}, not for {spec.name!r} (spec hash differs)")
    return played


def learn_from_recording(
    spec: PianoSpec, recording: AudioTake, played: dict[str, Any], where: str, mic: MicGain | None = None
) -> tuple[Calibration, CalibrationReport]:
    """Hear the strikes of ``played`` in ``recording`` and fit every key struck
    (``mic``: the recorder's gain, measured: :func:`.session.set_level`)."""
    strikes = [StrikeResult(int(s["pitch"]), float(s["drive"]), int(s["t_us"])) for s in played["strikes"]]
    expected = [Expected(s.pitch, s.t_us, EARLY_US, SILENT_LATENCY_US + 5_000) for s in strikes]
    click = played.get("click_delay_us")
    heard, _ = hear_strikes(
        recording.samples(), recording.sample_rate, expected, int(played["sync_pitch"]),
        [int(t) for t in played["sync_starts_us"]], where=where,
        click_delay_us=None if click is None else int(click),
    )
    by: dict[int, list[StrikeResult]] = {}
    for s, h in zip(strikes, heard, strict=True):
        if h is not None and np.isfinite(h.velocity):
            s.heard, s.latency_us, s.velocity = True, h.t_us - s.t_us, h.velocity
        by.setdefault(s.pitch, []).append(s)
    report = CalibrationReport(keys=len(by), strikes=len(strikes), play_calls=1, heard_by="audio")
    # the recorder's gain is unknown: the take's level, from every key's full-drive strike
    # (FIXED_U[0]) against the spec's nominal, out of every heard loudness
    set_level(report, strikes, spec, recording.sample_rate, where, mic)
    report.clock_by = "curves" if click is None else "click"
    if click is None:  # struck patterns: aligned times are early by c, guessed from the curves
        c = common_offset(by, float(spec.nominal.latency_us[-1])) or 0.0
        for ss in by.values():
            for s in ss:
                s.latency_us += c
        report.sync_offset_us = c
    report.sim_time_us = int(played.get("end_us", 0))
    cal = Calibration.nominal(spec)
    cal.measured = True
    lat_top = float(min(spec.timing.pipeline_delay_us, 0.8 * SILENT_LATENCY_US))
    for p, ss in sorted(by.items()):
        fit = fit_key(ss)
        if fit is None:
            raise HearingError(
                f"{where}: key {p}: heard {sum(s.heard for s in ss)} of {len(ss)} strikes "
                "(need >= 2): is this the recording of the take that played.json describes?"
            )
        cal.keys[p] = curve_from_fit(p, fit, lat_top, len(ss))
        report.lat_rms_us[p], report.vel_rms[p] = fit.lat_rms_us, fit.vel_rms
        if fit.isotonic:
            report.isotonic_keys.append(p)
    return cal, report
