"""Adaptive drive choice: which drives each key is struck at next.

Round 0 knows nothing yet and strikes fixed fractions of the way from the spec's nominal
threshold to full drive; later rounds aim at latencies (and loudness points) read from
the key's current fit, staying above any drive that was silent.
"""

from __future__ import annotations

from .fitting import KeyFit
from .scheduler import StrikeRequest
from .strikes import SILENT_LATENCY_US, StrikeResult, latest_latency_us

# Round plan: each round gives every unfinished key these targets, expressed as
# latencies (µs) to aim at from the current fit; 1.0 means "full drive".
# Targets spread over the usable range, weighted to the slow end where the curves
# are steep and where soft music lives.
# First round, before anything is known: drives at these fractions u of the way from
# the spec's nominal threshold to full drive (audible for any plausible threshold).
FIRST_ROUND_U = (1.0, 0.40, 0.15)
# Later rounds, from the current fit: ("lat", f) aims at latency f * the usable
# maximum (min(pipeline delay, 0.8 * silent limit)); ("u", f) at the drive f of the
# way from the fitted threshold to full drive (to spread the loudness curve's points).
# The last round strikes the soft end again, twice (the table's slowest part, where a
# strike's own spread is largest, 3-6 ms s.d. at 300 ms, and the curve steepest; more
# strikes there average it, docs/calibration.md, "Spread"). Two drives, not one twice.
# Through a microphone it is left out (:func:`round_targets`): the detector's onsets of
# the softest strikes are the least sure, and these bent curves instead (truth seed 6,
# exact instrument: onset p99 0.36 ms without the round, 2.90 ms with it; with one drive
# twice the second strike was heard 38 ms late on keys 51 and 66 of seed 1).
ROUND_TARGETS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("lat", 0.55), ("lat", 0.30), ("u", 0.70)),
    (("lat", 0.92), ("lat", 0.75), ("u", 0.25)),
    (("lat", 0.97), ("lat", 0.85)),
)

# The default cap on a key's strikes, key-return probes included (issue 11: <= 14): the
# rounds above use 11, the probes 1 or 2
MAX_STRIKES_PER_KEY = 14


# Through a microphone the last round strikes the loudness curve's middle instead: one
# heard loudness is uncertain by ~4 % (the take's room at the key's partials), and the
# drives music plays most (velocity 40-110, u ~0.1-0.65) had three strikes.
AUDIO_LAST_ROUND: tuple[tuple[str, float], ...] = (("u", 0.55), ("u", 0.32))


# A target the fit puts at or under a drive not heard (below the softest heard) goes these
# fractions of the way from that drive to the softest heard one, the slowest target first:
# the first near the floor (a soft strike to bracket the threshold from above), the next
# higher (the 0.35 + 0.3 i of the way a round's i-th target went before session 30: the
# same drives where a round's soft targets came first, as in ROUND_TARGETS)
FLOOR_FRACTIONS = (0.35, 0.65, 0.95)


def round_targets(audio: bool) -> tuple[tuple[tuple[str, float], ...], ...]:
    """The adaptive rounds' targets: all of :data:`ROUND_TARGETS` through a note-level
    sensor; through a microphone (``audio``) the last, the soft end again, is
    :data:`AUDIO_LAST_ROUND`."""
    return ROUND_TARGETS[:-1] + (AUDIO_LAST_ROUND,) if audio else ROUND_TARGETS


def next_requests(
    strikes: list[StrikeResult], fit: KeyFit | None, budget: int, round_no: int, lat_top_us: float,
    rounds: tuple[tuple[tuple[str, float], ...], ...] | None = None,
) -> list[StrikeRequest]:
    """Drives to strike next for one key (empty when it is done); ``rounds``: the
    adaptive rounds' targets (default :data:`ROUND_TARGETS`)."""
    if budget <= 0:
        return []
    strikes = [s for s in strikes if s.probe_gap_us is None]
    heard = [s for s in strikes if s.heard]
    silent = [s.drive for s in strikes if not s.heard and not s.missed]
    loud_min = min((s.drive for s in heard), default=1.0)
    if fit is None:
        # nothing or one note heard: bracket upward between the loudest silent drive and 1
        lo = max(silent, default=0.0)
        hi = loud_min if heard else 1.0
        if not heard:
            return [StrikeRequest(0, 1.0, SILENT_LATENCY_US)] + (
                [StrikeRequest(0, (lo + 1.0) / 2, SILENT_LATENCY_US)] if budget > 1 else []
            )
        picks = [lo + 0.6 * (hi - lo), lo + 0.3 * (hi - lo)]
        return [StrikeRequest(0, d, SILENT_LATENCY_US) for d in picks[:budget]]
    rounds = ROUND_TARGETS if rounds is None else rounds
    targets = rounds[round_no - 1] if round_no - 1 < len(rounds) else ()
    # the drive no target goes at or under: the loudest one not heard below the softest
    # heard, silent or missed (a strike the detector did not hear, though the curve
    # through the heard ones says it sounds: mark_missed). A softer strike than one not
    # heard is quieter and later still (the action is monotone in drive), so it would
    # not be heard either; yet a missed strike is left out of the fit, whose slow end,
    # extrapolated from louder strikes, can then put its threshold under that drive and
    # aim the next soft targets under it again (truth seed 2 room 0, key 50: 0.101 silent
    # and 0.166 missed, then 0.07 and 0.08, both silent, its slow end extrapolated from
    # 0.287 and 6.0 ms off at velocity 40; with the floor 0.226 and 0.277, heard, 1.0 ms;
    # docs/calibration.md, "Session 30, velocity"). Through a note-level sensor nothing is
    # marked missed: the floor is the loudest silent drive, as before.
    floor = max((s.drive for s in strikes if not s.heard and (not s.missed or s.drive < loud_min)), default=None)
    aims = []
    for kind, frac in targets[:budget]:
        if kind == "lat":
            lat = frac * lat_top_us
            d = fit.drive_for_latency(lat)
        else:
            d = fit.theta + frac * (1.0 - fit.theta)
            lat = float(fit.latency_us(d))
        aims.append((d, lat))
    # those at or under the floor go between it and the softest heard drive instead, the
    # slowest of them nearest the floor (a drive heard softly, near the slow end, to
    # bracket the threshold from above): FLOOR_FRACTIONS of the way, by how slow each
    # was aimed (its rank among them), so a round's order does not move them
    under = sorted((i for i, (d, _) in enumerate(aims) if floor is not None and d <= floor), key=lambda i: -aims[i][1])
    rank = {i: r for r, i in enumerate(under)}
    reqs = []
    for i, (d, lat) in enumerate(aims):
        onset = lat
        if i in rank:
            assert floor is not None
            frac = FLOOR_FRACTIONS[min(rank[i], len(FLOOR_FRACTIONS) - 1)]
            d = floor + frac * (loud_min - floor)
            onset = floor_latency_us(fit, loud_min, frac)
        # the latest it may sound (its hold, its key's next strike) stays the aimed one's:
        # a moved strike is louder and sooner than aimed, so that is later still
        reqs.append(StrikeRequest(0, d, latest_latency_us(lat), onset_us=onset))
    return reqs


def floor_latency_us(fit: KeyFit, loud_min: float, frac: float) -> float:
    """The expected latency of a target moved ``frac`` of the way from the floor to the
    softest heard drive ``loud_min`` (:func:`next_requests`): the key's fitted curve
    through its latency at ``loud_min``, its exponent, with the threshold at the floor,
    ``fit.latency_us(loud_min) x frac ** -alpha``. The fit's own threshold lies under the
    floor (that is why the target moved), so its curve puts the moved drive sooner still;
    the floor was not heard, so the threshold lies near it (a missed strike: just under)
    or over it (silent: the strike sounds later than this, and its wide look, from its
    soonest, finds it). The latency first aimed at was the fit's for a drive under the
    floor: its window missed the moved strike, whose wide look then took a neighbour's
    onset (truth seed 1 room 0, key 22: 0.246 looked for at 276 ms, sounding at 112 ms,
    read at 12 ms; this puts it at 113 ms, read at 110.6; docs/calibration.md, "Session 31,
    velocity")."""
    return float(fit.latency_us(loud_min)) * frac ** -fit.alpha
