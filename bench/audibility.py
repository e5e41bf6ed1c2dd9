"""How audible each sounded note of the detector bench's takes is, from the simulator's
own synthesis (issue 11: is the detector's F1 >= 0.98 within reach?). Reads the truth:
a bench, never a part of the detector.

    nice .venv/bin/python bench/audibility.py --cache /tmp/takes --random 1 2 3 [--midi F ...] [--list]

For each row (``detector_takes.py``'s rows and takes; the take's sounded notes are played
again for their durations and pedal), each sounded note is rendered alone and the sound
of every other note apart, at the take's microphone gain, with the take's noise power,
each through the room's reverb (a tail drawn like the room's; ``--dry``: none). On 2048-sample Hann windows (5 ms
hop) whose centres lie 0..40 ms after its onset, at each of its partials (the peak bin
+-1), the note's power over:

- ``mask``: the other notes' power there plus the noise (what a spectral detector that
  knows nothing of the ringing sees);
- ``new``: the power of the other notes struck within +-50 ms of it plus the noise (an
  ideal detector that predicts every ringing note exactly: only the strikes beside it and
  the noise hide it).

Each note's figure is its best partial in its best window (dB). A note whose ``new`` is
below 0 dB is buried under its chord's own strikes and the noise in every partial; the
table counts such notes beside the detector's misses (timed off / unheard, as
``timing_breakdown.py`` scores them) so one sees how many misses any spectral detector
would share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_takes as dt  # noqa: E402

from robo_player.sim.audio import _fade_s, _note_length, _PitchBank, render_audio, render_note_part  # noqa: E402
from robo_player.sim.room import Room, noise_sd, reverb_tail  # noqa: E402

WIN = 2048
HOP_S = 0.005
AFTER_S = (0.0, 0.040)  # window centres after the onset
REVERB_BEFORE_S = 0.6  # the room's tail: the sound this long before the windows is reverberated into them
NEW_S = 0.050  # another note struck this near counts in ``new``
THRESHOLDS_DB = (-6.0, 0.0, 6.0)


def sounded(args: argparse.Namespace, name: str):  # noqa: ANN201
    """The row's performance played again (the same plan and truth as its take)."""
    from robo_player.driver import open_port
    from robo_player.planner.piano import plan_piano
    from robo_player.spec import load_spec

    spec = load_spec("piano-88-grand")
    if not hasattr(sounded, "cal"):
        sounded.cal = dt.calibration(spec, args.seed)  # type: ignore[attr-defined]
    make = dict(dt.rows(args))[name]
    plan, _ = plan_piano(make(), spec, sounded.cal)  # type: ignore[attr-defined]
    with open_port(dt.ROOM_URL, spec, truth_seed=args.seed, timing_sd_us=0, loudness_sd=0) as dev:
        return dev.play(plan)


def _add(into: np.ndarray, a: int, b: int, bank: _PitchBank, note, s0: int, n: int, fade: float) -> None:  # noqa: ANN001
    """Samples a..b of the take (``into[0]`` is sample a) of ``note`` (onset at sample s0)."""
    part = render_note_part(note, n, fade, bank, a - s0, b - s0)
    lo = max(0, s0 - a)
    into[lo : lo + len(part)] += part


def audibility(perf, sr: int = 48000, *, dry: bool = False) -> np.ndarray:  # noqa: ANN001
    """(n, 2) per sounded note (perf.heard order): ``mask`` and ``new`` in dB; each part
    through the room's reverb (one tail drawn for the take) unless ``dry``."""
    room = Room(offset_s=dt.OFFSET_S, drift_ppm=0.0)
    tail = reverb_tail(sr, room.rt60_s, room.wet_db, np.random.default_rng(0))
    pre = 0 if dry else int(REVERB_BEFORE_S * sr)
    gain = 10.0 ** (room.gain_db / 20.0)
    win = np.hanning(WIN)
    noise_bin = noise_sd(room, render_audio) ** 2 * float(np.sum(win**2))
    bank = _PitchBank(sr)
    pedal = sorted(perf.pedal)
    times = [t for t, _ in pedal]
    notes = [h for h in perf.heard if h.t_us >= 0]
    spans = []
    for h in notes:
        fade = _fade_s(pedal, times, h.end_us)
        s0 = int(round((h.t_us * 1e-6 + dt.OFFSET_S) * sr))
        spans.append((h, s0, _note_length(h, fade, sr), fade))
    hop = int(HOP_S * sr)
    out = np.full((len(perf.heard), 2), np.nan)
    for idx, (h, s0, n, fade) in enumerate(spans):
        c0, c1 = s0 + int(AFTER_S[0] * sr), s0 + int(AFTER_S[1] * sr)
        a, b = c0 - WIN // 2 - pre, c1 + WIN // 2
        own = np.zeros(b - a)
        rest = np.zeros(b - a)
        near = np.zeros(b - a)

        _add(own, a, b, bank, h, s0, n, fade)
        for j, (g, t0, m, f) in enumerate(spans):
            if j == idx or t0 >= b or t0 + m <= a:
                continue
            _add(rest, a, b, bank, g, t0, m, f)
            if abs(g.t_us - h.t_us) <= NEW_S * 1e6:
                _add(near, a, b, bank, g, t0, m, f)
        if not dry:  # the direct sound and the room's tail of everything since a
            nfft = 1 << (b - a + len(tail) - 1).bit_length()
            ft = np.fft.rfft(tail, nfft)
            own, rest, near = (y + np.fft.irfft(np.fft.rfft(y, nfft) * ft, nfft)[: b - a] for y in (own, rest, near))
        starts = pre + np.arange(0, c1 - c0 + 1, hop)
        po, pr, pn = (np.abs(np.fft.rfft(np.stack([y[s : s + WIN] * win for s in starts]) * gain, axis=1)) ** 2
                      for y in (own, rest, near))
        k, _, _ = bank.get(h.pitch)
        f0 = 440.0 * 2.0 ** ((h.pitch - 69) / 12.0)
        bins = np.round(k * f0 * np.sqrt(1 + 1e-4 * 2.0 ** ((h.pitch - 21) / 20.0) * k * k) * WIN / sr).astype(int)
        best_m = best_n = -np.inf
        for bb in bins:
            sl = slice(max(1, bb - 1), bb + 2)
            m = po[:, sl].sum(1) / (pr[:, sl].sum(1) + 3 * noise_bin)
            nw = po[:, sl].sum(1) / (pn[:, sl].sum(1) + 3 * noise_bin)
            best_m, best_n = max(best_m, float(m.max())), max(best_n, float(nw.max()))
        out[perf.heard.index(h)] = 10 * np.log10(best_m), 10 * np.log10(best_n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    dt.add_row_args(ap, cache=True)
    ap.add_argument("--list", action="store_true", help="each missed note with its figures")
    ap.add_argument("--dry", action="store_true", help="without the room's reverb")
    args = ap.parse_args()
    dt.set_constants(args.set)
    head = " ".join(f"{'new<' + format(x, 'g'):>7}" for x in THRESHOLDS_DB)
    print(f"{'take':<32} {'notes':>5} {'F1':>6} {'missed':>6} {head} {'mask<0':>7} "
          f"{'missed & new<0':>14} {'F1 if new>=0 all heard':>22}")
    for take in dt.takes(args, args.cache):
        perf = sounded(args, take.name)
        if [(h.t_us, h.pitch) for h in perf.heard] != take.struck:
            raise SystemExit(f"{take.name}: the replay's sounded notes differ from the cached take's")
        aud = audibility(perf, dry=args.dry)
        s = dt.score(take, dt.intended_onsets(take.detector(), take))
        missed = set(s.timed_off) | set(s.unheard)
        buried = {i for i in range(len(aud)) if aud[i, 1] < 0}
        n = len(aud)
        # a detector that heard every note not buried (new >= 0 dB) and nothing false: the
        # F1 that the buried notes alone leave
        r = 1 - len(buried) / n
        ceiling = 2 * r / (1 + r)
        cols = " ".join(f"{int(np.sum(aud[:, 1] < x)):>7}" for x in THRESHOLDS_DB)
        print(f"{take.name:<32} {n:>5} {s.f1:>6.3f} {len(missed):>6} {cols} {int(np.sum(aud[:, 0] < 0)):>7} "
              f"{len(missed & buried):>14} {ceiling:>22.3f}", flush=True)
        if args.list:
            for i in sorted(missed):
                t, p, v = take.truth[i]
                kind = "timed off" if i in s.timed_off else "unheard"
                print(f"    {t * 1e-6 + dt.OFFSET_S:7.3f}s key {int(p):3d} v{v:5.1f} {kind:<9} "
                      f"mask {aud[i, 0]:+6.1f} dB new {aud[i, 1]:+6.1f} dB")


if __name__ == "__main__":
    main()
