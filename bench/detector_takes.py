"""The detector bench's pieces, takes and scoring (issue 11), in one place for
``bench_hearing.py --part detector`` (the bench of record: it renders every take afresh),
``timing_breakdown.py`` and ``unheard_notes.py`` (they keep the takes under ``--cache``
and rescore them in seconds while a detector rule is tried).

A take: a piece planned with the truth seed's calibration (note-level sensor, as verify
and the closed loop plan), played on ``sim://?sensor=audio`` (30 dB SNR, the room, the
audio clock OFFSET_S ahead, no drift), its audio, the sounded notes (the truth: read
here only to score, never by the detector), the plan's notes on the audio clock, and the
key-unknown onsets (``--voice``: the simulator's piano voice, ``sim://?voice=``, the rich
one by default as sim://'s since session 19, ``--voice plain`` the plain one; a cache
folder holds one voice's takes, named in its VOICE file, and refuses the other's: a
folder cached before session 19 without that file holds plain takes).
Scoring: a heard onset matches a sounded note of its key within 20
ms (``match_onsets``); F1, the median error, and per sounded note that is missed whether
its key was heard 20-100 ms off ("timed off") or not near at all ("unheard"); "false":
an onset no strike of its key lies within 100 ms of. The fakes: planned notes nobody
played (:func:`fake_neighbours`), which the detector must not hear.
"""

from __future__ import annotations

import argparse
import ast
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from robo_player.hearing import detector as det_mod
from robo_player.hearing.detector import Detector, Onset
from robo_player.matching import ONSET_WINDOW, Window, match_onsets
from robo_player.score import Note, PedalEvent, Score
from robo_player.sim.audio import DEFAULT_VOICE

OFFSET_S = 0.1  # the audio clock's offset in every take
ROOM_URL = f"sim://?sensor=audio&offset_s={OFFSET_S}&drift_ppm=0"
BEFORE_S, AFTER_S = ONSET_WINDOW.before_us * 1e-6, ONSET_WINDOW.after_us * 1e-6
MATCH = Window(20_000, 20_000)  # the target's "within 20 ms"
OFF_US = 100_000  # a missed note's key heard this near (but not within 20 ms): timed off
VOICES = ("plain", "rich")  # the simulator's piano voices (robo_player/sim/audio.py Voice)
VOICE_FILE = "VOICE"  # in a cache folder: the voice its takes were rendered in


def check_cache_voice(cache: Path, voice: str) -> bool:
    """Refuse to mix voices in one cache folder: its VOICE file names the voice of its
    takes (a folder without one holds plain takes, cached before voices existed).
    Returns whether the folder still needs its VOICE file written."""
    marker = cache / VOICE_FILE
    if marker.exists():
        have = marker.read_text().strip()
        if have != voice:
            raise SystemExit(f"{cache}: holds takes in the {have} voice, not {voice}: use --voice {have} "
                             "or another --cache folder")
        return False
    if voice != VOICES[0] and cache.exists() and any(cache.glob("*.npz")):
        raise SystemExit(f"{cache}: holds takes with no {VOICE_FILE} file (the plain voice), not {voice}: "
                         f"use --voice {VOICES[0]} or another --cache folder")
    return True


def random_piece(seed: int, seconds: float = 40.0) -> Score:
    """A piece the project does not ship: random notes and chords, 2-8 per second."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.0
    while t < seconds:
        for p in rng.choice(np.arange(33, 97), size=int(rng.integers(1, 4)), replace=False):
            notes.append(Note(int(p), int(t * 1e6), int(rng.uniform(0.1, 0.6) * 1e6), int(rng.integers(30, 115))))
        t += float(rng.uniform(0.12, 0.5))
    notes.sort(key=lambda n: (n.onset_us, n.pitch))
    return Score(notes=notes)


def crop(score: Score, seconds: float, start_s: float = 0.0) -> Score:
    """The notes struck in [first onset + start_s, + seconds) of ``score``, moved to start
    at 0 (durations cut at the end), and the pedal in that span: a row of real music
    that stays under a minute."""
    if not score.notes:
        return score
    t0 = score.notes[0].onset_us + int(start_s * 1e6)
    t1 = t0 + int(seconds * 1e6)
    notes = [replace(n, onset_us=n.onset_us - t0, duration_us=max(1, min(n.end_us, t1) - n.onset_us))
             for n in score.notes if t0 <= n.onset_us < t1]
    down = [e for e in score.pedal if e.t_us < t0]
    pedal = [PedalEvent(0, down[-1].value, down[-1].channel)] if down else []
    pedal += [replace(e, t_us=e.t_us - t0) for e in score.pedal if t0 <= e.t_us < t1]
    return Score(notes=notes, pedal=pedal, ticks_per_beat=score.ticks_per_beat, source=score.source)


# the fake planned neighbours' intervals (semitones from a planned note that was struck):
# semitone and tone either way, a fifth up, an octave either way, a twelfth up
FAKE_INTERVALS = (-1, 1, -2, 2, 7, -12, 12, 19)
FAKE_CLEAR_S = 0.2  # ... where no strike of that key lies this near


def fake_neighbours(intended: Sequence[tuple[float, int]], truth: Sequence[tuple[int, int]], offset_s: float,
                    seed: int) -> list[tuple[float, int, int]]:
    """The verify honesty check's fakes: for every third intended note (audio s, pitch), a
    planned note at its time a semitone, tone, fifth, octave or twelfth from it (one of
    FAKE_INTERVALS, drawn), where no strike of that key (``truth``: the sounded (us,
    pitch), performance clock) lies within FAKE_CLEAR_S. A plan that asks for a key
    nobody struck, beside a related key that was: every onset reported for it is false.
    Each as (audio s, key, interval)."""
    rng = np.random.default_rng(seed)
    struck: dict[int, list[float]] = {}
    for t_us, p in truth:
        struck.setdefault(p, []).append(t_us * 1e-6 + offset_s)
    out = []
    for k, (t, p) in enumerate(sorted(intended)):
        d = int(rng.choice(FAKE_INTERVALS))
        q = p + d
        if k % 3 or not 21 <= q <= 108:
            continue
        if any(abs(u - t) < FAKE_CLEAR_S for u in struck.get(q, [])):
            continue
        out.append((t, q, d))
    return out


def add_row_args(ap: argparse.ArgumentParser, *, pieces: Sequence[str] = (), cache: bool = False,
                 random_default: Sequence[int] | None = ()) -> None:
    """The options that name a run's rows (and ``--set``, ``--seed``; ``cache``: ``--cache``).
    ``random_default`` None: one random piece, of ``--seed``'s seed, unless ``--random``."""
    ap.add_argument("--seed", type=int, default=1, help="the truth seed (the piano's hidden parameters)")
    ap.add_argument("--random", type=int, nargs="*", default=None if random_default is None else list(random_default),
                    metavar="SEED", help="random pieces (not shipped) of these seeds"
                    + (" (default: --seed's)" if random_default is None else ""))
    ap.add_argument("--pieces", nargs="*", default=list(pieces), help="bundled pieces")
    ap.add_argument("--midi", nargs="*", default=[], metavar="FILE",
                    help="MIDI files the project does not ship (e.g. ASAP's, /work/shared/data/asap/), "
                         "cropped to --seconds from --start")
    ap.add_argument("--seconds", type=float, default=30.0, help="--midi: seconds of each file played")
    ap.add_argument("--start", type=float, default=0.0, help="--midi: from this many seconds after the first note")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="detector constants to try for the run (e.g. INFORMED_LOOSE_X=2)")
    ap.add_argument("--voice", choices=VOICES, default=DEFAULT_VOICE.value,
                    help="the simulator's piano voice (sim://?voice=; docs/simulator.md): rich (default, as sim://'s) "
                         "or plain")
    if cache:
        ap.add_argument("--cache", type=Path, required=True,
                        help="folder of the rendered takes: read where there, rendered once and kept where not "
                             "(one voice per folder)")


def parse_list_args(doc: str | None, list_help: str) -> argparse.Namespace:
    """A per-row bench's command line: the rows (:func:`add_row_args`, with ``--cache``),
    ``--list`` (``list_help``), the ``--set`` constants applied."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_row_args(ap, cache=True)
    ap.add_argument("--list", action="store_true", help=list_help)
    args = ap.parse_args()
    set_constants(args.set)
    return args


def set_constants(assignments: Sequence[str]) -> None:
    """``--set NAME=VALUE``: a detector constant for this run, its type kept."""
    for kv in assignments:
        name, _, value = kv.partition("=")
        if not hasattr(det_mod, name) or not name.isupper():
            raise SystemExit(f"--set {kv}: the detector has no constant {name}")
        old = getattr(det_mod, name)
        setattr(det_mod, name, type(old)(ast.literal_eval(value)))


def rows(args: argparse.Namespace) -> list[tuple[str, Callable[[], Score]]]:
    """The run's rows: (name, its score, built when needed)."""
    from robo_player.midi import bundled_piece, read_midi

    seeds = args.random if args.random is not None else [args.seed]
    out: list[tuple[str, Callable[[], Score]]] = [
        (f"random {s}", lambda s=s: random_piece(200 + s, 30.0)) for s in seeds]
    out += [(n, lambda n=n: read_midi(bundled_piece(n))) for n in args.pieces]
    span = "" if (args.seconds, args.start) == (30.0, 0.0) else f" {args.seconds:g}s from {args.start:g}s"
    out += [("/".join(Path(m).parts[-3:]).removesuffix(".mid") + span,
             lambda m=m: crop(read_midi(m), args.seconds, args.start)) for m in args.midi]
    return out


@dataclass
class Take:
    """One rendered performance (see the module's docstring)."""

    name: str
    y: np.ndarray
    sr: int
    truth: np.ndarray  # (n, 3): sounded t_us (performance clock), pitch, velocity
    intended: list[tuple[float, int]]  # the plan's notes: (audio s, pitch)
    blind: list[Onset]  # the key-unknown onsets
    blind_wall_s: float = float("nan")  # what the detector and its blind pass took
    voice: str = VOICES[0]  # the simulator's piano voice it was rendered in

    @property
    def seconds(self) -> float:
        return len(self.y) / float(self.sr)

    @property
    def struck(self) -> list[tuple[int, int]]:
        """The sounded notes as (t_us, pitch)."""
        return [(int(t), int(p)) for t, p, _ in self.truth]

    def detector(self) -> Detector:
        return Detector(self.y, self.sr)


def calibration(spec, seed: int):  # noqa: ANN001, ANN201
    """The truth seed's calibration by the note-level sensor (~5 s): as verify and the
    closed loop plan (the audio calibration's onsets are within ~1.2 ms p99 of it)."""
    from robo_player.calibrator import calibrate_session
    from robo_player.driver import open_port

    with open_port("sim://?sensor=notes", spec, truth_seed=seed) as dev:
        cal, _ = calibrate_session(dev, spec)
    return cal


def render(name: str, score: Score, spec, cal, seed: int, voice: str = VOICES[0]) -> Take:  # noqa: ANN001
    """``score`` planned with ``cal`` (None: the spec's nominal curves) and played on the
    room microphone of truth ``seed`` (the piano in ``voice``), with its key-unknown onsets."""
    from robo_player.driver import open_port
    from robo_player.planner.piano import plan_piano
    from robo_player.planner.report import Fate

    plan, report = plan_piano(score, spec, cal)
    url = f"{ROOM_URL}&voice={voice}"
    with open_port(url, spec, truth_seed=seed, timing_sd_us=0, loudness_sd=0) as dev:
        perf = dev.play(plan)
    assert perf.audio is not None
    y, sr = perf.audio.samples(), perf.audio.sample_rate
    t0 = time.perf_counter()
    blind = Detector(y, sr).detect()
    wall = time.perf_counter() - t0
    truth = np.array([(h.t_us, h.pitch, h.velocity) for h in perf.heard], dtype=float).reshape(-1, 3)
    intended = [(o.target_t_us * 1e-6 + OFFSET_S, int(o.pitch_out)) for o in report.outcomes
                if o.fate is not Fate.DROPPED and o.pitch_out is not None]
    return Take(name, y, sr, truth, intended, blind, wall, voice)


def _save(take: Take, path: Path) -> None:
    b = np.array([(o.t_s, o.pitch, o.velocity, o.rise_db, o.risen, o.sure) for o in take.blind],
                 dtype=float).reshape(-1, 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, y=take.y, sr=take.sr, truth=take.truth,
             intended=np.array(take.intended, dtype=float).reshape(-1, 2), blind=b, voice=take.voice)
    tmp.replace(path)  # a reader beside us never sees half a file


def _load(name: str, path: Path, voice: str = VOICES[0]) -> Take:
    z = np.load(path)
    if "blind" not in z.files:
        raise SystemExit(f"{path}: a take cached by an older script (no blind onsets); render it again "
                         "into another --cache folder")
    have = str(z["voice"]) if "voice" in z.files else VOICES[0]
    if have != voice:
        raise SystemExit(f"{path}: a take in the {have} voice, not {voice}: use another --cache folder")
    blind = [Onset(float(t), int(p), float(v), float(r), float(f), bool(s)) for t, p, v, r, f, s in z["blind"]]
    return Take(name, z["y"].astype(float), int(z["sr"]), z["truth"],
                [(float(t), int(p)) for t, p in z["intended"]], blind, voice=have)


def takes(args: argparse.Namespace, cache: Path | None = None, *, calibrated: bool = True) -> Iterator[Take]:
    """Each row's take: from ``cache`` where kept there (calibrated plans only), else
    rendered (the calibration made once, when first needed) and kept there."""
    from robo_player.spec import load_spec

    spec = load_spec(getattr(args, "spec", "piano-88-grand"))
    voice = getattr(args, "voice", DEFAULT_VOICE.value)
    mark = cache is not None and calibrated and check_cache_voice(cache, voice)
    cal = None
    for name, make in rows(args):
        fname = name.replace("/", "_").replace(" ", "_") + ("" if args.seed == 1 else f"_seed{args.seed}")
        path = cache / f"{fname}.npz" if cache is not None and calibrated else None
        if path is not None and path.exists():
            yield _load(name, path, voice)
            continue
        if calibrated and cal is None:
            cal = calibration(spec, args.seed)
        take = render(name, make(), spec, cal, args.seed, voice)
        if path is not None:
            if mark:
                path.parent.mkdir(parents=True, exist_ok=True)
                (path.parent / VOICE_FILE).write_text(voice + "\n")
                mark = False
            _save(take, path)
        yield take


@dataclass
class Scored:
    """Heard onsets against a take's sounded notes."""

    heard: list[tuple[int, int]]  # (t_us on the performance clock, pitch)
    pairs: dict[int, int]  # sounded note -> its heard onset, within 20 ms
    f1: float
    precision: float
    recall: float
    median_ms: float  # of the matched onsets' errors
    spread_ms: float  # their median |error - median|
    timed_off: list[int]  # sounded notes missed whose key was heard 20-100 ms off
    unheard: list[int]  # ... heard nowhere near
    false: int  # onsets with no strike of their key within 100 ms


def score(take: Take, ons: Sequence[Onset]) -> Scored:
    truth = take.struck
    heard = [(int((o.t_s - OFFSET_S) * 1e6), o.pitch) for o in ons]
    pairs = match_onsets(truth, heard, MATCH)
    tp = len(pairs)
    p, r = tp / max(1, len(heard)), tp / max(1, len(truth))
    err = np.array([heard[j][0] - truth[i][0] for i, j in pairs.items()], dtype=float)
    med = float(np.median(err)) if len(err) else float("nan")
    off, unheard = [], []
    for i, (t, k) in enumerate(truth):
        if i not in pairs:
            (off if any(q == k and abs(u - t) < OFF_US for u, q in heard) else unheard).append(i)
    used = set(pairs.values())
    false = sum(1 for j, (u, q) in enumerate(heard) if j not in used
                and not any(k == q and abs(t - u) < OFF_US for t, k in truth))
    return Scored(heard, pairs, 2 * p * r / max(1e-9, p + r), p, r, med / 1000,
                  float(np.median(np.abs(err - med))) / 1000 if len(err) else float("nan"), off, unheard, false)


def intended_onsets(det: Detector, take: Take, extra: Sequence[tuple[float, int]] = (), *,
                    informed: bool = True) -> list[Onset]:
    """The plan-known pass as verify runs it (the plan's notes, and ``extra`` planned ones)."""
    plan = sorted([*take.intended, *extra]) if extra else take.intended
    return det.detect_intended(plan, BEFORE_S, AFTER_S, take.blind, informed=informed)


def fakes_heard(det: Detector, take: Take, seed: int, *, informed: bool = True
                ) -> tuple[list[tuple[float, int, int]], list[bool], list[Onset]]:
    """The take's fakes (:func:`fake_neighbours`), whether each was heard with them
    planned, and that pass's onsets."""
    fakes = fake_neighbours(take.intended, take.struck, OFFSET_S, seed)
    ons = intended_onsets(det, take, [(t, q) for t, q, _ in fakes], informed=informed)
    heard = [any(o.pitch == q and -BEFORE_S <= o.t_s - t <= AFTER_S for o in ons) for t, q, _ in fakes]
    return fakes, heard, ons


@dataclass
class Candidate:
    """A frame the plan-known search looks at for a planned key (``Detector.find``'s
    candidates: a local top of the key's rise >= PLANNED_RISE_DB); those with fewer
    partials risen than TIGHT_MIN_FRACTION have no midpoint and no share."""

    frame_s: float
    rise_db: float
    risen: float
    mid_s: float | None = None  # the planned midpoint (what the search times)
    share: float | None = None  # the owner test's new share there, unplanned rivals in
    share_raw: float | None = None  # ... the plan's keys only
    refined_s: float | None = None  # the refined onset from the midpoint
    frame_share: float | None = None  # the share and refined onset taken at the frame instead
    frame_refined_s: float | None = None


def candidates(det: Detector, p: int, t: float, intended: Sequence[tuple[float, int]]) -> list[Candidate]:
    """The plan-known search's candidate frames for key ``p`` planned at audio ``t``, the
    plan's other notes (``intended``) weighed as ``detect_intended`` weighs them."""
    b, a = BEFORE_S, AFTER_S
    near_s = b + a + det_mod.OTHERS_S
    others = [q for u, q in intended if abs(u - t) <= near_s and q != p]
    own = sorted({q for u, q in intended if t - b <= u <= t + a} - {p})
    cols = det.own_partials(p, own) if own else None
    r = det.rise_db(p)
    hop_s = det.hop / det.sr
    f0, f1 = max(0, int((t - b) / hop_s)), min(len(r), int(np.ceil((t + a) / hop_s)) + 1)
    seg = r[f0:f1]
    ok = (seg >= det_mod.PLANNED_RISE_DB) & (seg >= np.roll(seg, 1)) & (seg >= np.roll(seg, -1))
    out = []
    for j in np.nonzero(ok)[0]:
        i = f0 + int(j)
        c = Candidate(i * hop_s, float(r[i]), det.risen_fraction(p, i))
        if c.risen >= det_mod.TIGHT_MIN_FRACTION:
            c.mid_s = det._planned_midpoint(p, i, cols)
            c.share = det.new_share(p, c.mid_s, others, unplanned=True)
            c.share_raw = det.new_share(p, c.mid_s, others)
            c.refined_s = det._refine(p, c.mid_s, c.rise_db).t_s
            c.frame_share = det.new_share(p, c.frame_s, others, unplanned=True)
            c.frame_refined_s = det._refine(p, c.frame_s, c.rise_db).t_s
        out.append(c)
    return out
