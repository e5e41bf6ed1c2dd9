"""A user's own score/performance pair, aligned note by note with parangonar.

``robo-player train --arch render --corpus pair:SCORE.mid,PERFORMANCE.mid --init-from
models/render.pt --out mine.pt`` fine-tunes the rendering network on a pianist's own
performance of a score. Both files are MIDI: the score quantised (its ticks give the
quarters, its time signature the bars), the performance as played (velocities, timing,
CC64 pedal). partitura reads them and parangonar's ``AutomaticNoteMatcher`` (Peter et al.,
ISMIR 2023: a coarse DTW, then windowed symbolic matching) pairs each score note with the
performed note that plays it; the result is an :class:`~robo_player.model.asap.Performance`
like the ones read from ASAP's match files, with its alignment rate (matched / (matched +
deleted + inserted)).

parangonar and partitura are an optional extra (``pip install 'robo_player[align]'``); they
pull no torch (parangonar's torch is its ``accelerated`` extra, which is not asked for).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError, UsageError
from .asap import Performance

log = logging.getLogger(__name__)


def parse_pairs(spec: str) -> list[tuple[Path, Path]]:
    """``pair:S1,P1+pair:S2,P2`` -> [(S1, P1), (S2, P2)]; UsageError naming a bad part."""
    out = []
    for part in spec.split("+"):
        if not part.startswith("pair:"):
            raise UsageError(f"--corpus {spec}: {part!r} is not pair:SCORE.mid,PERFORMANCE.mid")
        files = part[len("pair:"):].split(",")
        if len(files) != 2 or not all(files):
            raise UsageError(f"--corpus {part}: give two files, pair:SCORE.mid,PERFORMANCE.mid")
        for f in files:
            if not Path(f).is_file():
                raise UsageError(f"--corpus {part}: {f}: no such file")
        out.append((Path(files[0]), Path(files[1])))
    return out


def _modules() -> tuple[object, object]:
    try:
        import parangonar
        import partitura
    except ImportError as err:
        raise ModelError(f"aligning a score/performance pair needs parangonar and partitura "
                         f"(pip install 'robo_player[align]'): {err}") from err
    return partitura, parangonar


def align_pair(score_path: str | Path, perf_path: str | Path) -> tuple[Performance, float]:
    """The aligned performance and its alignment rate; ModelError naming the file that
    cannot be read or has no notes."""
    pt, pa = _modules()
    from ..midi import read_midi

    score_path, perf_path = Path(score_path), Path(perf_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # partitura warns about every odd written duration
        try:
            sna = pt.load_score_midi(str(score_path)).note_array(  # type: ignore[attr-defined]
                include_time_signature=True, include_metrical_position=True, include_staff=True)
        except Exception as err:  # noqa: BLE001 - partitura raises many kinds
            raise ModelError(f"{score_path}: cannot read the score MIDI ({err})") from err
        try:
            pna = pt.load_performance_midi(str(perf_path)).note_array()  # type: ignore[attr-defined]
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"{perf_path}: cannot read the performance MIDI ({err})") from err
    for path, arr in ((score_path, sna), (perf_path, pna)):
        if len(arr) < 2:
            raise ModelError(f"{path}: {len(arr)} notes; a pair needs at least 2 in each file")
    alignment = pa.AutomaticNoteMatcher()(sna, pna)  # type: ignore[attr-defined]
    match = {a["score_id"]: a["performance_id"] for a in alignment if a["label"] == "match"}
    inserted = sum(1 for a in alignment if a["label"] == "insertion")
    order = np.lexsort((sna["pitch"], sna["onset_quarter"]))
    sna = sna[order]
    p_index = {pid: i for i, pid in enumerate(pna["id"])}
    m = len(sna)
    p_on, p_dur, p_vel = np.full(m, np.nan), np.full(m, np.nan), np.full(m, -1, np.int64)
    for i, sid in enumerate(sna["id"]):
        j = p_index.get(match.get(sid, ""), -1)
        if j >= 0:
            p_on[i], p_dur[i], p_vel[i] = pna["onset_sec"][j], pna["duration_sec"][j], pna["velocity"][j]
    divs = np.maximum(sna["divs_pq"].astype(float), 1.0)
    pitch = sna["pitch"].astype(np.int64)
    staff = sna["staff"].astype(np.int64)
    if len(set(staff.tolist())) < 2:  # one staff (or none) in the MIDI: the hands by middle C
        staff = np.where(pitch >= 60, 1, 2)
    played = np.stack([pna["pitch"], np.round(pna["onset_sec"] * 1e6), np.round(pna["duration_sec"] * 1e6),
                       pna["velocity"]], axis=1).astype(np.int64)
    pedal = read_midi(perf_path).pedal
    ped = np.array([(e.t_us, e.value) for e in pedal], np.int64).reshape(-1, 2)
    perf = Performance(
        folder=f"pair:{score_path.name}", name=perf_path.stem, pitch=pitch,
        onset_q=sna["onset_quarter"].astype(float), dur_q=np.maximum(sna["duration_quarter"].astype(float), 1e-3),
        bar_pos_q=sna["rel_onset_div"] / divs, bar_len_q=np.maximum(sna["tot_measure_div"] / divs, 1e-3),
        voice=sna["voice"].astype(np.int64), staff=staff, flags=np.zeros(m, np.int64),
        sid=np.arange(m, dtype=np.int64), p_onset_s=p_on, p_dur_s=p_dur, p_vel=p_vel, played=played,
        pedal=ped, inserted=inserted)
    n_match = int((p_vel >= 0).sum())
    rate = n_match / max(1, m + inserted)
    log.info("%s + %s: %d of %d score notes matched, %d inserted, alignment rate %.3f",
             score_path, perf_path, n_match, m, inserted, rate)
    return perf, rate
