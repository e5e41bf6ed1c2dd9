"""A guitar's calibration from a recording made with any recorder (the piano's
:mod:`.offline`, for the pickers).

Nothing listens while the take plays, so it is one fixed take: the sync pattern (clicked
on ``spec.sync_click`` where the spec has one, else picked on the sync string), the
pickers' round as the calibration through a microphone plays it (every open string at
:data:`~.guitar.PICK_DRIVES`, one pick at a time), the pattern again.
:func:`fixed_take` builds the plan and what it played (``played.json``, the piano's
format with ``picks`` for ``strikes``); :func:`learn_from_recording` hears the recording
through the guitar's ear (:class:`~.guitar_listening.GuitarEar`) and fits the pickers.
The fret contacts' settle is a bisection that listens between rounds, so a recording
cannot tell it: the file has the pickers only, and the planner keeps the spec's
``fret_settle_us`` rule (docs/guitar.md, "Calibration").
"""

from __future__ import annotations

from typing import Any

from ..errors import CalibrationError
from ..hearing.level import MicGain
from ..performance import AudioTake, Performance
from ..plan import Plan
from ..spec.guitar import GuitarSpec
from ..spec.string_calibration import StringCalibration
from .guitar import GuitarCalibrationReport, fit_pickers, note_ear, pickers_round
from .guitar_listening import GuitarEar, sync_string
from .offline import PLAYED_VERSION
from .strikes import StrikeResult


def fixed_take(spec: GuitarSpec) -> tuple[Plan, dict[str, Any]]:
    """The one take to record, and what it plays (JSON-ready)."""
    todo = list(range(len(spec.strings)))
    cmds, results = pickers_round(spec, todo, audio=True)
    pending = [r for s in todo for r in results[s]]
    starts = GuitarEar().add_sync(spec, cmds, pending)
    plan = Plan(commands=cmds, pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)
    plan.sort()
    played = {
        "version": PLAYED_VERSION,
        "spec": spec.name,
        "spec_hash": spec.spec_hash,
        "family": spec.family,
        "sync_pitch": spec.open_pitch(sync_string(spec)),
        "sync_starts_us": starts,
        # the patterns were clicked (spec.sync_click): the click's delay; None: picked on sync_pitch
        "click_delay_us": spec.sync_click.delay_us if spec.sync_click is not None else None,
        "end_us": max(c.t_us for c in cmds),
        "picks": [{"string": s, "drive": r.drive, "t_us": r.t_us} for s in todo for r in results[s]],
    }
    return plan, played


def learn_from_recording(
    spec: GuitarSpec, recording: AudioTake, played: dict[str, Any], where: str, mic: MicGain | None = None
) -> tuple[StringCalibration, GuitarCalibrationReport]:
    """Hear the picks of ``played`` in ``recording`` and fit every string picked
    (``mic``: the recorder's gain, measured, weighed with the strings' anchor)."""
    click = played.get("click_delay_us")
    if (click is None) != (spec.sync_click is None) or (click is not None and spec.sync_click is not None
                                                          and int(click) != spec.sync_click.delay_us):  # fmt: skip
        have = "no sync_click" if spec.sync_click is None else f"sync_click.delay_us {spec.sync_click.delay_us}"
        raise CalibrationError(f"{where}: the take's sync patterns were {'picked' if click is None else 'clicked'} "
                               f"(click_delay_us {click}), but spec {spec.name!r} has {have}: calibrate with the "
                               "spec the take was played for")  # fmt: skip
    picks = played.get("picks")
    if not isinstance(picks, list) or not picks:
        raise CalibrationError(f"{where}: played.json has no picks (a piano's take? allowed: a guitar's, "
                               "from calibrate --spec GUITAR --record-with-any-recorder)")  # fmt: skip
    n = len(spec.strings)
    results: dict[int, list[StrikeResult]] = {}
    for i, p in enumerate(picks):
        s = int(p["string"])
        if not 0 <= s < n:
            raise CalibrationError(f"{where}: picks[{i}].string: {s} is not a string of {spec.name!r} "
                                   f"(allowed 0..{n - 1})")  # fmt: skip
        results.setdefault(s, []).append(StrikeResult(spec.open_pitch(s), float(p["drive"]), int(p["t_us"])))
    rep = GuitarCalibrationReport(pickers=len(results), play_calls=1, heard_by="audio",
                                  sim_time_us=int(played.get("end_us", 0)))  # fmt: skip
    ear = GuitarEar(mic=mic)
    pending = [r for s in sorted(results) for r in results[s]]
    heard = ear.hear(spec, Performance(audio=recording), pending, [int(t) for t in played["sync_starts_us"]], where)
    at = iter(heard)
    ear.fix(spec, results, {s: [next(at) for _ in results[s]] for s in sorted(results)})
    note_ear(spec, ear, rep)
    rep.picks = len(pending)
    cal = StringCalibration(spec.name, spec.spec_hash, spec.family)
    fit_pickers(spec, {s: results[s] for s in sorted(results)}, cal, rep, audio=True)
    return cal, rep


__all__ = ["fixed_take", "learn_from_recording"]
