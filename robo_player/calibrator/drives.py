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


# Through a microphone the soft end's last round is left out for two loudness points, 55 %
# and 32 % of the way from the threshold (the loudness curve's middle: one heard loudness
# is ~4 % off, and the drives music plays most, velocity 40-110, had three strikes), and
# the rounds' targets are ordered so that each of the microphone's places hears every key
# at a loud drive (session 28). A round's j-th target is its j-th take
# (session.split_takes) and the takes go to the places in order
# (positions.position_of_take): at make demo's 5 places the adaptive takes 3-4, 5-6, 7-8
# and 9-10 a place, so each round's loud ("u") and soft ("lat") targets alternate and
# u 0.55 is struck a round earlier in the place of lat 0.75. In the old order the second
# place heard only soft strikes (lat 0.55, 0.30) and the first and last the most loud
# ones. make demo, 5 truths and rooms: velocity 2.07 -> 2.01 (every row better, by
# 0.02-0.12), onset p99 2.11 -> 2.01 ms; a sixth (truth seed 4, room 5) 2.05 -> 1.88, its
# onset p99 2.12 -> 2.26 ms (docs/calibration.md, "Session 28, velocity"). Every place's
# first take, whose strikes its level is fitted on, is a soft pass in this order: on two of
# those six rows one key's slow end came out 14-20 ms off (a soft strike timed at another
# sound); an order with each place's first take loud fixed both (three rows run, not all).
AUDIO_ROUNDS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("lat", 0.55), ("u", 0.70), ("lat", 0.30)),
    (("u", 0.55), ("lat", 0.92), ("u", 0.25)),
    (("lat", 0.75), ("u", 0.32)),
)


def round_targets(audio: bool) -> tuple[tuple[tuple[str, float], ...], ...]:
    """The adaptive rounds' targets: :data:`ROUND_TARGETS` through a note-level sensor;
    through a microphone (``audio``) :data:`AUDIO_ROUNDS` (the soft end's last round left
    out for two loudness points, a round's loud and soft targets alternating over the
    microphone's places)."""
    return AUDIO_ROUNDS if audio else ROUND_TARGETS


def probe_index(targets: tuple[tuple[str, float], ...], n: int) -> int:
    """Which of a round's first ``n`` requests a key-return probe follows: the last loud
    ("u") target's, as when the loud target was each round's last (:data:`AUDIO_ROUNDS`
    alternates them); the last request where none is loud (the note-level rounds: the
    last, as ever). A trial order whose first round ended on lat 0.30, the probe right
    after it, broke four bass keys' tables (truth seed 2, room 0: keys 21, 27, 28, 39,
    11-83 % off the truth at velocity 40-64; key 28's table 67 at a drive the truth gives
    31: by the look of it a soft strike heard at its probe's onset); with the probe after
    the loud target, none (docs/calibration.md, "Session 28, velocity")."""
    loud = [i for i, (kind, _) in enumerate(targets[:n]) if kind == "u"]
    return loud[-1] if loud else n - 1


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
    reqs = []
    for i, (kind, frac) in enumerate(targets[:budget]):
        if kind == "lat":
            lat = frac * lat_top_us
            d = fit.drive_for_latency(lat)
        else:
            d = fit.theta + frac * (1.0 - fit.theta)
            lat = float(fit.latency_us(d))
        # stay above a drive that was silent: bisect toward it if the fit disagrees
        if silent and d <= max(silent):
            d = max(silent) + (0.35 + 0.3 * i) * (loud_min - max(silent))
        reqs.append(StrikeRequest(0, d, latest_latency_us(lat), onset_us=lat))
    return reqs
