"""What the bass retime (``Detector._bass_retime``, BASS_RETIME; session 21) changes on the
detector bench's cached takes, in one plan-known pass per take: the pass with the rule on,
every onset it moved logged, and the same pass with those moves undone (the rule off: it
never adds nor drops a note, and its onset stays in the note's search window, so the fakes
heard are the same; ``timing_breakdown.py`` counts them). Prints each row's F1, timed-off,
unheard and false before -> after, and with ``--list`` every move (key, truth-relative ms).

    A=/work/shared/data/asap; nice .venv/bin/python bench/bass_retime.py --voice rich --cache /tmp/takes18r \
        --random 1 2 3 [--midi ...] [--list]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector_takes import OFFSET_S, intended_onsets, parse_list_args, score, takes  # noqa: E402

from robo_player.hearing.detector import Detector, Onset  # noqa: E402


def main() -> None:
    args = parse_list_args(__doc__, "every onset the rule moved")
    moves: list[tuple[Onset, Onset]] = []
    retime = Detector._bass_retime

    def logged(self: Detector, o: Onset, *a: object) -> Onset:
        r = retime(self, o, *a)  # type: ignore[arg-type]
        if r is not o:
            moves.append((o, r))
        return r

    Detector._bass_retime = logged  # type: ignore[method-assign]
    print(f"{'take':<40} {'F1 before -> after':>20} {'off':>8} {'unheard':>8} {'false':>8} moved")
    for take in takes(args, args.cache):
        moves.clear()
        after = intended_onsets(take.detector(), take)
        back = {id(r): o for o, r in moves}
        before = [back.get(id(o), o) for o in after]
        sb, sa = score(take, before), score(take, after)
        print(f"{take.name:<40} {sb.f1:>9.3f} -> {sa.f1:.3f} {len(sb.timed_off):>3} -> {len(sa.timed_off):<2} "
              f"{len(sb.unheard):>3} -> {len(sa.unheard):<2} {sb.false:>3} -> {sa.false:<2} {len(moves)}", flush=True)
        if args.list:
            truth = take.struck
            for o, r in moves:
                near = [t for t, p in truth if p == o.pitch and abs(t - (o.t_s - OFFSET_S) * 1e6) < 100_000]
                t = min(near, key=lambda t: abs(t - (o.t_s - OFFSET_S) * 1e6)) if near else None
                ms = "no strike within 100 ms" if t is None else (
                    f"{((o.t_s - OFFSET_S) * 1e6 - t) / 1e3:+.1f} -> {((r.t_s - OFFSET_S) * 1e6 - t) / 1e3:+.1f} ms")
                print(f"    key {o.pitch} at {o.t_s:.3f} s (rise {o.rise_db:.1f} dB): {ms}")


if __name__ == "__main__":
    main()
