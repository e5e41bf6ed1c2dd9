"""Onsets and loudness of struck piano notes in mono audio (44.1 or 48 kHz), numpy only.

Two questions, one front end:

- **key known** (calibration strikes: this key, somewhere in this window):
  :meth:`Detector.find` returns the start of the key's attack and its loudness, or
  None if the key did not sound there;
- **key unknown** (a whole performance): :meth:`Detector.detect` returns every onset
  with its pitch, chosen by a harmonic template over the 88 piano pitches.

- **plan known** (verifying a performance): :meth:`Detector.detect_intended` looks for
  each intended note as a known key near its time (where that finds none, by a
  score-informed decomposition: :meth:`Detector.informed`) and keeps the unexplained strays.

Candidates: a power spectrogram (Hann window of 2048 samples, hop 2 ms) and, per pitch,
the power at its partials ``k·f0`` (k = 1..8, up to +4 % for the string's stretch); a
candidate is where they rise (:data:`FIND_RISE_DB` known key, :data:`MIN_RISE_DB`
unknown, over 40 ms). Whose sound it is (:meth:`Detector.new_share`): the magnitude
that appeared (a 4096-sample window after minus one before) as a non-negative sum of
harmonic templates of this key and its rivals (keys struck nearby, related keys).
The onset (:meth:`Detector.y_onset`): the key's partials through Gaussian bands, their
power less the background before (a line), summed; the linear part of that sum meets
zero at the onset plus a per-key constant measured on a reference tone
(:func:`energy_response`) and taken off. The coarse onset of a key-unknown or plan-known
strike is the midpoint of its new power (:meth:`Detector.new_power`): the partials' bins
less a prediction of the sound already ringing there, so a strike in anti-phase with a
ringing partial is not timed late; with the plan known, the earlier of that and the
salience's midpoint (a neighbour's damper landing as the key is struck leaves power the
prediction does not explain, and the new power's midpoint late), or the median of the
risen partials' own midpoints where earlier (:meth:`Detector.partial_midpoints`: one
partial under a ringing one does not move it); where a planned key whose partials meet
ours is struck close by and the search is in doubt, the keys' joint timing
(:mod:`.joint`, analysis by synthesis) is a second opinion.

Loudness: the note's comb-filtered power over 3..13 ms after the onset, less the
background, over the reference tone's gain and the microphone's reference gain, turned
into MIDI velocity by the level law of :mod:`robo_player.voicing`. docs/hearing.md has
the measurements.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from ..errors import HearingError
from ..voicing import (
    ATTACK_S,
    VELOCITY_MAX,
    f0_hz,
    partial_amplitudes,
    power_for_velocity,
    velocity_for_power,
)
from . import bands, joint
from .stepfit import N_PARTIALS as STEP_PARTIALS
from .stepfit import POST_S as STEP_POST_S
from .stepfit import step_bands, step_check, step_frequency, step_onset

_T = TypeVar("_T", bound=tuple[float, ...])

SAMPLE_RATES = (44100, 48000)
N_FFT = 2048
HOP_S = 0.002
MIN_RISE_DB = 9.0  # a pitch's salience must rise this much over RISE_S to be a strike
RISE_S = 0.040
F_MAX_HZ = 10_000.0
INHARMONIC = 0.04  # partials may sit this much above k·f0
REFERENCE_GAIN_DB = -24.0  # the simulator's room: a velocity-127 note's level law x this
CLIP_LEVEL = 0.999
LOWEST, HIGHEST = 21, 108
# keys whose partials meet ours (semitones, fourths, fifths, twelfths, two octaves):
# one of them struck raises some of our partials; it scores higher at its own
RELATED = (-24, -19, -7, -5, -2, -1, 1, 2, 5, 7, 19)
# below this key a window of 4096 samples does not resolve a semitone: the owner test
# weighs only the keys known to be struck nearby; a known strike there relies on the calibrator keeping related keys'
# onsets apart (calibrator/scheduler.py KIN_GAP_US)
MIN_OWNER_PITCH = 45  # low keys: a semitone is under a bin, scores nearly tie
LONG_N = 4096  # the windows that tell pitches apart (85 ms at 48 kHz, 11.7 Hz bins)
LONG_HOP_S = 0.004
GAP_S = 0.003  # the windows before and after a boundary keep this far from it
STRETCH = 1e-3 / 16  # partial k may sit up to STRETCH·k² above k·f0 (a string's inharmonicity)
NNLS_ITERS = 200
MIN_NEW = 30.0  # new_share: a key sounded when this many noise units of it appeared
# a known key's candidate: this fraction of its partials rose by 6 dB (a soft low note
# is dark: its upper partials stay under the noise; the owner test still has to pass)
FIND_MIN_FRACTION = 0.25
# ... where the window is tight (an absolute clock, the key's fit): a soft low note whose
# fundamental alone rose (1 of 8 partials) is taken, the owner test still has to pass
TIGHT_MIN_FRACTION = 0.1
FIND_RISE_DB = 4.0  # a known key's candidates: a smaller rise (a re-strike of a ringing key)
# ... with the plan known (find(planned=True), the candidate with the largest share
# taken): 3 dB (a soft note under a ringing one; intended F1 mean +0.003 on the four
# takes of docs/hearing.md, tuned on them; 2 dB: +0.001)
PLANNED_RISE_DB = 3.0
# ... and a candidate whose new sound is under PLANNED_MIN_NEW noise units and under
# PLANNED_CROWD x that of a planned key whose partials meet ours (CROWD_KIN semitones
# away, either way) is what that key's template leaves, not ours: a
# planned key never struck beside a struck related key (a semitone, tone, fifth, octave,
# twelfth) was heard at >= MIN_NEW. The bench's fake neighbours on random 1-3 (tuned
# there): 55 of 187 heard -> 24; intended F1 0.969/0.976/0.983 -> 0.966/0.976/0.983
# (PLANNED_MIN_NEW 80: 41 fakes; 250: 13 and F1 -0.003..-0.008; any planned key a rival,
# not only related ones: 21 fakes, ASAP Beethoven 0.955 -> 0.949; docs/hearing.md). The
# same 150 noise units as INFORMED_MIN_RISE: the informed stage may still hear the note
PLANNED_MIN_NEW = 150.0
PLANNED_CROWD = 1.0
# ... and of the candidates that pass the owner test, one whose share is >= PLAN_TIE_X x
# the largest and whose coarse onset lies PLAN_TIE_NEARER_S or more nearer the plan's time
# than the largest's is taken instead (the nearest such; find(plan_s=...)). Over a quiet
# background a key struck 10-60 ms before ours lifts every partial of ours (its hammer's
# thump and its strike's spectrum through the 46 ms window: broadband, the bins between
# our partials rise 15-24 dB): a candidate there with every partial risen 20-40 dB, and the
# new share (85-93 ms windows either side) cannot tell it from our strike 20-60 ms later
# (its window after holds our strike): the later's share 0.73-0.97 x the earlier's, and the
# search took the earlier. Beethoven 18-1 (Avdeeva01, the sixteenth set): 4 of its 16 soft
# keys heard 30-47 ms early are heard at their strikes; a neighbour struck 20-60 ms after
# us is told from us the same way (the random rows). It breaks a tie, it does not pull to
# the plan: a candidate near the plan must pass the owner test. 0.7: the four's 0.73-0.97;
# 10 ms: the candidates told apart lie 20-60 ms apart ("Session 32, early soft notes": the
# search's decisions it changes on sets 9-16, the bench). None: the largest share alone.
PLAN_TIE_X: float | None = 0.7
PLAN_TIE_NEARER_S = 0.010
# The same tie-break (:meth:`Detector._plan_tie`) in the stages after the search, each on
# its own score (session 33): the joint second opinion and the bass and upper retimes keep
# the onset they were given where it lies PLAN_TIE_NEARER_S or more nearer the plan than
# their move and scores >= PLAN_TIE_MOVE_X x the move's (the joint: 1 / residual; the
# retimes: the fraction of the bands' residual a step there removes; 0.5: the funeral
# march's, Beethoven 18-1's and Schubert D. 664/2's moves onto a neighbour's strike scored
# 0.50-0.70 of the move, their models holding no thump); the informed stage and the
# bass rescue, which time a key at its salience's largest rise (a neighbour's thump rises
# most), take a rise the search would look at nearer the plan whose new share is >=
# PLAN_TIE_X x the largest rise's (:meth:`Detector._informed_onset`). Only between the
# onsets the audio offers, never at the plan's time. False: the search alone (session 32).
PLAN_TIE_STAGES = True
PLAN_TIE_MOVE_X = 0.5
# ... and a rise the informed stage's tie takes shows some share of its own (new share >
# PLAN_TIE_MIN_SHARE): where the largest rise's share is 0 too, a rise with none is no
# evidence of our strike (session 33, the lead: with 0 shares tying, the Scherzo op. 20 heard
# two more fakes, semitone neighbours timed at their plan; Schubert D. 664/2's gain, 7 -> 5
# off, came from such ties and is given up)
PLAN_TIE_MIN_SHARE = 0.0
CROWD_KIN = (1, 2, 5, 7, 12, 19, 24, 28, 31, 34, 36)
# ... unless every crowding key lies CROWD_UNDER semitones below us (our fundamental is
# its 3rd..8th partial) and our partials that none of them reaches (main lobes apart:
# :meth:`Detector.own_amplitude`) hold CROWD_OWN_X of our new sound, our largest one
# CROWD_OWN_MIN noise units: the crowding key's template leaves sound on the partials it
# shares with us only; a soft key struck with a loud bass key whose 6th..8th partial is
# our fundamental rose on its own upper partials (random 2's A4 v30 beside D2 v118; a
# crowding key above us or a fourth, fifth, tone, semitone away leaves our fundamental
# unshared, and fakes kept 30-76 noise units there: ASAP Schumann, Chopin; session 17,
# docs/hearing.md)
CROWD_UNDER = (19, 24, 28, 31, 34, 36)
CROWD_OWN_X = 0.5
CROWD_OWN_MIN = 12.0
FLOOR_X = 3.0
BLIND_RELATIVE = 0.25  # key unknown: our share of what appeared must be >= this x the largest rival's
# key unknown (detect): a candidate rose BLIND_RISE_DB with BLIND_MIN_FRACTION of its
# partials by 6 dB, and the owner test gives it BLIND_MIN_NEW noise units (looser
# candidates, a stricter owner: F1 +0.016..+0.027 on random pieces 1-3 and bwv66.6;
# session 8, with the fine pitch: 0.3 -> 0.2, F1 +0.009..+0.030; docs/hearing.md)
BLIND_RISE_DB = 6.0
BLIND_MIN_FRACTION = 0.2
BLIND_MIN_NEW = 60.0
# plan known: a key-unknown onset no intended note explains (a stray) is kept only when
# this fraction of its partials rose (precision +0.005..+0.03, recall unchanged, on the
# same four takes)
STRAY_MIN_FRACTION = 0.5
# ... and its fine pitch (where heard) within this many semitones of its key (a low
# neighbour's strike a semitone away: session 9, with the key-unknown midpoint of the new
# power; docs/hearing.md)
STRAY_PITCH_TOL = 0.35
# ... and its owner test fits each rival's fundamental apart from its upper partials
# (:meth:`Detector.new_amplitude`'s ``free_fundamental``): a bass key's fundamental
# radiates weakly on a piano, and its template (fundamental-heavy) then left its even
# partials, an octave's or twelfth's, to a stray there (session 19)
STRAY_FREE_FUNDAMENTAL = True
# ... and only where it reads an attack (velocity > 0: :meth:`Detector._attack`'s band power
# over a period from 3 ms after the onset above the 20 ms before): a wrong key struck is a
# strike; a stray without one is a neighbour's sound in its bins. Session 28 (helper bass;
# docs/hearing.md, "Session 28, bass"): twelfth-set Beethoven 16-2 (LuoJ04M) gave 10 false
# strays in a C5-D5 trill, 6 of them at velocity 0 (D#5 and C#5 7-10 ms after a C5's, D5's,
# E5's strike); on the ninth to twelfth sets 7 of the 50 false strays read velocity 0, the
# one true stray an attack
STRAY_HEARD = True
# key unknown: an onset whose new sound near its first FINE_PARTIALS partials (each
# heard >= FINE_MIN_NOISE noise units) sits more than FINE_PITCH_TOL semitones off its
# pitch is a neighbour's (:meth:`Detector.fine_pitch`)
FINE_PARTIALS = 4
FINE_MIN_NOISE = 8.0
FINE_PITCH_TOL = 0.75
BAND_SD = 0.25
SNAP_S = 0.015
MAX_FIT_MOVE_S = 0.008  # the energy fit may move the coarse onset this far (else: the comb's)
OTHERS_S = 0.15  # keys struck this near a window weigh in its owner test
MIN_GAP_S = 0.03  # onsets of one key closer than this are one strike
# key unknown: every key whose partials meet ours weighs in the owner test (the keys
# whose k-th partial is our fundamental, k = 2..8, most: they fool a partial-rise test)
KIN = (-24, -19, -12, -7, -5, -2, -1, 1, 2, 5, 7, 12, 19, 24, 28, 31, 34, 36)
# plan known: the coarse onset (Detector._midpoint) from the partials that no other key
# planned within the search window reaches (a neighbour struck 15-40 ms later moved the
# salience's top, and the onset, to its own strike: docs/hearing.md); another key's
# partial within OWN_BINS bins of a partial's bins shares it
OWN_BINS = 1
# ... and where every partial is shared, the salience's top is looked for within this
# many frames of the rise (24 ms: a step's top is 21 ms on), not 2 x lag
SHARED_REACH = 12
# the coarse onset (key unknown, plan known) from the power the ringing sound does not
# explain (:meth:`Detector.new_power`): each bin at the key's partials predicted as one decaying,
# rotating sinusoid from two frames PREDICT_FRAMES apart before the rise's window
PREDICT_FRAMES = 4
# plan known: where at least VOTE_MIN of the key's own partials rose > 6 dB, the median
# of their own midpoints (:meth:`Detector.partial_midpoints`) where earlier: one partial
# under a ringing one (a semitone released as we are struck) reads +10..+25 ms late
# (bwv66.6 F1 +0.013, the ASAP Schumann +0.008, the random pieces unchanged; one partial:
# random 3 -0.006, Beethoven -0.011)
VOTE_MIN = 2
# a known key's strike below DIRECT_MAX_PITCH (F1..D3: f0 under 150 Hz, whose Gaussian
# bands smooth over 10-25 ms) is timed from the direct sound's rise (:meth:`Detector.
# direct_onset`): each partial demodulated through a causal window of one period, the
# amplitude's rise from DIRECT_LO to DIRECT_HI of its level a period on fitted by a line;
# the room's first reflections (4 ms on) barely reach that part of the rise, so the
# room's per-take bias (keys 29-35 heard 1-3 ms late) and the decay the reference tone
# does not share (+0.5..+2 ms below E2) stay out (docs/hearing.md)
DIRECT_MAX_PITCH = 51
DIRECT_LO, DIRECT_HI = 0.2, 0.35
DIRECT_PRE_S = 0.025  # the background: a line through this long ...
DIRECT_GAP_S = 0.004  # ... ending this long before the energy fit's onset
DIRECT_MOVE_S = 0.005  # the direct onset may move the energy fit's this far (else: kept)
DIRECT_SURE_S = 0.003  # ... and is sure (Onset.sure) where it moved it no farther than this
# Where the direct onset is not found from the energy fit's onset (or lies farther than
# DIRECT_MOVE_S), it is looked for again from these far before it, and taken where it lies
# between there (less DIRECT_GAP_S) and the energy fit's onset. On a bass key struck again
# while its own earlier strike still rings under a damper (the recorder path's key-return
# probes after a soft strike, some soft strikes), the energy fit read 5-12 ms late and the
# direct onset, whose background then holds the rise, found nothing: the late onset was
# kept (keys 26-30 of truth seed 1, R read 5-16 ms long). The direct onset read from 0-6 ms
# past the true onset is within 0.6 ms of it, from 8 ms on it finds nothing. On a 3-place
# fixed take (truth seed 1) 15 of ~1100 strikes moved, every one nearer its true onset:
# probes within 1.5 ms 154 -> 160 of 163, the ordinary strikes' p99 error 4.44 -> 4.30 ms
# (docs/calibration.md "Session 29, probe"). Only the calibration's reads (``direct``)
DIRECT_BACK_S = (0.006, 0.012)
# plan known: our new sound must be >= this x the largest unplanned related key's (one
# nobody planned nearby took nearly all of it: struck instead of ours). A key struck
# instead of the planned one, alone (semitones, fifths, octaves, a twelfth): ratio
# <= 0.053, heard as the planned key in 9 of 35 takes before, 1 after; sounded notes of
# random 1-6, bwv66.6, ASAP Beethoven >= 0.061 (at 0.1 random 1 lost one: docs/hearing.md)
UNPLANNED_RELATIVE = 0.05
# plan known, a second stage for a planned note the search above rejects
# (:meth:`Detector.informed`, session 12): the long windows' magnitudes as a non-negative
# sum of the templates of the keys the plan has sounding (struck up to INFORMED_RING_S
# before, or within the search window) and of the key's unplanned related keys. The key
# is heard where its activation rose (the window after a boundary less the one before) by
# INFORMED_MIN_RISE noise units, its template explains INFORMED_EXPLAINED of what the
# others leave in its bins after the boundary (without it the residual there is larger by
# that fraction), and it rose INFORMED_LOOSE_X times more than any unplanned related key.
# Tuned on random 1-3 only (docs/hearing.md)
INFORMED_RING_S = 3.0
INFORMED_MIN_RISE = 150.0
INFORMED_EXPLAINED = 0.3
INFORMED_LOOSE_X = 3.0
INFORMED_ITERS = 300
# ... and a note the search heard is not heard where its activation rose less than this
# anywhere in the window (the plan's other keys' templates explain that sound: a planned
# octave below a struck key, never played; fake planned neighbours on random 1-3: 132 of
# the 492 the search hears, at 2 of its 557 sounded notes found; 50: 93 and 1)
INFORMED_VETO_RISE = 75.0
# ... and from BASS_MAX_PITCH up, where at its largest rise an unplanned related key's
# activation rose more than 1 / INFORMED_VETO_LOOSE_X x its own: a planned twelfth or
# octave above a struck key, never played, read 0.31-0.35 (3 of random 1-3's 16 fakes
# heard); the sounded notes the search heard there >= 0.86 (1.0 dropped two of them:
# random 1's F3 v 35 under a loud F1, random 3's B3 v 37; session 17)
INFORMED_VETO_LOOSE_X = 0.5
# below BASS_MAX_PITCH (D3: the short window's partial bins span several semitones, the
# long window's are under a semitone) the plan-known search is checked, and where it
# hears nothing helped, by the informed stage on windows of BASS_LONG_N samples
# (:attr:`Detector.bass`: 5.9 Hz bins at 48 kHz, a bass semitone's partials told apart
# from the 3rd up). A rescued note is timed as the informed stage times it, only where its
# salience rose >= BASS_RISE_DB there (a smaller rise was a neighbour's as often as its
# own: 4 of 9 rescues on random 1-3 timed 30-65 ms off); a note the search heard is
# dropped where its activation there rose less than BASS_VETO_LOOSE_X x an unplanned
# related key's (session 14; random 1-3: 1.5 / 2.0 / 3.0 (informed's own test): fakes
# heard 19 / 18 / 17 of 187, intended F1 mean 0.9768 / 0.9758 / 0.9750)
BASS_MAX_PITCH = 52
BASS_LONG_N = 8192
BASS_RISE_DB = 6.0
BASS_VETO_LOOSE_X = 1.5
# ... unless, with our key's fundamental fitted apart from its upper partials
# (:meth:`Detector.bass_tests`: a bass key's fundamental radiates weakly on a piano, and
# its fundamental-heavy template left its 2nd..8th partials to an unplanned key an octave
# or twelfth up), ours rose >= BASS_VETO_LOOSE_X x the unplanned related keys' and our two
# columns explain >= BASS_FREE_EXPLAINED of what the others leave in our bins (the
# informed stage's own INFORMED_EXPLAINED, not tuned: a free fundamental also lets a fake
# an octave under a struck key take that key's partials as its even ones, and then
# explains ~0 of them: plain random 1's A0 under a struck A1, random 2's C3; the sounded
# rich random 1 F2 beside a planned E2 0.94). Session 20 (random 1-6, bwv66.6, ASAP
# Beethoven, Schumann; docs/hearing.md). Every decision it changed on the tuning rows kept
# a sounded bass note (4, both voices, fakes unchanged); held out, 12 sounded and one fake
# (rich random 8's A2; session 20, "Measured")
BASS_FREE_FUNDAMENTAL = True
BASS_FREE_EXPLAINED = INFORMED_EXPLAINED
# ... or where, with the fundamental of every planned key sounding (ours and theirs) fitted
# apart from its upper partials (:meth:`Detector.free_planned_tests`), our upper partials
# rose >= INFORMED_MIN_RISE and >= BASS_VETO_LOOSE_X x every unplanned related key's (the
# informed stage's floor and the veto's own ratio, neither tuned); asked only of a search
# onset within BASS_HEARD_PLAN_S of the note's planned time (the target's 20 ms) and not
# where a key struck within BASS_VETO_STEP_NEAR_S of it lies BASS_OCTAVES_OVER semitones
# over ours (our upper partials are its own) or BASS_STEP_NEIGHBOURS from it (a semitone's,
# a tone's partials lie 1-3 bins from ours under the 6th: fakes beside a struck one pass,
# as they pass the step test; Detector._free_planned_asked). With our fundamental alone
# free, a planned key struck or ringing beside ours keeps its fundamental-heavy template,
# and the rich voice's weak bass fundamentals leave its upper partials to our upper column
# (twelfth-set random 67's fake A1 a semitone under a struck A#1 read 274 noise units there,
# 10.8 x the loose keys'): the explained fraction (BASS_FREE_EXPLAINED) is what refused it,
# and it refused the real notes too (-0.47..0.14 on the thirteenth set's random rows). With
# every planned fundamental free that fake rose 5 noise units. Session 29 (helper unheard;
# docs/hearing.md "Session 29, unheard"): on the ninth to thirteenth sets' 50 rows (every
# bass note's veto asked with the rule on and off, the bench's fakes planned too) it keeps
# 12 sounded notes the veto dropped (all within 13 ms of their strikes; 205-3199 noise
# units, 2.1-23.6 x), no fake and no onset off its strike; the bench on the 8 rows it
# changes: unheard 47 -> 35, F1 +0.002..+0.008 on each, off, false and fakes heard as
# before. Without the neighbour gate 10 more sounded notes and 2 fakes (semitone
# neighbours: 224 / 2.34 and 1043 / 3.42); with BASS_STEP_PLAN_S's 30 ms for the plan gate
# an onset 28 ms off (eleventh-set random 64's C2). False: off
BASS_FREE_PLANNED = True
# ... unless the step fit in the key's own bands (:func:`.stepfit.step_frequency`: the
# plan's other strikes its phasors, our own earlier ones among them; :meth:`Detector._step_struck`)
# says the search's onset is our strike: in the bands of our partials that no partial of
# a key struck within BASS_VETO_STEP_NEAR_S of it meets (within BASS_COINCIDE x our f0:
# an octave's, a fifth's partials on ours; that key's step, fitted at its planned time a
# few ms off its strike, leaves there what a step of ours takes: fakes an octave over and
# under a struck key read 0.78-0.85), a step within BASS_VETO_STEP_REACH_S of the onset
# removes >= BASS_VETO_STEP_AT of the residual, and >= BASS_VETO_STEP_SHARE of what it
# removes at the best frequency in each band (a semitone's or a tone's partials lie 6-12 %
# of k·f0 off ours: its step fits better there). No such band: not asked. The loose ratio
# is the 8192-sample templates' say: a bass key re-struck while it rings (a repeated
# figure: Beethoven 9/1's E2, F#2, B2) rose little in them, its unplanned neighbours'
# mismatch more. Session 23 (helper bass), chosen on Beethoven 9/1 (sixth set) and rich
# random 1-2 (bench/bass_gates.py --dump; session 22's step features there had the note's
# own planned strike among the fit's phasors): the sounded notes the veto dropped, a step
# at the onset 0.57-0.94, share 0.88-1.00 (six of eight >= 0.96); the fakes it dropped
# 0.07-0.85, share 0.30-0.94 (0.99 a C3 over a struck C2, which own_bands leaves no band);
# docs/hearing.md, "Session 23, bass". Merged off in session 23 (on the plain tuning rows it
# heard a fake: random 1's E2 planned a semitone over a struck D#2); on since session 24
# with the neighbour and plan-time gates below (BASS_STEP_NEIGHBOURS, BASS_STEP_PLAN_S)
BASS_VETO_STEP = True
BASS_VETO_STEP_AT = 0.7
BASS_VETO_STEP_REACH_S = 0.005
BASS_VETO_STEP_SHARE = 0.95
BASS_VETO_STEP_OFFSETS = 21  # (over ±f0/2: f0/20 apart, 2-9 Hz in the bass)
BASS_VETO_STEP_NEAR_S = 0.05
BASS_COINCIDE = 0.05  # (x f0: a semitone's fundamental lies 0.06 off, a fifth's 3rd partial 0.001 x 2)
BASS_COINCIDE_PARTIALS = 16  # a struck key's partials up to this one (an octave under us: our 8th is its 16th)
# ... and not asked where a key struck within BASS_VETO_STEP_NEAR_S lies this many semitones
# over ours (our even partials are its; our odd ones alone are weak: rich and plain random
# 1's fakes an octave under a struck key, C1 under C2 and A0 under A1, passed in them)
BASS_OCTAVES_OVER = (12, 24)
# ... and asked only of a re-strike: the plan struck our key within this long before the
# onset (its ringing held its activation's rise down: the loose ratio's failure the rule
# is for; Beethoven 9/1's ten were 0.15-0.4 s after the key's last strike). A key struck
# alone, unplanned, where ours was planned (tests/test_hearing.py, a semitone, fifth,
# octave or twelfth from a planned D3) is not in the fit's phasors, so its step at our
# partials passes the test: 4 of 7 heard as ours without this. None: always asked
BASS_STEP_RESTRUCK_S: float | None = 1.0
# ... or, not re-struck, where a key struck within BASS_VETO_STEP_NEAR_S of the onset lies
# this many semitones from ours, up or down (a chord's third to seventh: that key is a
# phasor of the fit and its partials, apart from the ones own_bands leaves out, lie off
# ours; a wrong key struck alone in our key's place, the re-strike gate's case, has no
# such kin). Session 26 (helper bass; docs/hearing.md "Session 26, bass"): on the ninth
# and tenth sets' random rows the real bass notes the veto dropped or the rescue refused
# passed the step's floors beside a louder key 5-11 semitones away (random 51's C2 v56 by
# an F2 v108, random 53's G#2 v38 over an A1 v107, ...), refused by the re-strike gate
# alone; the bench's 253 bass fakes on both sets (fakes-only passes, the plan as context)
# let none in with the gate lifted there (3..11: random 51, 53, 57, 58 +0.003 each). Left
# off in session 26: a wrong key an octave under a planned chord key, struck in its place
# (unplanned, so no phasor, and our partials are all its even ones), passed the step and
# was heard as the planned key (bench/bass_lone.py --chord), where main refuses it; on since
# session 27 with the check below (BASS_KIN_*). (): not asked of a key not re-struck
BASS_STEP_KIN: tuple[int, ...] = tuple(range(3, 12))
# ... and, asked that way (a chord's kin, not a re-strike), only where the step's sound is
# our key's and not a wrong key's whose partials meet a subset of ours (:meth:`Detector._kin_clean`;
# a key struck unplanned, in our key's place, is no phasor of the fit and its step passes
# in the bands it shares with us): (1) the bands of ours off each lattice of
# BASS_KIN_LATTICES (k not a multiple of m: an octave over us fills our even partials
# only, a fifth, a twelfth over our multiples of 3) hold >= BASS_KIN_OFF_AT of their
# residual in the step, and (2) a key BASS_KIN_ALIENS semitones from ours (an octave
# under: our partials are its even ones, its odd ones lie at half-integer multiples of
# our f0; a fifth under or over) steps in its partials that meet none of ours nor a
# struck key's (BASS_KIN_ALIEN_CLEAR below) under BASS_KIN_ALIEN_X x what the step
# removes in our bands (energy, not fraction). Session 27 (helper stepkin; bench/bass_lone.py
# --chord, rich: the planned key with a third over it struck, the wrong key in its place):
# with the kin rule bare 46 of 180 wrong keys were heard as the planned key (main: 6),
# every octave under, and a fifth, octave, twelfth over from B1 up; their step test read
# 0.83-0.99. The fakes' off-lattice share 0.07-0.68 (E1's 0.86-0.92), their alien's ratio
# 0.48-2.8 (an octave under), 1.6-17 (a fifth over), 1.14 (a fifth under); the real strikes
# the kin path hears on the sets (random 51's C2, 53's G#2, 57's A1, 58's F#2) 0.83-0.95 and
# 0.02-0.19 (58's F#2 with BASS_KIN_ALIEN_CLEAR), the bench's thirds (struck, beside the
# wrong key) mostly >= 0.8 and <= 0.47; docs/hearing.md, "Session 27, stepkin"
BASS_KIN_LATTICES = (2, 3)
BASS_KIN_OFF_AT = 0.75
BASS_KIN_ALIENS = (-12, -7, 7)
BASS_KIN_ALIEN_X = 0.45
# (an alien's partial with a struck key's partial within BASS_KIN_ALIEN_CLEAR x our f0 is left
# out: that key's step, fitted at its planned time a few ms off its strike, leaves a residual
# in the alien's band (±f_alien/2 wide; an octave under: ±0.25 x our f0): random 58's F#2 v42
# beside a B1 struck 7 semitones under it (its fundamental 0.17 x f0 from the octave
# under's first partial) read 0.55 with BASS_COINCIDE's 0.05 there)
BASS_KIN_ALIEN_CLEAR = 0.2
# (the alien key's partials the check fits: the step fit's bands, partials 1..STEP_PARTIALS
# (8, :data:`.stepfit.N_PARTIALS`: no band of the fit reaches higher); and ours that such a
# partial may meet (BASS_COINCIDE): up to the 16th, twice the step fit's reach (a fifth
# over's 8th partial lies at our 12th, an octave under's at our 4th; session 27's check,
# kept as measured there: docs/hearing.md, "Session 27, stepkin")
BASS_KIN_ALIEN_PARTIALS = STEP_PARTIALS
BASS_KIN_OUR_PARTIALS = 2 * STEP_PARTIALS
# ... and the kin rule not asked of a key under A1 (33): there a wrong key a semitone or a
# tone away (2.4-3.1 Hz off our fundamental: the frequency share does not tell it from ours),
# and an octave or a twelfth over E1 (its fundamental's band held 0.91 of its residual in
# the E2's step), passed every check (bench/bass_lone.py --chord: E1 and G1, both voices;
# none from A1 up; the real notes the rule heard on the ninth and tenth sets: A1..G#2)
BASS_KIN_MIN_PITCH = 33
# ... and not asked where a key struck within BASS_VETO_STEP_NEAR_S of the onset lies this
# many semitones from ours, up or down (a semitone's or a tone's partials lie 6-12 % of
# k·f0 from ours, inside our bands: its strike, fitted at its planned time a few ms off,
# leaves there a step the frequency share tells from ours only in part: plain random
# 1's fake E2 over a struck D#2 read 0.81 at the onset, share 0.960. Session 24
# (helper bass; bench/bass_gates.py --steps on the tuning rows of both voices and the
# sixth, seventh and eighth sets): 4 of the 5 fakes the rules let through there were a
# semitone or a tone beside a struck key (share 0.960-0.990), against 1 of the 11 notes
# they heard right (seventh-set random 41's A#1 beside a struck B1, share 0.987: lost);
# docs/hearing.md, "Session 24, bass"). (): always asked
BASS_STEP_NEIGHBOURS: tuple[int, ...] = (1, 2)
# ... and asked only of an onset (the search's for the veto, the step's for the rescue)
# within this long of the note's planned time (the plan's times lie a few ms from the
# strikes; a step far from it in a key the other stages do not hear is another sound's:
# Bach 856's fake B2 rescued at a step 64 ms after its plan time, share 0.996-1.000 in
# both voices. Session 24, as above: the notes heard right -13..+6 ms from theirs; 30 ms
# leaves them room, not chosen finer). None: anywhere in the window
BASS_STEP_PLAN_S: float | None = 0.03
# ... and the bass rescue (:meth:`Detector._bass_rescue`) hears a key its 8192-sample stage
# refuses (its rise, loose ratio or explained fraction; or heard there and not timed) at
# the step fit's onset over the window (:func:`.stepfit.step_onset`) where that step
# removes >= BASS_STEP_RESCUE_AT of the bands' residual and the veto's step test holds
# there (:meth:`Detector._step_struck`). Session 23 (helper bass): Beethoven 9/1's re-struck
# E2, A2, F#2, B2, C#3 the stage refused read 0.84-0.93 (share 0.97-1.00, the step 2-6 ms
# after the strike); the 29 fakes it refused on those rows 0.20-0.82, and where their
# share reached 0.95 under 0.8 but an A1 an octave under a struck A2 (BASS_OCTAVES_OVER);
# docs/hearing.md, "Session 23, bass". On with BASS_VETO_STEP (its test), since session 24
BASS_STEP_RESCUE = True
BASS_STEP_RESCUE_AT = 0.8
# ... and a bass key alone in the plan (no other strike planned within BASS_LONE_S of its
# planned time: the plan's notes and the ear's context; :meth:`Detector._lone`), whose
# sound nothing planned beside it can explain: the bass rescue also hears it where the
# 8192-sample stage with its fundamental free (:meth:`Detector.bass_tests`) passes the
# informed stage's tests (rise >= INFORMED_MIN_RISE, >= INFORMED_LOOSE_X x the unplanned
# related keys', explained >= BASS_LONE_EXPLAINED). A loud lone bass key's even partials
# are the unplanned octave's whole template (the rich voice's weak fundamental): ninth-set
# random 54's D2 v106 (struck alone, A2, G#2, E3 ringing) read a loose ratio 2.63 < 3 (the
# unplanned D3 rose 910 of its 2394) and went unheard, with its fundamental free 16.8
# (explained 0.95); random 50's B1 v43 2.91 (free 7.09, 0.70). The bench's fakes are all
# planned beside a struck key (never lone), so the rule's fakes are judged on wrong keys
# struck alone instead of a planned bass key (a semitone, tone, fifth, octave, twelfth;
# bench/bass_lone.py, the tests). (Tried with it, not kept: the veto keeping a lone key's
# search onset at a loose ratio >= 1.0: an A0 v110 struck alone in a planned A1's place was
# then heard as the A1.) Session 26 (helper bass); docs/hearing.md, "Session 26, bass".
# None: off
BASS_LONE_S: float | None = 0.1
BASS_LONE_EXPLAINED = 0.5
# (Session 20 also tried these figures as a second way into the bass rescue,
# BASS_FREE_RESCUE: off, held out it heard 2 fakes; session 21 removed it, no gate found;
# docs/hearing.md "Session 20, bass" and "Session 21, bass")
# ... and the 4096-sample veto (INFORMED_VETO_RISE) does not drop a note below
# BASS_MAX_PITCH whose activation rose at least this much on the 8192-sample windows (the
# informed stage's own floor; session 16: random 2 0.964 -> 0.966, random 3 0.975 ->
# 0.977, fakes heard unchanged on every bench row; docs/hearing.md)
BASS_KEEP_RISE = 150.0
# ... and where the 8192-sample stage hears the note but its salience rose less, the
# onset from a step fitted in its partials' bands (hearing/stepfit.py; session 17: the
# fit alone times 15 of the 20 bass notes random 1-6 left unheard within 10 ms, 17 within
# 20; the step's time kept, not the energy fit's: -15..+6 ms against -9..+4 on random 1-3)
STEP_FIT = True
# ... and every onset the plan-known pass gives a key below BASS_MAX_PITCH (the search's,
# the informed stage's, the bass rescue's) whose salience rose under
# BASS_RETIME_MAX_RISE_DB is checked by that step fit over its search window
# (:meth:`Detector._bass_retime`): where a step at our onset removes under BASS_RETIME_X
# of what the best step removes and leaves over BASS_RETIME_LEFT_X x the best's residual,
# the best lies more than BASS_RETIME_MIN_S from our onset and at least BASS_RETIME_EDGE_S
# inside the window (a best at the window's end is a step the fit wants outside it:
# another strike), the key is timed at the best step. A bass key's salience rise on the
# 2048-sample bins is often a neighbour's (they hold a semitone's partials); a step in the
# key's own bands, the ringing keys' phasors free, is not. Session 21, chosen on the rich
# tuning rows (random 1-6, bwv66.6, ASAP Beethoven, Schumann, Bach 856; a throwaway
# script): of 23 bass notes timed 20-76 ms off, the best step lay within 12 ms of the
# strike on 21; of 421 timed within 20 ms, the best step lay > 20 ms from our onset on 19:
# 6 at the window's end, 7 where a step at our onset removed >= 0.95 of the best's, 4
# whose best was still within 20 ms of the strike, and 3 off it that the last two gates
# spare: a step at our onset left 1.34 and 1.33 x the best's residual (random 4's and 5's
# E2, struck with a semitone or a G3 whose partials fill its bands; plain random 1's F2 in
# a chord with A#1 and D#3, 1.23 x: the best -37 ms), or its salience rose 25 dB (>= 15 dB
# is the key's own strike). The notes the rule timed right left 1.47-34 x (so 1.45, not the
# 1.4 first chosen: tests/test_hearing.py's soft C#2 struck with a D#2 left 1.40 x and was
# moved from +2.9 to -14 ms; the tuning rows' fixes all left more), but rich random
# 6's G2 under two keys two octaves up, 1.2 x, now left 31 ms off. The fit costs ~0.17 s
# a checked note (under load ~5 on 2 cores). Measured in docs/hearing.md, "Session 21, bass"
BASS_RETIME = True
BASS_RETIME_X = 0.95
BASS_RETIME_LEFT_X = 1.45
BASS_RETIME_MIN_S = 0.010
BASS_RETIME_EDGE_S = 0.003
BASS_RETIME_MAX_RISE_DB = 15.0
# ... and the bass rescue's onsets (:meth:`Detector._bass_rescue`, timed at the salience's
# largest rise on its 8192-sample stage's say-so) are checked whatever their rise: the
# search did not find the key there, so the rise it took can be a neighbour's however
# steep. Session 22 (helper bass; no figure tuned): on the rich and plain tuning and
# held-out rows and the sixth set's Schubert op. 90/3 it moved Schubert's C#3 (rescued at
# a 17 dB rise, -31.8 -> +0.4 ms) and held out Brahms op. 118/2's A2 on both voices
# (-64.5 -> -0.2 ms rich), nothing else; docs/hearing.md, "Session 22, bass"
BASS_RETIME_RESCUED = True
# ... and below BASS_MAX_PITCH an onset the search did not give (the informed stage's, the
# bass rescue's, the step rescue's) is not taken where, after the bass retime, it reads no
# attack (velocity 0: the key's band power over a period from 3 ms after the onset no more
# than the 20 ms before, :meth:`Detector._attack`; the sign JOINT_HEARD reads for the
# joint's moves) and lies more than BASS_HEARD_PLAN_S from the note's planned time. These
# stages time a key at its salience's largest rise or its bands' best step, which can be
# the decay or beat of what rang before the strike. Velocity 0 alone is no sign: a soft
# bass key under ringing keys reads 0 at its own strike (ninth to twelfth sets, session
# 28: 27 such onsets of the informed stage and the rescues within 20 ms of the strike,
# 0-17 ms from the plan; 8 timed 21-69 ms off, 23-67 ms from the plan; the bench plays
# with no timing noise, so there the plan's distance is nearly the error); the plan's time is
# the calibrated robot's (within ~1.2 ms p99 of the strike; BASS_STEP_PLAN_S reads it too),
# and 20 ms is the target's own tolerance. Session 28 (helper bass; docs/hearing.md,
# "Session 28, bass"): ninth-set random 54's C#2 v47 (the informed stage, -50 ms) and C2
# v50 (the rescue's step, -67 ms), both struck alone. None: off
BASS_HEARD_PLAN_S: float | None = 0.02
INFORMED_RISE_DB = 1.0  # ... timed at the largest local rise of its salience of at least this
# ... and not heard where its activation rose most at a boundary more than INFORMED_EARLY
# of a long window before the onset it is timed at, and rose under INFORMED_AT_X of that
# at the boundaries within INFORMED_AT_S of the onset: a key struck rises most where the
# window after starts with its strike; a planned neighbour never struck rises most where a
# struck key's onset lies in the middle of the window after (a partial cut off by the
# window's start has a wider spectrum than the templates' Hann lobes, and a semitone's
# template takes the spread). Session 18 (tuned on random 1-6, bwv66.6): of the 13 fakes
# the 4096-sample stage heard there, 9 rose most 35-47 ms before their onset (0.00-0.30 of
# it there); of its sounded notes one rose most earlier than 8 ms before its onset (-25 ms,
# 0.74 of it there). The bass rescue too, on its 8192-sample windows (a third: 51 ms): its
# one fake there rose most 81 ms before (0.18), its sounded notes -26 ms or later.
# Fakes heard on the tuning rows 96 -> 64 of 839, held out (random 7-12, four other ASAP
# performances) 43 -> 34 of 640, no row's F1 down (docs/hearing.md, "Measured")
INFORMED_EARLY = 0.3
INFORMED_AT_S = 0.008
INFORMED_AT_X = 0.5
# plan known: a second opinion on the search's onset of a key (:meth:`Detector.
# _joint_second_opinion`, session 17) where a planned key whose partials meet ours is
# struck within JOINT_NEAR_S and the search is in doubt: another candidate's midpoint or
# frame more than JOINT_AGREE_S from its onset, or its onset within JOINT_COINCIDE_S of a
# planned neighbour's that the plan has >= JOINT_ROLL_S away (a rolled chord: that side
# searched to JOINT_REACH_S). The keys planned around it timed jointly (hearing/joint.py:
# theirs at the search's onsets, ours at each candidate +-JOINT_LOCAL_S; our partials
# within JOINT_SAME_BINS of theirs without a column); the best taken where it leaves
# <= JOINT_MAX_RESIDUAL of the data and gains >= JOINT_MIN_GAIN of it over the search's
# onset (where our key was planned in the JOINT_RESTRIKE_S before, only an earlier one),
# refined by the energy fit where that stays within JOINT_KEEP_S of it; the model holds
# our key and the JOINT_MAX_KEYS - 1 planned keys nearest in time (ASAP Chopin, Bach: the
# same F1 as with all of them, a third of the cost on Bach). Gates chosen on
# the bench's eleven rows (docs/hearing.md, "Session 17, joint"): in-sample
JOINT = True
JOINT_NEAR_S = 0.040
JOINT_AGREE_S = 0.010
JOINT_COINCIDE_S = 0.008
JOINT_ROLL_S = 0.008
JOINT_REACH_S = 0.040
JOINT_LOCAL_S = 0.004
JOINT_SAME_BINS = 0.5
JOINT_MAX_RESIDUAL = 0.45
JOINT_MIN_GAIN = 0.003
JOINT_RESTRIKE_S = 2.0
JOINT_KEEP_S = 0.005
JOINT_MAX_KEYS = 6
# ... and (session 18) where the search is in doubt (its candidates JOINT_AGREE_S apart)
# and no planned key meets ours within JOINT_NEAR_S (JOINT_LONE: a lone key, whose late
# onsets were a beat's crest: a ringing partial a few Hz from ours), from key
# JOINT_BAND_MIN_PITCH up, the complex model of our partials' bands
# (:meth:`Detector._joint_complex`, bands.band_residuals): ours at each JOINT_BAND_STEP_S
# of the search window, taken where it gains >= JOINT_BAND_MIN_GAIN of what the other
# keys' phasors leave and leaves <= JOINT_BAND_MAX_RESIDUAL of it. Chosen on random 2 and
# 3, 4 (tuning rows): random 2's four late keys (+21..+48 ms) best at 0.08-0.47 of it
# (gains 0.10-0.42), a wrong move refused at 0.91; random 3's two wrong moves (chords: an
# E3 under an E5, a D#3 with a D2) gained 0.03-0.04 (0.01 took them: random 3 0.986 ->
# 0.975); below key 45 (random 4's C#2 and E2, a semitone's partials and their dampers
# in the band) it moved on-time bass keys 20-80 ms early.
# JOINT_COMPLEX: the complex model for the chords too, from JOINT_BAND_MIN_PITCH up (random
# 1 / 2 0.995 / 0.993, against 0.990 / 0.983 with the magnitude model there; at gain 0.01); below it
# the magnitude model (joint.residuals) as in session 17
JOINT_LONE = True
JOINT_COMPLEX = True
# a second opinion is a strike: where its onset reads no attack (velocity 0, the attack's
# power no more than the ringing before it) and the search's onset read one, the search's
# is kept (session 25: test_live_audio's sparse take in the fixed room, a lone G3 planned
# 0.5 s after a G4 still ringing on its 2nd partial; the search on time with a 25 dB
# rise, its candidates' frames 13 ms apart (in doubt); the complex model's best step 7 ms
# inside the window's start, its residual 0.38 -> 0.15 (the ringing's misfit taken up),
# 108 ms early at velocity 0; docs/hearing.md, "Session 25, lead")
JOINT_HEARD = True
# below JOINT_BAND_MIN_PITCH the magnitude model's move is taken only where our key's rise
# (:meth:`Detector.rise_db`, its highest within JOINT_LOCAL_S of the move) is >=
# JOINT_MAG_RISE_X of the search's onset's (None: no such gate; :meth:`Detector._joint_rose`).
# Magnitudes do not add: a loud bass pair a minor third apart struck together (random 64's
# C2 + D#2, v74-81) has partials 12-28 Hz apart in one 2048-sample lobe, whose sums beat
# (the fundamentals, 65 and 78 Hz, in one bin: 20 dB down 40 ms after the strike, back at
# 70-80 ms; C2's 5th and D#2's 4th, 327 and 312 Hz: down at 24 ms, back at 48-56), and the
# model put both keys on that re-rise (residual 0.60 at the search's onset, 0.40 at +65 ms),
# where our key rose 3-5 dB against the search's 46-51. Session 27 (docs/hearing.md,
# "Session 27, joint"): of the ninth to eleventh sets' 32 magnitude moves, the 9 under 0.25
# were 7 moved off (on time -> 32-66 ms off) and 2 the JOINT_HEARD rule kept; the 10 that
# brought a key 5 ms or more closer to its strike rose 0.33-2.7 x the search's
JOINT_MAG_RISE_X: float | None = 0.25
JOINT_BAND_STEP_S = 0.001
JOINT_BAND_MIN_GAIN = 0.05
JOINT_BAND_MAX_RESIDUAL = 0.5
JOINT_BAND_MIN_PITCH = 45
# the complex model with a contested neighbour (:meth:`Detector._contested`; session 30): a
# planned neighbour whose search onset lies within JOINT_COINCIDE_S of ours, the plan having
# them >= JOINT_ROLL_S apart and ours >= JOINT_CONTESTED_S nearer its plan time than the
# neighbour's onset is to its own, is fitted a second time at its plan's distance from our
# onset; our onset moves only where that fit asks a move too (the first fit's move). A key an octave
# under ours, planned 8-20 ms after it, is found on our rise (its even partials are ours),
# its phasor switched on there took our strike, and the model put ours on a later key's
# sound 20-50 ms on (fourteenth set, Kreisleriana 3: D#3 over D#2, G3 over G2, 6 notes);
# the plan's placement alone moved 4 on-time notes there 12-22 ms early (docs/hearing.md,
# "Session 30, late-moved onsets")
JOINT_CONTESTED = True
JOINT_CONTESTED_S = 0.002
# a known key struck again while its earlier strike (within RESTRIKE_S before the window)
# rings (:meth:`Detector.find`'s ``ringing``; session 18): the two strikes' partials add
# with any phase, so the salience's rise is small or none. Where the search finds nothing
# (not first: the calibration's windows need not hold the onset, the search's refinement
# may leave them, the step fit cannot), the step fit in its own partials' bands
# (hearing/stepfit.py: the ringing as free phasors times a polynomial of degree
# RESTRIKE_BEND in time, the step rising over ATTACK_S, refined below 1 ms), taken where
# the step removes >= RESTRIKE_MIN_FIT of the bands' residual and lies >= RESTRIKE_EDGE_S
# inside the window (a step at its start takes up the ringing's misfit: a loud key's
# envelope 0.1 s after its strike), and only where the fit can begin RESTRIKE_SETTLED_S
# after the earlier strike's attack has left the bands' window (else it takes that up:
# gaps of 60-100 ms, 12 of 48 loud unstruck heard). Chosen on pairs of seeds 3-8, held
# out on seeds 9-14 (docs/hearing.md, "Session 18: a re-strike of a ringing key")
RESTRIKE_S = 1.0
RESTRIKE_BEND = 5
RESTRIKE_MIN_FIT = 0.6
RESTRIKE_EDGE_S = 0.002
RESTRIKE_SETTLED_S = 0.02
# plan known: where the informed stage hears a planned key but its salience's largest
# rise in the window is another strike's (it lies past the window, or the key's
# activation rose most well before it: :meth:`Detector._rose_early`), the largest local
# rise of at least INFORMED_NEAR_DB whose midpoint lies from INFORMED_AT_S before to
# INFORMED_EARLY of a long window after the boundary where its activation rose most
# (a re-strike of a ringing key between a semitone's strikes: its own rise ~2 dB, the
# neighbours' 7-21 dB)
INFORMED_NEAR = True
# plan known, from BASS_MAX_PITCH up, a third stage for a planned note that neither the
# search nor the informed stage hears (:meth:`Detector._complex_rescue`, session 22,
# crowd): the band model of its partials (:func:`bands.band_residuals`: the plan's keys
# sounding around it phasors, its own earlier strikes too) with its step at each
# COMPLEX_STEP_S of the search window; heard where the best step removes >=
# COMPLEX_MIN_GAIN of what the phasors leave and lies COMPLEX_EDGE_S or more inside the
# window, timed there. A soft key re-struck while it rings under the pedal, or struck with
# a louder key whose partials meet its own, adds little magnitude (a step on a ringing
# phasor, anti-phase at times): its new share is 0 in magnitudes, its step is still most
# of its bands' change. Its step is fitted in the partials no other key planned in the
# window reaches (with every partial, a key an octave under a struck one, never played,
# was heard: rich random 1's fakes 2 -> 5). Rich tuning rows (docs/hearing.md, "Session
# 22, crowd"; the plan's times for the phasors): the unheard from key 52 up removed
# 0.09-0.96 (Schumann), 0.36-0.97 (Schubert op. 90/3, sixth set: 21 of 26 >= 0.6), their
# fakes at most 0.64 and 0.57; 0.75 lies over the largest fake seen (Beethoven 8/1's
# 0.71, the search's onsets for the phasors; at 0.6 it and a plain one were heard)
COMPLEX_RESCUE = True
COMPLEX_MIN_GAIN = 0.75
COMPLEX_STEP_S = 0.001
COMPLEX_EDGE_S = 0.003
# ... and not where the best step lies within COMPLEX_APART_S of another planned strike
# whose partials meet ours (at the search's onset where it found one, else the plan's
# time): there the step takes up that strike's misfit (its phasor's attack, its unisons;
# rich Beethoven 8/1's fake C5 beside a D5 chord, best step 0.71 at +6 ms from strikes at
# -1 and +1 ms). A planned key nobody struck is planned at a struck key's time
COMPLEX_APART_S = 0.010
# ... unless the step removes >= COMPLEX_NEAR_GAIN (session 23, covered): a chord struck
# again while it rings under the pedal has every key struck within a few ms of the
# others. Chosen on the seventh set's Mozart 8/1 (rich; bench/unheard_notes.py's rows
# sorted by a throwaway script, docs/hearing.md "Session 23, covered"): 7 of its 28
# unheard were refused here first, their steps removing 0.76-0.93; the fakes (planned keys
# nobody struck) sorted on it, Debussy Reflets and rich random 2 removed at most 0.74 (a
# Mozart fake an octave under a struck key, 1 ms from it), Beethoven 8/1's C5 0.71
COMPLEX_NEAR_GAIN = 0.8
COMPLEX_HIGH_PARTIAL = 24  # the step's partials keep clear of the window's other keys' partials up to this one
# session 31, scales: where the rescue refuses the step fitted as above, it fits it again
# with the partials of only the keys planned, or found by the search, within COMPLEX_CUT_S
# of our plan time left out, not of every key planned in the search window (+-80 ms). A
# key struck farther off has its attack (the misfit of its phasor's switch-on) farther than
# COMPLEX_PLAN_S from any step the rescue takes, and its partials are phasors of the band
# model like any other; the window's keys left out nearly all of a fast figure's partials
# (Schubert D. 899/2, fifteenth set: a key re-struck 130-190 ms after its last strike, a
# semitone or tone struck 70-90 ms either side: of the 8 notes it gains there, 2 kept no
# partial, 6 best steps of 0.04-0.55, 4 of them 40-70 ms off; the cut at 40 ms kept 5-8
# partials, 0.68-0.87 within 3 ms of their strikes).
# Only where the first is refused: in its place it lost 4 of Une barque's soft re-struck
# notes (fifteenth set, loud neighbours 40-80 ms away: their bands' misfit lowers our
# step's share under the gates), where the first heard them (docs/hearing.md "Session 31,
# fast scales"). None: no second fit (before)
COMPLEX_CUT_S: float | None = 0.04
# session 23, covered: where unplanned related keys took more of what appeared than ours
# (:meth:`Detector._unplanned_took`), the step is fitted again without the partials that
# the one which took most reaches (:meth:`Detector._step_without`); heard where it still
# removes >= COMPLEX_MIN_GAIN within COMPLEX_RECHECK_S of the first best step (3 ms: the
# 1 ms grid and the fit's spread). A key re-struck while it rings adds little magnitude,
# and its octave above, never struck, takes what its re-strike raised at their shared
# partials (a composed A3-C4-E4 chord struck again: the C4's octave took 130 noise units,
# the C4 none); a key struck instead of ours has its step only in the partials it reaches
# (tests/test_hearing.py's key-struck-instead test holds). OFF: judged on the held-out
# rows it let one fake through (plain Mozart 11/3: an F4 nobody struck, its step 0.79 at
# -43 ms kept without the partials of the D#4 that took most; docs/hearing.md, "Session
# 23, covered"); the tuning rows' figures there were measured with it on
# ON since session 24 (restrike), with COMPLEX_PLAN_S below: the fakes it would take lay
# 27-49 ms from their plan times, the real re-strikes it takes within 4 ms
COMPLEX_RECHECK = True
COMPLEX_RECHECK_S = 0.003
# session 24, restrike: the rescue takes a step only within COMPLEX_PLAN_S of the note's
# PLAN time (what the detector is given, not the truth): a key the plan asks for and that
# nothing else heard is struck where the plan says, give or take the calibration's error
# and the planner's; a step farther off is another sound in its bands. Every complex-rescue
# call logged on the tuning rows and the sixth-eighth sets with the truth beside it (a
# throwaway script; docs/hearing.md "Session 24, restrike"): the 18 real notes it heard
# lay -5..+15 ms from their plan times (the +15 a Debussy note struck 16 ms after it), the
# one fake it heard +40 ms (plain random 5); the fakes the recheck would take -27, +49 ms
# (plain random 5, 6) and held out, session 23, -43 ms (plain Mozart 11/3)
COMPLEX_PLAN_S = 0.02
# session 24, restrike: a key the plan strikes again while it rings (a repeated chord or
# inner voice under the pedal) is heard by a weaker step (:meth:`Detector._struck_again`),
# removing >= COMPLEX_AGAIN_GAIN, beside related planned strikes too (no COMPLEX_APART_S
# gate: its chord mates are struck with it), where the plan struck the key within
# COMPLEX_AGAIN_S before, the step lies within COMPLEX_AGAIN_PLAN_S of the note's plan
# time, and the key's salience rose < COMPLEX_AGAIN_MAX_RISE_DB within
# COMPLEX_AGAIN_RISE_REACH_S of it (a re-strike of a ringing key adds little magnitude; a
# planned key nobody struck beside a related key that was rises with that key's partials);
# where an unplanned related key took more, its step without that key's partials must
# still remove COMPLEX_AGAIN_GAIN (:meth:`Detector._step_without`). Chosen on the tuning
# rows (both voices) and the sixth-eighth sets' rows, every complex-rescue call logged with
# the truth beside it (docs/hearing.md, "Session 24, restrike"): the real re-strikes it
# takes (seventh-set Mozart 8/1, sixth-set Schubert op. 90/3) removed 0.55-0.73, lay
# -1..+3 ms from their plan times, rose 1.6-9.7 dB, struck again 0.23-0.30 s after the
# plan's last strike; of the fakes (planned keys nobody struck) whose steps removed >= 0.5
# within 5 ms of the plan time all but one rose 21.8-46.1 dB with no strike of their key
# planned in the 0.5 s before; the one, plain Schumann's E3 planned again 0.47 s after its
# strike and not struck, its step 0.60 at +5.0 ms, rose 8.5 dB (so 0.4 s and 4 ms: either
# alone refuses it). Session 31 (docs/hearing.md "Session 31, the pedal's re-strikes"):
# 0.4 -> 2.0 s: a key re-struck softly under the pedal 0.5-1.5 s after its last strike
# still rings (Ravel's Une barque, fifteenth set: 17 unheard with a step >= 0.55 within
# 4 ms of the plan refused by 0.4 s alone); the other gates hold the fakes: the 12 steps
# 2.0 s takes that 0.4 s refused on sets 9-12 (listed with the truth) lay within 3 ms of
# a real strike, none in the fakes pass; sets 13-15 scored: fakes heard unchanged
COMPLEX_AGAIN = True
COMPLEX_AGAIN_GAIN = 0.55
COMPLEX_AGAIN_S = 2.0
COMPLEX_AGAIN_PLAN_S = 0.004
COMPLEX_AGAIN_MAX_RISE_DB = 15.0
COMPLEX_AGAIN_RISE_REACH_S = 0.004  # (two hops of the salience either side)
INFORMED_NEAR_DB = 1.5
# plan known, from BASS_MAX_PITCH up (the bass retime's step fit for the upper keys,
# :meth:`Detector._upper_retime`, session 22): every onset the informed stage gives, and
# every onset of the search whose salience rose under UPPER_RETIME_MAX_RISE_DB, is checked
# by the step fit in the key's own bands (:func:`.stepfit.step_check`: the plan's other
# strikes, our key's earlier ones among them, phasors of the bands) over its search
# window; where a step at our onset removes under UPPER_RETIME_X of what the best step
# removes, the best lies more than UPPER_RETIME_MIN_S from our onset and at least
# UPPER_RETIME_EDGE_S inside the window, and the key's salience (:meth:`rise_db`) rose by
# UPPER_RETIME_STEP_DB or more within UPPER_RETIME_STEP_REACH_S of the best, the key is
# timed at the best step. A re-strike of a key still ringing under the pedal, or a soft
# key struck 20-60 ms after a louder one whose partials meet its own, lifts its salience
# by a few dB; the neighbour's strike lifts it as much or more, and the search and the
# informed stage took that one (the long windows' shares tie). A step on the key's own
# phasors does not. Chosen on the rich tuning rows without Chopin and the sixth set's
# Beethoven 9/1 and Schubert, checked on the plain tuning rows (bench/upper_retime.py;
# docs/hearing.md, "Session 22, restrike"): of the timed-off notes from key 52 up the best
# step lay within 15 ms of the strike on nearly all; the step gate (2 dB) refuses the
# moves to where the key's salience did not rise (rich random 1's D4, random 31's C#7 and
# F3, plain random 1's D4: the salience rose -3.9..+1.9 dB there; the fixes it keeps
# rose 2.2 dB and more, those it loses 0.2-1.1 dB); 25 dB, not 15 or 20: on those rows'
# logs (Chopin op. 25/8 too) timed off 90 -> 65 at 25 dB, 68 at 20 and at 15 (a lower
# bound: the logs took the informed stage's onsets for the search's by their rise);
# 0.95, not 0.9: rich random 3's F4 (-26 ms, a step there removed 0.905 of the best's),
# Beethoven 8/1's G3 in both voices (0.92-0.93), against rich random 5's F#3 moved off
# (0.92). A gate that refused
# a best step within 3-6 ms of another planned strike whose partials meet ours spared
# two of Bach 856's wrong moves but refused rich random 1's E5 in an octave chord
# (+91 -> +2 ms) and plain Schumann's fixes: not kept
# OFF: judged on the held-out rows it gained on the rich voice (timed off 34 -> 26: Mozart
# 11/3 0.983 -> 0.993, Haydn 31/1 0.944 -> 0.956, Brahms 118/2 0.944 -> 0.951, random 12
# 0.966 -> 0.971; random 9 0.969 -> 0.964) and lost on the plain one (31 -> 35: random 9
# 0.966 -> 0.962, Mozart 0.995 -> 0.990, Haydn 0.969 -> 0.965: best steps that removed
# 0.14-0.16 of the bands' residual, 33-45 ms off); a change that loses on held-out rows is
# not kept on (docs/hearing.md, "Session 22, restrike"). The lead then added the last gate,
# UPPER_RETIME_MIN_BEST: the best step must remove at least this of the bands' residual
# (the held-out plain losses' best steps removed 0.14-0.17, the fixes on every row 0.22 and
# more; re-gated on the helper's logs of the held-out and tuning rows, bench/upper_retime.py
# --dump: held-out plain timed off 31 -> 32 (Haydn 31/1 0.969 -> 0.965 left), held-out rich
# 34 -> 25 with no row down, every tuning row's gain kept), and turned the rule on; the
# seventh set, unseen, judged it (docs/hearing.md, "Session 22, the merge")
UPPER_RETIME = True
UPPER_RETIME_MIN_BEST = 0.2
UPPER_RETIME_MAX_RISE_DB = 25.0
UPPER_RETIME_X = 0.95
UPPER_RETIME_MIN_S = 0.010
UPPER_RETIME_EDGE_S = 0.003
UPPER_RETIME_STEP_DB = 2.0
UPPER_RETIME_STEP_REACH_S = 0.004  # (two hops of the salience either side)
# a best step that removes at least UPPER_RETIME_SURE_BEST of the bands' residual is
# taken where the key's salience rose UPPER_RETIME_SURE_STEP_DB or more within
# UPPER_RETIME_STEP_REACH_S of it (session 23, retime): a key struck again 0.17-0.85 s
# after its own last strike, while it rings, lifts its salience only 1.1-1.7 dB there;
# the search timed it at a neighbour's strike or a later rise (rich Mozart 8/1's A3 three
# times, -35 / -28 / +83 ms; rich Schumann's C#4 +77, Bach 856's F3 +38) and the step
# fit's best, 1-4 ms from the strike, removed 0.82-0.94, where the 2 dB gate refused it.
# Chosen on the logs of the rich and plain tuning rows, the sixth and seventh sets
# (a throwaway script gating every logged check; docs/hearing.md, "Session 23, retime"):
# the moves the 2 dB gate refuses for good removed 0.31-0.64 (rich and plain random 1's
# D4, random 31's C#7 at 1.9 dB and F3, plain Bach 856's A4 at 1.8 dB); 0.8 takes those
# 5 fixes and none of them, 0.85 took 4 of the fixes, 0.6 the C#7 too; 1 dB, not 0: a best
# step 43 ms off at -0.9 dB (plain Bach 856's F3, 0.88)
UPPER_RETIME_SURE_BEST = 0.8
UPPER_RETIME_SURE_STEP_DB = 1.0
# where another key's planned strike lies within UPPER_RETIME_NEIGHBOUR_S of the best step,
# the key's fundamental band alone (:func:`.stepfit.step_check` on partial 1) must say the
# step is ours: a step there at the best removes at least UPPER_RETIME_FUND_GAIN more of
# that band's residual than one at our onset (session 24, retime). A loud key struck while
# ours rings (an octave and a fourth to a twelfth above on Chopin op. 25/8: +12, +17, +20,
# +21) steps in the bands of our upper partials, shared with its own or not (the room, its
# thump, its detuned unisons: the fit over our unshared bands took its strike too); our
# own fundamental, which no key above reaches, stepped at our onset: the fundamental band
# gained -0.02..+0.05 more at those wrong moves' best steps, +0.08..+0.94 at the right
# moves' with a neighbour there (rich Chopin, seventh-set Mozart 8/1 and Debussy; a
# throwaway script on the logged checks, docs/hearing.md "Session 24, retime")
UPPER_RETIME_NEIGHBOUR_S = 0.008
UPPER_RETIME_FUND_GAIN = 0.06
# an onset the informed stage gave (the search heard none) is moved to a best step that
# removes UPPER_RETIME_INFORMED_BEST or more of the bands' residual whether or not the
# key's salience rose there (session 24, retime): re-struck keys ringing 0.3-1.3 s after
# their own last strike, timed 58-74 ms early by the informed stage, whose salience rose
# 0.0-1.8 dB at their strike (eighth-set Schubert Moment musical 1's G3, Ravel Pavane's B3,
# Chopin op. 25/8's F#3, Bach 856's E3; the fit's best 1-3 ms from the strike, removing
# 0.64-0.84); the moves the salience gate refuses for good there were the search's
# onsets (random 31's C#7 0.64, Chopin's F5 0.36) or removed under 0.6 (random 1's D4, an
# informed onset, 0.51). Chosen on the logged checks of the rich tuning rows, the sixth,
# seventh and eighth sets (a throwaway script; docs/hearing.md "Session 24, retime")
UPPER_RETIME_INFORMED_BEST = 0.6
Cols = tuple[int, ...] | None  # a subset of a pitch's partials (None: all)


@dataclass(frozen=True, slots=True)
class Onset:
    """One struck note heard in a recording (audio clock, seconds)."""

    t_s: float
    pitch: int
    velocity: float  # loudness in MIDI velocity units (voicing's level law)
    rise_db: float  # how steeply the pitch's salience rose: the detection's strength
    risen: float = 1.0  # the fraction of its partials that rose (a related key's: fewer)
    # False: a known key below DIRECT_MAX_PITCH whose direct sound gave no onset within
    # DIRECT_MOVE_S of the energy fit's, timed by the energy fit alone (a soft bass
    # strike in the room's noise: |error| > 1 ms for 4 in 5, up to 15 ms; docs/hearing.md)
    sure: bool = True


def _fit(res: np.ndarray, cand: Sequence[float], i: int) -> tuple[float, float]:
    """A joint fit's candidate ``i`` as (score, onset) for :meth:`Detector._plan_keeps`: 1 /
    its residual (larger better)."""
    return 1.0 / max(float(res[i]), 1e-12), float(cand[i])


def check_audio(samples: np.ndarray, sample_rate: int, where: str) -> np.ndarray:
    """``samples`` as float64 mono, or a :class:`HearingError` that says what is wrong."""
    if sample_rate not in SAMPLE_RATES:
        raise HearingError(
            f"{where}: sample rate {sample_rate} Hz is not taken (allowed: 44100, 48000 Hz)"
        )
    y = np.asarray(samples, dtype=np.float64)
    if y.ndim != 1:
        raise HearingError(f"{where}: {y.ndim}-D audio (the detector takes mono)")
    if len(y) < sample_rate // 10:
        raise HearingError(f"{where}: {len(y) / sample_rate:.3f} s of audio (need >= 0.1 s)")
    return y


def clipped_fraction(y: np.ndarray) -> float:
    return float(np.mean(np.abs(y) >= CLIP_LEVEL)) if len(y) else 0.0


def band_hi_hz(f0: float, sr: float) -> float:
    """The top of a key's band (fundamental ``f0``) whose partials the loudness sums:
    eight and a bit partials, under F_MAX_HZ and the sample rate's 0.45."""
    return min(F_MAX_HZ, 0.45 * sr, 8.6 * f0)


def _comb(freqs: np.ndarray, f0: float, f_hi: float) -> np.ndarray:
    """Gain 1 near each partial ``k·f0`` (k = 1..8, up to ``f_hi``; the band reaches
    INHARMONIC above for the string's stretch), raised-cosine skirts, 0 between: the
    key's own sound, with little of its neighbours'."""
    f = np.abs(freqs)
    g = np.zeros_like(f)
    for k in range(1, 9):
        fk = k * f0
        if fk > f_hi:
            break
        lo, hi = fk * 0.985, fk * (1.0 + INHARMONIC * min(1.0, k / 8)) * 1.005
        skirt = max(20.0, 0.01 * fk)
        up = np.clip((f - (lo - skirt)) / skirt, 0.0, 1.0)
        down = np.clip(((hi + skirt) - f) / skirt, 0.0, 1.0)
        g = np.maximum(g, (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down)))
    return g


def _nnls(w: np.ndarray, x: np.ndarray, h0: float, iters: int = INFORMED_ITERS) -> np.ndarray:
    """(keys, columns) non-negative activations with ``w @ h`` near ``x`` (w: (bins,
    keys), x: (bins, columns)) by multiplicative updates from ``h0``."""
    h = np.full((w.shape[1], x.shape[1]), h0)
    wtx, wtw = w.T @ x, w.T @ w
    for _ in range(iters):
        h *= wtx / (wtw @ h + 1e-15)
    return h


_SELF: dict[tuple[int, int], tuple[float, float]] = {}


def detector_response(pitch: int, sample_rate: int) -> tuple[float, float]:
    """The fine stage's own (delay s, power gain) for ``pitch``: its comb and one-period
    smoothing make low notes read late and the early loudness window read low. Measured
    once on a synthetic harmonic tone (partials 1..8 at 1/k, a step onset, no noise)
    and taken off every onset and loudness it reports."""
    key = (pitch, sample_rate)
    if key not in _SELF:
        sr = sample_rate
        t = np.arange(int(0.5 * sr)) / sr
        f0 = f0_hz(pitch)
        f_hi = band_hi_hz(f0, sr)
        y = np.zeros_like(t)
        on = t >= 0.25
        power = 0.0
        for k in range(1, 9):
            if k * f0 < f_hi:
                y[on] += 0.01 / k * np.sin(2 * np.pi * k * f0 * (t[on] - 0.25))
                power += (0.01 / k) ** 2 / 2.0
        det = Detector.__new__(Detector)
        det.y, det.sr, det.gain = y, sr, 1.0
        t_on, p_note = det._attack(pitch, 0.25)
        _SELF[key] = (t_on - 0.25, p_note / 2.0 / power)
    return _SELF[key]


_ENERGY: dict[tuple[int, int], tuple[float, float]] = {}


def _reference_tone(pitch: int, sr: int) -> np.ndarray:
    """0.4 s with the reference tone of ``pitch`` struck at 0.2 s: the level law's
    partials at velocity 64, sine phase, the attack of ATTACK_S, a 0.5 s decay, a
    1e-6 noise floor."""
    t = np.arange(int(0.4 * sr)) / sr - 0.2
    on = t >= 0.0
    y = np.zeros_like(t)
    f0 = f0_hz(pitch)
    ks = np.arange(1, 9, dtype=np.float64)
    for k, a in zip(ks, partial_amplitudes(64.0, ks), strict=True):
        if k * f0 < min(F_MAX_HZ, 0.45 * sr):
            y[on] += a * np.exp(-t[on] / 0.5) * np.sin(2 * np.pi * k * f0 * t[on]) * np.minimum(1.0, t[on] / ATTACK_S)
    return y + np.random.default_rng(0).normal(0.0, 1e-6, len(y))


def energy_response(pitch: int, sample_rate: int) -> tuple[float, float]:
    """:meth:`Detector.y_onset`'s own delay on ``pitch``: on a reference tone (the level
    law's partials at a middle velocity, sine phase, the attack of ATTACK_S, a 0.5 s
    decay, no noise) struck at a known time. The onset's energy comes in bursts of one
    period of f0 (the partials start in phase): where the fit meets zero depends on the
    key, not on how loud it is, so one delay per key is taken off."""
    key = (pitch, sample_rate)
    if key not in _ENERGY:
        sr = sample_rate
        f0 = f0_hz(pitch)
        det = Detector(_reference_tone(pitch, sr), sr)
        t_fit, _ = det.y_onset(pitch, det.y_onset(pitch, 0.2)[0])
        _, p_note = det._attack(pitch, t_fit)
        f_hi = band_hi_hz(f0, sr)
        _ENERGY[key] = (t_fit - 0.2, p_note / 2.0 / power_for_velocity(pitch, 64.0, f_hi + 1.0))
    return _ENERGY[key]


_DIRECT: dict[tuple[int, int], float] = {}


def direct_response(pitch: int, sample_rate: int) -> float:
    """:meth:`Detector.direct_onset`'s own delay (s) on ``pitch``: on the reference tone of
    :func:`energy_response` (the attack of ATTACK_S reads about half of it late)."""
    key = (pitch, sample_rate)
    if key not in _DIRECT:
        t_on = Detector(_reference_tone(pitch, sample_rate), sample_rate).direct_onset(pitch, 0.2)
        assert t_on is not None, f"no direct onset on the reference tone of key {pitch}"
        _DIRECT[key] = t_on - 0.2
    return _DIRECT[key]


def _planned(plan_s: float | None, t_lo_s: float, t_hi_s: float) -> float:
    """A note's planned time for the bass rules' plan gates: ``plan_s``, or where the
    caller has none, the middle of its window ``t_lo_s``..``t_hi_s``."""
    return 0.5 * (t_lo_s + t_hi_s) if plan_s is None else plan_s


def own_bands(pitch: int, struck: Sequence[int]) -> list[int]:
    """The partials of ``pitch`` (numbers 1..8 of the step fit's, :mod:`.stepfit`) that no
    partial (up to BASS_COINCIDE_PARTIALS) of a key in ``struck`` meets within
    BASS_COINCIDE x our f0 (harmonic series)."""
    f0 = f0_hz(pitch)
    theirs = [j * f0_hz(q) for q in struck if q != pitch for j in range(1, BASS_COINCIDE_PARTIALS + 1)]
    return [k for k in range(1, 9) if all(abs(k * f0 - g) >= BASS_COINCIDE * f0 for g in theirs)]


class Detector:
    """The detector over one recording; spectrogram and per-pitch salience are cached."""

    def __init__(
        self, samples: np.ndarray, sample_rate: int, *, where: str = "audio",
        gain_db: float = REFERENCE_GAIN_DB, long_n: int = LONG_N, quick: bool = False,
    ) -> None:
        self.y = check_audio(samples, sample_rate, where)
        self.sr = sample_rate
        self.where = where
        # quick: the plan-known search without its step fits (the bass and upper retimes,
        # the complex rescue; the last two ~30 % of the live ear's cost on the loud piece,
        # bench/bench_ear_thread.py, sessions 22-23), for an ear that has fallen behind
        # its audio (live_audio.HURRY_S); the notes those fits would move or rescue are
        # heard as the search heard them, or not at all
        self.quick = quick
        self.gain = 10.0 ** (gain_db / 20.0)
        self.hop = int(round(HOP_S * sample_rate))
        self._spec: np.ndarray | None = None
        self._sal: dict[int, np.ndarray] = {}
        self._rise: dict[int, np.ndarray] = {}
        self.long_hop = int(round(LONG_HOP_S * sample_rate))
        self.long_n = long_n  # the long windows' length (samples): :attr:`frames`
        self._bass: Detector | None = None
        self._frames: np.ndarray | None = None
        self._noise: float | None = None
        self._templates: dict[int, np.ndarray] = {}
        # each joint second opinion asked (:meth:`_joint_second_opinion`): key, the
        # search's onset, the candidates, their residuals, whether one was taken; read by
        # the benches (why a note moved), bounded by the take's planned notes (two entries
        # for a note whose complex model was fitted again beside a contested neighbour)
        self.joint_log: list[tuple[int, float, list[float], np.ndarray, bool]] = []
        self.peak = float(np.abs(self.y).max())
        self.clipped = clipped_fraction(self.y)

    @property
    def bass(self) -> Detector:
        """This recording with long windows of BASS_LONG_N samples (twice as fine bins:
        a bass semitone's partials from the 3rd up are told apart), sharing this one's
        spectrogram and salience (the onsets are timed as here)."""
        if self._bass is None:
            b = Detector.__new__(Detector)
            b.__dict__.update(self.__dict__)
            b.long_n, b._frames, b._noise, b._templates, b._bass = BASS_LONG_N, None, None, {}, None
            _ = self.spec  # computed once, shared
            b._spec = self._spec
            self._bass = b
        return self._bass

    # ---- front end -------------------------------------------------------------------
    @property
    def spec(self) -> np.ndarray:
        """(frames, N_FFT/2+1) power; frame i is centred on sample i·hop."""
        if self._spec is None:
            pad = np.pad(self.y, (N_FFT // 2, N_FFT // 2))
            n = 1 + (len(pad) - N_FFT) // self.hop
            win = np.hanning(N_FFT)
            out = np.empty((n, N_FFT // 2 + 1), dtype=np.float32)
            for i0 in range(0, n, 512):  # blocks keep the frame matrix small
                i1 = min(n, i0 + 512)
                idx = (np.arange(i0, i1) * self.hop)[:, None] + np.arange(N_FFT)[None, :]
                out[i0:i1] = np.abs(np.fft.rfft(pad[idx] * win, axis=1)) ** 2
            self._spec = out
        return self._spec

    def partials(self, pitch: int) -> np.ndarray:
        """(frames, K) power at each partial of ``pitch`` (its bins' max)."""
        s = self._sal.get(pitch)
        if s is None:
            spec = self.spec
            cols = [spec[:, lo : hi + 1].max(axis=1).astype(np.float64) for lo, hi in self._partial_bins(pitch)]
            s = np.stack(cols, axis=1)
            self._sal[pitch] = s
        return s

    def salience(self, pitch: int, cols: Cols = None) -> np.ndarray:
        """(frames,) harmonic salience of ``pitch`` (power at its partials, summed; only
        the partials ``cols`` where given: :meth:`own_partials`)."""
        ps = self.partials(pitch)
        return (ps if cols is None else ps[:, list(cols)]).sum(axis=1)

    def own_partials(self, pitch: int, others: Sequence[int]) -> Cols:
        """The partials of ``pitch`` (column indices of :meth:`partials`) whose bins no
        partial of ``others`` (keys known to be struck nearby) reaches; None where every
        partial is its own, () where none is. A neighbour struck 15-40 ms later then
        does not move our midpoint (docs/hearing.md)."""
        k_n = self.partials(pitch).shape[1]
        bin_hz = self.sr / N_FFT
        f0 = f0_hz(pitch)
        own = []
        for k in range(1, k_n + 1):
            lo = (math.floor(k * f0 / bin_hz) - 1 - OWN_BINS) * bin_hz
            hi = (math.ceil(k * f0 * (1 + INHARMONIC * min(1.0, k / 8)) / bin_hz) + 1 + OWN_BINS) * bin_hz
            hit = False
            for q in others:
                if q == pitch:
                    continue
                fq = f0_hz(q)
                for j in range(1, 9):
                    if lo <= j * fq * (1 + INHARMONIC * min(1.0, j / 8)) and j * fq <= hi:
                        hit = True
            if not hit:
                own.append(k - 1)
        return None if len(own) == k_n else tuple(own)

    def risen_fraction(self, pitch: int, i: int) -> float:
        """Fraction of the pitch's partials whose power rose > 6 dB across frame ``i``
        (a neighbour's onset lifts one or two shared partials, the key's own all)."""
        ps = self.partials(pitch)
        lag = max(1, int(round(RISE_S / HOP_S / 2)))
        a = ps[min(len(ps) - 1, i + lag)]
        b = ps[max(0, i - lag)]
        fl = self.floor() / ps.shape[1]
        return float(np.mean(10.0 * np.log10((a + fl) / (b + fl)) > 6.0))

    def rise_db(self, pitch: int) -> np.ndarray:
        """(frames,) dB rise over RISE_S, centred on each frame, of the pitch's partials:
        the mean over the half of its partials that rose most (partials already loud
        from other keys do not hide the others' rise)."""
        got = self._rise.get(pitch)
        if got is None:
            lag = max(1, int(round(RISE_S / HOP_S / 2)))
            ps = self.partials(pitch)
            level = 10.0 * np.log10(ps + self.floor() / ps.shape[1])
            got = np.full(len(level), -np.inf)
            d = np.sort(level[2 * lag :] - level[: -2 * lag], axis=1)
            top = max(1, (d.shape[1] + 1) // 2)
            got[lag:-lag] = d[:, -top:].mean(axis=1)
            self._rise[pitch] = got
        return got

    def floor(self) -> float:
        """A power floor under which salience is noise (keeps log rises of noise small):
        a few times the noise of one bin (the median bin of the spectrogram: most bins
        hold no partial), per partial. Not a level of the music: a quiet note among
        ringing ones still rises above it."""
        if not hasattr(self, "_floor"):
            self._floor = float(np.median(self.spec)) * FLOOR_X * 8 + 1e-20
        return self._floor

    # ---- new amplitude: what appeared at a time, explained by harmonic templates --------
    @property
    def frames(self) -> np.ndarray:
        """(frames, bins) magnitude spectra (partial amplitude units) of windows of
        :attr:`long_n` samples starting at sample i·long_hop, bins up to F_MAX_HZ."""
        if self._frames is None:
            n, hop = self.long_n, self.long_hop
            nb = int(F_MAX_HZ / (self.sr / n)) + 1
            win = np.hanning(n)
            norm = float(win.sum()) / 2.0  # a sinusoid of amplitude a peaks at a
            pad = np.pad(self.y, (0, n))
            nfr = 1 + len(self.y) // hop
            out = np.empty((nfr, nb), dtype=np.float32)
            for i0 in range(0, nfr, 256):
                i1 = min(nfr, i0 + 256)
                idx = (np.arange(i0, i1) * hop)[:, None] + np.arange(n)[None, :]
                out[i0:i1] = np.abs(np.fft.rfft(pad[idx] * win, axis=1))[:, :nb] / norm
            self._frames = out
        return self._frames

    @property
    def noise_amp(self) -> float:
        """The noise's typical magnitude in one bin of :attr:`frames` (most bins of most
        frames hold no partial: their median is the noise)."""
        if self._noise is None:
            fr = self.frames
            self._noise = float(np.median(fr[:: max(1, len(fr) // 400)])) + 1e-12
        return self._noise

    def gained(self, i0: int, i1: int) -> np.ndarray:
        """(bins, i1 - i0) magnitude that appeared across each boundary t = i·long_hop
        (i in i0..i1): the window starting GAP_S after minus the one ending GAP_S before."""
        fr = self.frames
        g = max(1, int(round(GAP_S * self.sr / self.long_hop)))
        nn = self.long_n // self.long_hop
        i = np.arange(i0, i1)
        a = fr[np.clip(i + g, 0, len(fr) - 1)]
        b = np.where((i - g - nn >= 0)[:, None], fr[np.clip(i - g - nn, 0, len(fr) - 1)], 0.0)
        return np.maximum(a - b, 0.0).T.astype(np.float64)

    def template(self, pitch: int) -> np.ndarray:
        """(bins,) a struck ``pitch``'s magnitude spectrum in :attr:`frames`, peak 1:
        partials k·f0 (up to INHARMONIC above for the string's stretch), the level law's
        amplitudes at a middle velocity, Hann main lobes."""
        t = self._templates.get(pitch)
        if t is None:
            nb = self.frames.shape[1]
            bin_hz = self.sr / self.long_n
            fb = np.arange(nb) * bin_hz
            t = np.zeros(nb)
            amp = partial_amplitudes(64.0, np.arange(1, 9, dtype=np.float64))
            f0 = f0_hz(pitch)
            for k in range(1, 9):
                lo, hi = k * f0, k * f0 * (1.0 + STRETCH * k * k)
                if lo > min(F_MAX_HZ, 0.45 * self.sr):
                    break
                d = np.where(fb < lo, lo - fb, np.where(fb > hi, fb - hi, 0.0)) / bin_hz
                t = np.maximum(t, amp[k - 1] * np.where(d < 2.0, 0.5 + 0.5 * np.cos(np.pi * d / 2.0), 0.0))
            t /= t.max()
            self._templates[pitch] = t
        return t

    def new_amplitude(self, pitches: list[int], i0: int, i1: int, *, free_fundamental: bool = False) -> np.ndarray:
        """(len(pitches), i1 - i0) how much of each pitch appeared across boundaries
        i0..i1: the gained spectrum as a non-negative sum of the pitches' templates
        (multiplicative updates), so a related key's partials count for it, not for us.
        ``free_fundamental``: each rival (``pitches[1:]``) as two columns, its fundamental
        and its upper partials (:meth:`upper_template`), so a rival whose fundamental
        radiates weakly (a piano's bass) still explains its upper partials (the rows hold
        their upper partials' activations)."""
        if free_fundamental:
            uppers = [self.upper_template(p) for p in pitches[1:]]
            cols = [self.template(pitches[0]), *uppers,
                    *(self.template(p) - u for p, u in zip(pitches[1:], uppers, strict=True))]  # fmt: skip
        else:
            cols = [self.template(p) for p in pitches]
        w = np.stack(cols, axis=1)
        return _nnls(w, self.gained(i0, i1), self.noise_amp, NNLS_ITERS)[: len(pitches)]

    def upper_template(self, pitch: int) -> np.ndarray:
        """(bins,) :meth:`template` without its fundamental's lobe (the partials from the
        2nd up, the template's scale kept)."""
        t = self.template(pitch).copy()
        bin_hz = self.sr / self.long_n
        f0 = f0_hz(pitch)
        fb = np.arange(len(t)) * bin_hz
        t[fb < 1.5 * f0] = 0.0  # the fundamental's lobe (2 bins wide) ends below 1.5 f0 from A1 up
        return t

    # ---- key known ---------------------------------------------------------------------
    def find(
        self, pitch: int, t_lo_s: float, t_hi_s: float, *, alone: bool = False,
        others: Sequence[int] = (), min_risen: float = FIND_MIN_FRACTION, own: Sequence[int] = (),
        planned: bool = False, alts: list[tuple[float, float, float, float]] | None = None,
        ringing: Sequence[tuple[float, int]] = (), plan_s: float | None = None,
    ) -> Onset | None:
        """The onset of ``pitch`` in [t_lo_s, t_hi_s] (audio seconds), or None if the key
        did not sound there. ``alone``: nothing else is struck in the window (a sync
        pattern), so no owner test; ``others``: the keys known to be struck nearby (the
        take's other strikes, the plan's other notes), which the owner test weighs;
        ``min_risen``: the fraction of its partials that must have risen by 6 dB;
        ``own``: keys struck near the onset; the coarse onset (:meth:`_midpoint`) then
        comes from the partials none of them reaches (:meth:`own_partials`; the
        plan-known search); ``planned`` (the plan-known search): the coarse onset from
        the new power (:meth:`new_power`), and of the candidates the one whose new sound
        is most this key's (the largest :meth:`new_share`), not the first that is;
        ``alts`` (with ``planned``): every candidate that passed the owner test is
        appended to it as (share, coarse onset, its frame's time, rise dB); ``plan_s`` (with
        ``planned``): the plan's time of the strike, which breaks a near tie of shares
        (PLAN_TIE_X). ``ringing``:
        the strikes known to sound near (audio s, key: this key's earlier ones, the others'
        before the window and in it); where this key was struck in the RESTRIKE_S before
        the window and the search finds nothing, the step fit's (:meth:`restrike`)."""
        o = self._search(pitch, t_lo_s, t_hi_s, alone=alone, others=others, min_risen=min_risen, own=own,
                         planned=planned, alts=alts, plan_s=plan_s)
        if o is None and any(q == pitch and t_lo_s - RESTRIKE_S <= u < t_lo_s for u, q in ringing):
            o = self.restrike(pitch, t_lo_s, t_hi_s, ringing, others)
        return o

    def _search(
        self, pitch: int, t_lo_s: float, t_hi_s: float, *, alone: bool, others: Sequence[int], min_risen: float,
        own: Sequence[int], planned: bool, alts: list[tuple[float, float, float, float]] | None,
        plan_s: float | None = None,
    ) -> Onset | None:
        """:meth:`find`'s search of the salience's rises (its arguments but ``ringing``)."""
        cols = self.own_partials(pitch, own) if own else None
        r = self.rise_db(pitch)
        hop_s = self.hop / self.sr  # not HOP_S: at 44.1 kHz a hop is 88 samples, 1.9955 ms
        f0, f1 = max(0, int(t_lo_s / hop_s)), min(len(r), int(math.ceil(t_hi_s / hop_s)) + 1)
        if f1 <= f0:
            return None
        seg = r[f0:f1]
        # candidate frames: local maxima of the rise, strongest first; the first one
        # whose new sound is this key's (not a neighbour's, not an octave's)
        rise_db = PLANNED_RISE_DB if planned else FIND_RISE_DB
        ok = (seg >= rise_db) & (seg >= np.roll(seg, 1)) & (seg >= np.roll(seg, -1))
        cands = [f0 + int(j) for j in np.nonzero(ok)[0]]
        frac = {i: self.risen_fraction(pitch, i) for i in cands}
        best: tuple[float, float, float] | None = None  # share, coarse onset, rise
        passed: list[tuple[float, float, float]] = []  # ... every candidate that passed the owner test
        for i in sorted(cands, key=lambda i: (-round(2 * frac[i]) / 2, -r[i])):
            if frac[i] < min_risen:
                break
            t_mid = self._planned_midpoint(pitch, i, cols) if planned else self._midpoint(pitch, i, cols)
            share = math.inf if alone else self.new_share(pitch, t_mid, others, unplanned=planned)
            if share < MIN_NEW:
                continue
            if not planned:
                return self._refine(pitch, t_mid, float(r[i]), direct=True)
            # a neighbour struck 20-60 ms away also passes the owner test (its strike
            # lifts our shared partials); our own strike's new sound is more ours
            if alts is not None:
                alts.append((share, t_mid, i * hop_s, float(r[i])))
            passed.append((share, t_mid, float(r[i])))
            if best is None or share > best[0]:
                best = (share, t_mid, float(r[i]))
        if best is None:
            return None
        if plan_s is not None and PLAN_TIE_X is not None:
            best = self._plan_tie(best, passed, plan_s)
        return self._refine(pitch, best[1], best[2])

    @staticmethod
    def _plan_tie(best: _T, passed: Sequence[_T], plan_s: float, x: float | None = None) -> _T:
        """Among near-equal candidates, the one nearer the plan: of ``passed`` (each
        (score, onset, ...): the search's candidates that passed the owner test as (share,
        coarse onset, rise); a later stage's onsets the audio offers on its own score,
        larger better), the one nearest ``plan_s`` among those whose score is >= ``x``
        (PLAN_TIE_X where None) x ``best``'s (the stage's choice) and whose onset lies
        PLAN_TIE_NEARER_S or more nearer it than ``best``'s; else ``best`` (a neighbour's
        thump over a quiet background: PLAN_TIE_X, PLAN_TIE_STAGES)."""
        x = PLAN_TIE_X if x is None else x
        assert x is not None
        d_best = abs(best[1] - plan_s)
        near = [c for c in passed if c[0] >= x * best[0] and abs(c[1] - plan_s) <= d_best - PLAN_TIE_NEARER_S]
        return min(near, key=lambda c: abs(c[1] - plan_s)) if near else best

    @classmethod
    def _plan_keeps(cls, kept: tuple[float, float], moved: tuple[float, float], plan_s: float | None) -> bool:
        """Whether a later stage keeps the onset it was given (score, onset) against its move
        (score, onset; larger scores better): :meth:`_plan_tie` between the two at
        PLAN_TIE_MOVE_X, with the move the stage's choice (PLAN_TIE_STAGES; False where off
        or ``plan_s`` is None)."""
        if not PLAN_TIE_STAGES or PLAN_TIE_X is None or plan_s is None:
            return False
        return cls._plan_tie(moved, [kept], plan_s, PLAN_TIE_MOVE_X) is kept

    def restrike(self, pitch: int, t_lo_s: float, t_hi_s: float, ringing: Sequence[tuple[float, int]],
                 others: Sequence[int] = ()) -> Onset | None:
        """The onset of ``pitch`` struck in [t_lo_s, t_hi_s] while ``ringing`` (audio s,
        key: its own earlier strike among them) sounds: the step fit's
        (:func:`.stepfit.step_onset`, the step rising over ATTACK_S, the ringing bent,
        refined) in the partials no other key of ``ringing`` or ``others`` (keys struck
        near, their times not known) reaches (:meth:`own_partials`: a step in a shared
        partial may be that key's strike), where it removes >= RESTRIKE_MIN_FIT of the
        bands' residual and lies RESTRIKE_EDGE_S or more inside the window (at its start the
        step takes up the ringing's misfit, at either end a strike outside it); else None
        (not struck, or the fit cannot tell)."""
        own = self.own_partials(pitch, sorted({q for _, q in ringing} | set(others)))
        if own == ():
            return None
        fit = step_onset(self.y, self.sr, pitch, t_lo_s, t_hi_s, ringing, attack_s=ATTACK_S, bend=RESTRIKE_BEND,
                         fine=True, settled_s=RESTRIKE_SETTLED_S, partials=None if own is None else [k + 1 for k in own])
        if fit is None or fit[1] < RESTRIKE_MIN_FIT or not t_lo_s + RESTRIKE_EDGE_S <= fit[0] <= t_hi_s - RESTRIKE_EDGE_S:
            return None
        return replace(self._refine_energy(pitch, fit[0], 0.0), t_s=fit[0])  # (its loudness)

    def _planned_midpoint(self, pitch: int, i: int, cols: Cols) -> float:
        """The plan-known coarse onset of the candidate at frame ``i``: the earlier of the
        new power's and the salience's midpoints (neither is early, each is late where the
        other is not: a ringing partial in anti-phase, the salience's; a ringing
        neighbour's damper landing as we are struck, a legato step, the new power's,
        +10..+35 ms), and the median of the risen partials' own where earlier (not where
        all are shared: a neighbour's strike lifts them)."""
        t_mid = min(self._midpoint(pitch, i, cols, predicted=True), self._midpoint(pitch, i, cols))
        mids = self.partial_midpoints(pitch, i, cols) if cols != () else []
        if len(mids) >= VOTE_MIN:
            t_mid = min(t_mid, float(np.median(mids)))
        return t_mid

    def new_share(self, pitch: int, t_s: float, others: Sequence[int] = (), relative: float = 0.0,
                  unplanned: bool = False, *, free_fundamental: bool = False) -> float:
        """How much of ``pitch`` appeared around ``t_s`` (±12 ms), in noise units, once the
        keys that could also explain its partials have taken theirs: ``others`` and, from
        MIN_OWNER_PITCH up (where the long window resolves a semitone), the related keys
        and octaves. A related key struck louder at the same time no longer hides us.
        ``unplanned`` (``others`` are the plan's keys nearby): 0 where a related key not
        among them took over 1 / UNPLANNED_RELATIVE times our new sound (it was struck
        instead of us: a semitone's sound passed the test with our key not struck), and 0
        where ours is under PLANNED_MIN_NEW noise units and under PLANNED_CROWD x a
        planned related key's (CROWD_KIN: what that key's template leaves; a planned
        neighbour never struck), unless that key lies CROWD_UNDER below us and our partials
        it does not reach rose (:meth:`own_amplitude`: its template leaves nothing there)."""
        rivals = self._rivals(pitch, others)
        i = int(round(t_s * self.sr / self.long_hop))
        hs = self.new_amplitude(rivals, max(0, i - 3), i + 4, free_fundamental=free_fundamental)
        mine = float(hs[0].max())
        if mine < relative * float(hs.max()):
            return 0.0  # a rival took most of what appeared: its onset, not ours
        loose = [k for k, q in enumerate(rivals) if k > 0 and q not in others] if unplanned else []
        if loose and mine < UNPLANNED_RELATIVE * float(hs[loose].max()):
            return 0.0  # ... or an unplanned related key took nearly all of it
        if unplanned and mine < PLANNED_MIN_NEW * self.noise_amp:
            planned = [k for k, q in enumerate(rivals) if k > 0 and q in others and abs(q - pitch) in CROWD_KIN]
            crowd = [rivals[k] for k in planned if mine < PLANNED_CROWD * float(hs[k].max())]
            if crowd:
                own, peak = (0.0, 0.0)
                if pitch >= MIN_OWNER_PITCH and all(pitch - q in CROWD_UNDER for q in crowd):
                    own, peak = self.own_amplitude(pitch, rivals, crowd, max(0, i - 3), i + 4)
                if own < CROWD_OWN_X * mine or min(own, mine) * peak < CROWD_OWN_MIN * self.noise_amp:
                    return 0.0  # ... or a planned key's sound left that much over
        return mine / self.noise_amp

    def own_amplitude(self, pitch: int, rivals: Sequence[int], apart: Sequence[int], i0: int,
                      i1: int) -> tuple[float, float]:
        """How much of ``pitch`` (``rivals[0]``) appeared across boundaries i0..i1 by its
        partials alone that no partial of a key in ``apart`` reaches (main lobes apart,
        stretch included): :meth:`new_amplitude` with our template cut to those partials
        (the rivals keep theirs), its largest activation, and the cut template's peak (the
        largest own partial's share of the template's; (0, 0) where every partial is shared)."""
        bin_hz = self.sr / self.long_n
        nb = self.frames.shape[1]

        def lobes(q: int) -> list[tuple[float, float]]:
            f = f0_hz(q)
            return [(k * f - 2.0 * bin_hz, k * f * (1.0 + STRETCH * k * k) + 2.0 * bin_hz) for k in range(1, 9)]

        theirs = [lh for q in apart for lh in lobes(q)]
        w = self.template(pitch).copy()
        fb = np.arange(nb) * bin_hz
        for lo, hi in lobes(pitch):
            if any(lo < qhi and qlo < hi for qlo, qhi in theirs):
                w[(fb > lo) & (fb < hi)] = 0.0
        if not w.any():
            return 0.0, 0.0
        ws = np.stack([w, *(self.template(q) for q in rivals[1:])], axis=1)
        h = _nnls(ws, self.gained(i0, i1), self.noise_amp, NNLS_ITERS)
        return float(h[0].max()), float(w.max())

    def _rivals(self, pitch: int, others: Sequence[int]) -> list[int]:
        """The owner test's keys, ``pitch`` first: from MIN_OWNER_PITCH up its related
        keys and octaves, then ``others``."""
        rivals = [pitch]
        if pitch >= MIN_OWNER_PITCH:
            rivals += [pitch + d for d in (*RELATED, -12, 12) if LOWEST <= pitch + d <= HIGHEST]
        rivals += sorted({q for q in others if q not in rivals and LOWEST <= q <= HIGHEST})
        return rivals

    # ---- plan known: the score-informed second stage ----------------------------------
    def informed(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int],
                 own: Sequence[int] = (), rise_db: float = INFORMED_RISE_DB, plan_s: float | None = None) -> Onset | None:
        """The onset of planned ``pitch`` in [t_lo_s, t_hi_s] by a score-informed
        decomposition, or None: the long windows (:attr:`frames`) as a non-negative sum of
        the templates of ``pitch``, the keys ``sounding`` (the plan's, struck before and
        still ringing or struck in the window) and the unplanned keys related to
        ``pitch``. Heard where, at the boundary where its activation rose most (the
        window starting GAP_S after less the one ending GAP_S before; a ringing key's
        decay lowers it), it rose >= INFORMED_MIN_RISE noise units, >= INFORMED_LOOSE_X x
        the largest unplanned related key's rise, and its template explains >=
        INFORMED_EXPLAINED of the residual the others leave in its bins there (a key not
        struck, whose partials another's sound fills, explains little that the other's
        template does not). Timed at the largest local rise of its salience
        (:meth:`_informed_onset`), None where that rise is under ``rise_db``: the long
        windows cannot time it (the boundary of the largest rise lies -22..+76 ms from the
        sounded onset on every third note of random 1)."""
        if not self.informed_heard(pitch, t_lo_s, t_hi_s, sounding):
            return None
        got = self._informed_onset(pitch, t_lo_s, t_hi_s, own, rise_db, plan_s)
        o = None if got is None else self._refine(pitch, *got)
        if o is not None and t_lo_s <= o.t_s <= t_hi_s and not self._rose_early(pitch, t_lo_s, t_hi_s, sounding, o.t_s):
            return o
        if not INFORMED_NEAR or pitch < BASS_MAX_PITCH:
            return None if o is None or self._rose_early(pitch, t_lo_s, t_hi_s, sounding, o.t_s) else o
        near = self._informed_near(pitch, t_lo_s, t_hi_s, sounding, own)
        return None if near is None else self._refine(pitch, *near)

    def _informed_near(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int],
                       own: Sequence[int]) -> tuple[float, float] | None:
        """(coarse onset, rise dB) of ``pitch`` for :meth:`informed` where its salience's
        largest rise is another strike's: the largest local rise >= INFORMED_NEAR_DB whose
        planned midpoint lies in [t_lo_s, t_hi_s] and from INFORMED_AT_S before to
        INFORMED_EARLY of a long window after the boundary where the decomposition's
        activation rose most; None where none is."""
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding)
        if dec is None:
            return None
        rise = dec[5][0]
        hop_l = self.long_hop / self.sr
        tb = (max(0, int(t_lo_s / hop_l)) + int(np.argmax(rise))) * hop_l  # that boundary (s)
        lo, hi = max(t_lo_s, tb - INFORMED_AT_S), min(t_hi_s, tb + INFORMED_EARLY * self.long_n / self.sr)
        got = self._local_rises(pitch, t_lo_s, t_hi_s, INFORMED_NEAR_DB)
        if got is None:
            return None
        f0, seg, ok = got
        cols = self.own_partials(pitch, own) if own else None
        for j in sorted(np.nonzero(ok)[0], key=lambda j: -seg[j]):
            t_mid = self._planned_midpoint(pitch, f0 + int(j), cols)
            if lo <= t_mid <= hi:
                return t_mid, float(seg[j])
        return None

    def _rose_early(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int], t_s: float) -> bool:
        """Whether :meth:`informed`'s decomposition has ``pitch``'s activation rise most at
        a boundary more than INFORMED_EARLY of a long window before its onset ``t_s`` and
        rise under INFORMED_AT_X of that within INFORMED_AT_S of ``t_s``: the spread of a
        neighbour's strike in the middle of the window after, not our strike."""
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding)
        if dec is None:
            return False
        rise = dec[5][0]
        hop_s = self.long_hop / self.sr
        tb = (max(0, int(t_lo_s / hop_s)) + np.arange(len(rise))) * hop_s  # the boundaries (s)
        j = int(np.argmax(rise))
        if tb[j] >= t_s - INFORMED_EARLY * self.long_n / self.sr:
            return False
        at = np.abs(tb - t_s) <= INFORMED_AT_S
        return not at.any() or float(rise[at].max()) < INFORMED_AT_X * float(rise[j])

    def informed_heard(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int]) -> bool:
        """Whether :meth:`informed`'s decomposition hears planned ``pitch`` struck in
        [t_lo_s, t_hi_s] (its tests, not its timing)."""
        rise, loose_x, explained = self.informed_tests(pitch, t_lo_s, t_hi_s, sounding)
        return rise >= INFORMED_MIN_RISE and loose_x >= INFORMED_LOOSE_X and explained >= INFORMED_EXPLAINED

    def informed_tests(self, pitch: int, t_lo_s: float, t_hi_s: float,
                       sounding: Sequence[int]) -> tuple[float, float, float]:
        """:meth:`informed`'s figures for planned ``pitch`` in [t_lo_s, t_hi_s]: at the
        boundary where its activation rose most, that rise (noise units), the rise over the
        largest unplanned related key's (inf where none rose), and the fraction of the
        residual the other keys leave in its bins that its template explains."""
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding)
        if dec is None:
            return 0.0, 0.0, 0.0
        keys, loose, after, w, h_a, rise = dec
        j, mine, loose_x = self._rise_loose(dec)
        if mine < INFORMED_MIN_RISE or loose_x < INFORMED_LOOSE_X:
            return mine, loose_x, 0.0  # (the decomposition without us is not needed)
        x = after[:, j : j + 1]
        sup = w[:, 0] > 0.05  # our template's bins
        r_with = float(np.sum((x - w @ h_a[:, j : j + 1])[sup] ** 2))
        r_wo = float(np.sum((x - w[:, 1:] @ _nnls(w[:, 1:], x, self.noise_amp))[sup] ** 2))
        return mine, loose_x, (r_wo - r_with) / r_wo if r_wo > 0.0 else 0.0

    @staticmethod
    def _rise_loose(dec: tuple[list[int], list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple[int, float, float]:
        """Of :meth:`_decompose`'s result: (the boundary where the key's activation rose
        most, that rise, it over the largest unplanned related key's rise there (inf where
        none rose))."""
        keys, loose, _, _, _, rise = dec
        j = int(np.argmax(rise[0]))
        mine = float(rise[0, j])
        lo = [k for k, q in enumerate(keys) if q in loose]
        top = float(rise[lo, j].max()) if lo else 0.0
        return j, mine, mine / top if top > 0.0 else math.inf

    def _decompose(
        self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int], *, free_fundamental: bool = False,
        free_planned: bool = False,
    ) -> tuple[list[int], list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """:meth:`informed`'s decomposition over the boundaries in [t_lo_s, t_hi_s]: (keys,
        ``pitch`` first; the unplanned related keys among them; (bins, boundaries) the
        windows after; (bins, keys) the templates; (keys, boundaries) the activations
        after; (keys, boundaries) their rise in noise units), or None (no boundary). With
        ``free_fundamental`` (:meth:`bass_tests`) ``pitch``'s template is two columns, its
        upper partials first (:meth:`upper_template`) and its fundamental last (a row more
        in the activations and rises); with ``free_planned`` too, every planned key the same
        (their upper partials in their places, their fundamentals after ours)."""
        planned = sorted({q for q in sounding if q != pitch and LOWEST <= q <= HIGHEST})
        loose = [pitch + d for d in (*RELATED, -12, 12) if LOWEST <= pitch + d <= HIGHEST and pitch + d not in planned]
        keys = [pitch, *planned, *loose]
        hop_s = self.long_hop / self.sr
        g = max(1, int(round(GAP_S * self.sr / self.long_hop)))
        nn = self.long_n // self.long_hop
        fr = self.frames
        b = np.arange(max(0, int(t_lo_s / hop_s)), int(t_hi_s / hop_s) + 1)
        if not len(b):
            return None
        after = fr[np.clip(b + g, 0, len(fr) - 1)].T.astype(np.float64)  # (bins, boundaries)
        before = np.where((b - g - nn >= 0)[None, :], fr[np.clip(b - g - nn, 0, len(fr) - 1)].T, 0.0)
        if free_fundamental:
            ups = {q: self.upper_template(q) for q in ([pitch, *planned] if free_planned else [pitch])}
            w = np.stack([*(ups[q] if q in ups else self.template(q) for q in keys),
                          *(self.template(q) - u for q, u in ups.items())], axis=1)
        else:
            w = np.stack([self.template(q) for q in keys], axis=1)  # (bins, keys)
        h_a, h_b = _nnls(w, after, self.noise_amp), _nnls(w, before, self.noise_amp)
        return keys, loose, after, w, h_a, (h_a - h_b) / self.noise_amp

    def informed_rise(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int]) -> float:
        """The largest rise (noise units) of ``pitch``'s activation in :meth:`informed`'s
        decomposition over [t_lo_s, t_hi_s] (0 where there is no boundary)."""
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding)
        return 0.0 if dec is None else float(dec[5][0].max())

    def _informed_onset(self, pitch: int, t_lo_s: float, t_hi_s: float, own: Sequence[int],
                        rise_db: float = INFORMED_RISE_DB, plan_s: float | None = None) -> tuple[float, float] | None:
        """(coarse onset, rise dB) of ``pitch`` in [t_lo_s, t_hi_s] for :meth:`informed`: at
        the largest local maximum of its salience's rise (:meth:`rise_db`, >=
        INFORMED_RISE_DB) the plan-known midpoints (:meth:`_planned_midpoint`); or with
        ``plan_s`` (the note's plan time, PLAN_TIE_STAGES) of the local maxima the search
        would look at (>= ``rise_db`` and PLANNED_RISE_DB, TIGHT_MIN_FRACTION of the partials
        risen) the one :meth:`_plan_tie` takes against the largest on their new shares
        (:meth:`new_share`, ``own`` the rivals: a neighbour's thump rises most, and the shares
        of the two tie as in the search, or are both under MIN_NEW: the search found neither
        this key's); None where none is."""
        got = self._local_rises(pitch, t_lo_s, t_hi_s, INFORMED_RISE_DB)
        if got is None:
            return None
        f0, seg, ok = got
        if not ok.any() or float(seg[ok].max()) < rise_db:
            return None
        j = int(np.argmax(np.where(ok, seg, -np.inf)))
        cols = self.own_partials(pitch, own) if own else None
        best = (0.0, self._planned_midpoint(pitch, f0 + j, cols), float(seg[j]))
        if PLAN_TIE_STAGES and PLAN_TIE_X is not None and plan_s is not None:
            best = (self.new_share(pitch, best[1], own, unplanned=True), *best[1:])
            tied = []
            for i in np.nonzero(ok & (seg >= max(rise_db, PLANNED_RISE_DB)))[0]:
                if i == j or self.risen_fraction(pitch, f0 + int(i)) < TIGHT_MIN_FRACTION:
                    continue
                t_mid = self._planned_midpoint(pitch, f0 + int(i), cols)
                if abs(t_mid - plan_s) <= abs(best[1] - plan_s) - PLAN_TIE_NEARER_S:
                    share = self.new_share(pitch, t_mid, own, unplanned=True)
                    if share > PLAN_TIE_MIN_SHARE:
                        tied.append((share, t_mid, float(seg[i])))
            best = self._plan_tie(best, tied, plan_s)
        return best[1], best[2]

    def _local_rises(self, pitch: int, t_lo_s: float, t_hi_s: float,
                     min_db: float) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(first frame f0, :meth:`rise_db` of ``pitch`` over the frames of [t_lo_s, t_hi_s]
        from f0, where it is a local maximum >= ``min_db``); None where the span holds no
        frame."""
        r = self.rise_db(pitch)
        hop_s = self.hop / self.sr
        f0, f1 = max(1, int(t_lo_s / hop_s)), min(len(r) - 1, int(math.ceil(t_hi_s / hop_s)) + 1)
        if f1 <= f0:
            return None
        seg = r[f0:f1]
        return f0, seg, (seg >= min_db) & (seg >= r[f0 - 1 : f1 - 1]) & (seg >= r[f0 + 1 : f1 + 1])

    # ---- key unknown -------------------------------------------------------------------
    def detect(self, pitches: range = range(LOWEST, HIGHEST + 1), min_gap_s: float = 0.03) -> list[Onset]:
        """Every onset in the recording with its pitch, sorted by time: for each pitch,
        the frames where its partials rose (> BLIND_RISE_DB, BLIND_MIN_FRACTION of them),
        timed by the midpoint of the new power (:meth:`new_power`), where the new sound
        is this key's (:meth:`new_share` >= BLIND_MIN_NEW), refined like a known strike;
        onsets of one pitch closer than ``min_gap_s`` count once."""
        out: list[Onset] = []
        for p in pitches:
            r = self.rise_db(p)
            ok = np.zeros(len(r), dtype=bool)
            ok[1:-1] = (r[1:-1] >= BLIND_RISE_DB) & (r[1:-1] >= r[:-2]) & (r[1:-1] > r[2:])
            last = -np.inf
            for i in np.nonzero(ok)[0]:
                frac = self.risen_fraction(p, int(i))
                if frac < BLIND_MIN_FRACTION:
                    continue
                t_mid = self._midpoint(p, int(i), predicted=True)
                if t_mid - last < min_gap_s or (
                    self.new_share(p, t_mid, [p + d for d in KIN], BLIND_RELATIVE) < BLIND_MIN_NEW
                ):
                    continue
                est = self.fine_pitch(p, t_mid)
                if est is not None and abs(est - p) > FINE_PITCH_TOL:
                    continue  # the new sound at our partials is a neighbour's (a semitone off)
                o = replace(self._refine(p, t_mid, float(r[i])), risen=frac)
                if out and out[-1].pitch == p and o.t_s - out[-1].t_s < min_gap_s:
                    continue
                out.append(o)
                last = t_mid
        out.sort(key=lambda o: (o.t_s, o.pitch))
        return out

    def fine_pitch(self, pitch: int, t_s: float) -> float | None:
        """The fractional pitch of the sound that appeared at ``t_s`` (:meth:`gained`)
        near the first FINE_PARTIALS partials of ``pitch``, each within ±0.7 semitone:
        the peak bin's frequency, interpolated on a parabola through the log magnitudes
        (a tenth of a bin, where a semitone at A1 is 0.3 bin), as a pitch, the
        magnitude-weighted median over the partials heard (>= FINE_MIN_NOISE noise
        units); None where none is."""
        i = int(round(t_s * self.sr / self.long_hop))
        x = self.gained(i, i + 1)[:, 0]
        bin_hz = self.sr / self.long_n
        ests: list[float] = []
        weights: list[float] = []
        for k in range(1, FINE_PARTIALS + 1):
            fk = k * f0_hz(pitch)
            if fk > min(F_MAX_HZ, 0.45 * self.sr) - 3 * bin_hz:
                break
            lo = max(1, int(math.floor(fk * 2 ** (-0.7 / 12) / bin_hz)))
            hi = int(math.ceil(fk * 2 ** (0.7 / 12) / bin_hz))
            j = lo + int(np.argmax(x[lo : hi + 1]))
            a, b, c = float(x[j - 1]), float(x[j]), float(x[j + 1])
            if b < FINE_MIN_NOISE * self.noise_amp or b < a or b < c:
                continue
            la, lb, lc = math.log(a + 1e-12), math.log(b), math.log(c + 1e-12)
            den = la - 2.0 * lb + lc
            d = 0.5 * (la - lc) / den if den < 0 else 0.0
            ests.append(12.0 * math.log2((j + max(-0.5, min(0.5, d))) * bin_hz / fk))
            weights.append(b)
        if not ests:
            return None
        order = np.argsort(ests)
        e, w = np.array(ests)[order], np.array(weights)[order]
        return pitch + float(e[int(np.searchsorted(np.cumsum(w), 0.5 * w.sum()))])

    def detect_intended(
        self, intended: Sequence[tuple[float, int]], before_s: float, after_s: float,
        blind: Sequence[Onset] | None = None, *, informed: bool = True,
        context: Sequence[tuple[float, int]] = (),
    ) -> list[Onset]:
        """The onsets heard of a performance whose intended notes are known (``(audio s,
        pitch)``, e.g. a plan mapped to the audio clock): each intended note looked for as
        a known key in [t - before_s, t + after_s], the plan's other notes nearby weighed
        in its owner test; with ``informed``, where that search finds none the
        score-informed stage (:meth:`informed`), and where it finds one whose activation
        in that stage's decomposition does not rise (:meth:`informed_rise` <
        INFORMED_VETO_RISE) none; below BASS_MAX_PITCH the same stage on the longer windows
        of :attr:`bass` as a second rescue (:meth:`_bass_rescue`: where its salience does
        not time it, a step fit in its partials' bands), a second veto, and the judge of
        the first veto (:meth:`_vetoed`); and the key-unknown onsets (``blind``,
        :meth:`detect` if None) that no intended note explains and that stay this key's
        once the plan's notes nearby are weighed (a wrong note, a stray). Sorted by time;
        one onset per strike. ``context``: the plan's other strikes (audio s, key) that are
        not looked for but may sound in the audio (the live ear's window: the notes struck
        before it, still ringing, and those after it), weighed as the intended notes'
        neighbours are: the owner test's rivals, the keys sounding, the step fits' strikes."""
        if blind is None:
            blind = self.detect()
        order = sorted(range(len(intended)), key=lambda k: intended[k][0])
        # every strike the plan says may sound, in time (the intended notes in ``order``)
        plan = sorted([*(intended[k] for k in order), *context], key=lambda x: x[0])
        # the same for the rules that index the notes looked for (their neighbours, the
        # ear's context among them: a key struck before the ear's window is struck again)
        planned = [*intended, *context]
        times = [t for t, _ in plan]
        near_s = before_s + after_s + OTHERS_S

        def near(t: float) -> list[int]:
            lo, hi = bisect.bisect_left(times, t - near_s), bisect.bisect_right(times, t + near_s)
            return [plan[k][1] for k in range(lo, hi)]

        def sounding(t: float) -> list[int]:
            lo = bisect.bisect_left(times, t - INFORMED_RING_S)
            hi = bisect.bisect_right(times, t + after_s)
            return [plan[k][1] for k in range(lo, hi)]

        def strikes(t: float) -> list[tuple[float, int]]:
            lo = bisect.bisect_left(times, t - INFORMED_RING_S)
            hi = bisect.bisect_right(times, t + after_s + STEP_POST_S)
            return plan[lo:hi]

        def near_own(t: float, p: int) -> list[int]:
            lo = bisect.bisect_left(times, t - before_s)
            hi = bisect.bisect_right(times, t + after_s)
            return sorted({plan[k][1] for k in range(lo, hi)} - {p})

        out: list[Onset] = []
        taken: dict[int, list[float]] = {}
        # the plan says this key was struck here: a soft note whose fundamental alone
        # rose is taken (TIGHT_MIN_FRACTION), the owner test still decides (random
        # pieces, seeds 1-3: recall +0.5..+3.6 points, precision unchanged)
        alts: dict[int, list[tuple[float, float, float, float]]] = {k: [] for k in order}
        found = {k: self.find(intended[k][1], intended[k][0] - before_s, intended[k][0] + after_s,
                              others=[q for q in near(intended[k][0]) if q != intended[k][1]],
                              min_risen=TIGHT_MIN_FRACTION, own=near_own(intended[k][0], intended[k][1]),
                              planned=True, alts=alts[k], plan_s=intended[k][0]) for k in order}
        for k in order:
            t, p = intended[k]
            o = found[k]
            if o is not None and JOINT:
                o = self._joint_second_opinion(k, o, planned, found, alts[k], before_s, after_s)
            rescued = False
            searched = o is not None  # (the informed stage's onsets: the upper retime checks each)
            by_informed = False  # (the informed stage gave it: the upper retime's UPPER_RETIME_INFORMED_BEST)
            # the plan's other strikes that may sound in this note's window (the step fits')
            struck = [x for x in strikes(t) if x != (t, p)] if informed else []
            if o is None and informed:
                o = self.informed(p, t - before_s, t + after_s, sounding(t), near_own(t, p), plan_s=t)
                by_informed = o is not None
                if o is None and p < BASS_MAX_PITCH:
                    o = self._bass_rescue(p, t - before_s, t + after_s, sounding(t), near_own(t, p), struck, t)
                    rescued = o is not None and BASS_RETIME_RESCUED
                elif o is None and COMPLEX_RESCUE:
                    o = self._complex_rescue(k, planned, found, before_s, after_s)
            elif o is not None and informed and self._vetoed(p, t - before_s, t + after_s, sounding(t), o, struck, t):
                o = None
            if (o is not None and informed and p < BASS_MAX_PITCH and BASS_RETIME
                    and (o.rise_db < BASS_RETIME_MAX_RISE_DB or rescued)):
                o = self._bass_retime(o, t - before_s, t + after_s, struck, t)
            if (o is not None and BASS_HEARD_PLAN_S is not None and not searched and p < BASS_MAX_PITCH
                    and o.velocity <= 0.0 and abs(o.t_s - t) > BASS_HEARD_PLAN_S):
                o = None  # no attack where the informed stage or a rescue timed it, off the plan's time
            if (o is not None and informed and p >= BASS_MAX_PITCH and UPPER_RETIME
                    and (o.rise_db < UPPER_RETIME_MAX_RISE_DB or not searched)):
                o = self._upper_retime(o, t - before_s, t + after_s, struck, informed=by_informed, plan_s=t)
            if o is None or any(abs(o.t_s - u) < MIN_GAP_S for u in taken.get(p, [])):
                continue  # not heard, or one strike already given to a note of this key
            taken.setdefault(p, []).append(o.t_s)
            out.append(o)
        for o in blind:
            if o.risen < STRAY_MIN_FRACTION:
                continue  # a stray is what the plan does not explain: only the clear ones
            if STRAY_HEARD and o.velocity <= 0.0:
                continue  # ... and a strike: an attack
            if any(abs(o.t_s - u) < before_s + after_s for u in taken.get(o.pitch, [])):
                continue
            if o.pitch < MIN_OWNER_PITCH and any(
                abs(o.t_s - u) < MIN_GAP_S for q in (o.pitch - 1, o.pitch + 1) for u in taken.get(q, [])
            ):
                # below MIN_OWNER_PITCH a semitone is under a bin of the long window: the
                # sound of a planned key heard a semitone away at the same time cannot be
                # told from a second key's (a bass cluster's unplanned key goes unreported)
                continue
            est = self.fine_pitch(o.pitch, o.t_s)
            if est is not None and abs(est - o.pitch) > STRAY_PITCH_TOL:
                continue
            others = [q for q in near(o.t_s) if q != o.pitch]
            # the plan's keys nearby weigh in as the blind pass's rivals do: a stray must
            # keep BLIND_RELATIVE of the largest one's new sound (a loud planned note's
            # 5th partial was kept as a stray 28 semitones up with 3 % of it)
            if not others or self.new_share(
                o.pitch, o.t_s, [*others, *(o.pitch + d for d in KIN)], BLIND_RELATIVE,
                free_fundamental=STRAY_FREE_FUNDAMENTAL,
            ) >= MIN_NEW:
                out.append(o)
        out.sort(key=lambda o: (o.t_s, o.pitch))
        return out

    def _joint_second_opinion(self, k: int, o: Onset, intended: Sequence[tuple[float, int]],
                              found: dict[int, Onset | None], alts: list[tuple[float, float, float, float]],
                              before_s: float, after_s: float) -> Onset:
        """The search's onset ``o`` of intended note ``k``, or, where a planned key whose
        partials meet ours is struck within JOINT_NEAR_S and the search is in doubt, the
        onset the joint timing (:func:`joint.residuals`: the keys planned around ours,
        each at the search's onset, ours moved) fits best. In doubt: another candidate
        that passed the owner test refines (from its midpoint or its frame) more than
        JOINT_AGREE_S away (the shares of candidates 10-30 ms apart tie on the 85 ms
        windows; a candidate's midpoints late on a shared partial's top), or ours lies
        within JOINT_COINCIDE_S of a planned neighbour's onset that the plan has
        >= JOINT_ROLL_S away (a rolled chord's soft key timed on a loud key's rise: its
        side of that onset searched on a grid). Taken only where the model explains the
        stretch and gains (the constants' block)."""
        t, p = intended[k]
        lo, hi = t - before_s - joint.JOINT_PRE_S, t + after_s + joint.JOINT_POST_S
        near = [j for j, (u, q) in enumerate(intended) if j != k and lo <= u <= hi and q != p
                and self.own_partials(p, [q]) is not None]
        close = any(abs(intended[j][0] - t) <= JOINT_NEAR_S for j in near)
        if not close and not JOINT_LONE:
            return o
        # our key planned shortly before may still ring: two sounds at one frequency do
        # not add in magnitude, and the fit then likes a later onset (a held chord's key
        # re-struck: bwv66.6's D4 +4 -> +43 ms); there only an earlier onset is taken
        restrike = any(q == p and 0.0 < t - u <= JOINT_RESTRIKE_S for u, q in intended)
        times: list[float] = []
        for _share, t_mid, t_frame, _rise in alts:
            times += [tc for tc in (t_mid, t_frame)
                      if abs(tc - o.t_s) > JOINT_AGREE_S and t - before_s <= tc <= t + after_s]
        for j in near if close else []:
            f = found.get(j)
            if f is None or abs(f.t_s - o.t_s) > JOINT_COINCIDE_S or abs(intended[j][0] - t) < JOINT_ROLL_S:
                continue
            side = 1.0 if intended[j][0] < t else -1.0  # ours lies after the earlier-planned key's strike
            times += [o.t_s + side * d for d in np.arange(JOINT_AGREE_S, JOINT_REACH_S + 1e-9, joint.JOINT_GRID_S)]
        if not times or (not close and p < JOINT_BAND_MIN_PITCH):
            return o
        if p >= JOINT_BAND_MIN_PITCH and (JOINT_COMPLEX or not close):
            return self._joint_complex(k, o, intended, found, before_s, after_s)
        near = sorted(near, key=lambda j: abs(intended[j][0] - t))[: JOINT_MAX_KEYS - 1]  # the cost: (keys x 8 x 2)² normal equations
        keys = [k, *near]
        starts = [o.t_s, *((f.t_s if (f := found.get(j)) is not None else intended[j][0]) for j in near)]
        hop_s = self.long_hop / self.sr
        freqs = [joint.partial_freqs(self.frames, self.sr / self.long_n, intended[j][1], s, hop_s)
                 for j, s in zip(keys, starts, strict=True)]
        # our partials that another key's meet (within JOINT_SAME_BINS) have no column of
        # ours: two columns in one bin fit a rise's shape better at any two times (a
        # chord's octave moved ours 10-40 ms late), and that partial cannot tell whose it is
        theirs = np.concatenate(freqs[1:]) if len(freqs) > 1 else np.zeros(0)
        bin_hz = self.sr / joint.JOINT_N
        mine = [f for f in freqs[0] if not len(theirs) or np.min(np.abs(theirs - f)) > JOINT_SAME_BINS * bin_hz]
        if not mine:
            return o
        freqs[0] = np.array(mine)
        # each candidate (a coarse onset, a few ms off its strike) at its best within
        # +-JOINT_LOCAL_S; the search's own onset as it is
        local = np.arange(-JOINT_LOCAL_S, JOINT_LOCAL_S + 1e-9, joint.JOINT_GRID_S)
        cand = sorted({round(tc + d, 4) for tc in times for d in local} - {round(o.t_s, 4)})
        cand = [o.t_s, *cand]
        res = joint.residuals(self.y, self.sr, starts, freqs, cand, min(cand), max(cand))
        best = int(np.argmin(res))
        if best > 0 and self._plan_keeps(_fit(res, cand, 0), _fit(res, cand, best), t):
            best = 0  # (PLAN_TIE_STAGES: the search's onset, nearer the plan, fits near as well)
        ok = (best > 0 and res[0] - res[best] >= JOINT_MIN_GAIN and res[best] <= JOINT_MAX_RESIDUAL
              and not (restrike and cand[best] > o.t_s) and self._joint_rose(o, cand[best]))
        self.joint_log.append((p, o.t_s, cand, res, ok))
        if not ok:
            return o
        return self._joint_moved(o, cand[best])

    def _joint_rose(self, o: Onset, t_best: float) -> bool:
        """Whether our key rose at ``t_best`` (its :meth:`rise_db` highest within
        JOINT_LOCAL_S of it) >= JOINT_MAG_RISE_X of the search's onset ``o``'s: a strike, not
        the crest of a beat between our partials and a key's struck with us (the magnitude
        model's moves; True without the gate)."""
        if JOINT_MAG_RISE_X is None:
            return True
        r = self.rise_db(o.pitch)
        hop_s = self.hop / self.sr
        i = int(round(t_best / hop_s))
        w = int(round(JOINT_LOCAL_S / hop_s))
        seg = r[max(0, i - w) : i + w + 1]
        return bool(len(seg)) and float(seg.max()) >= JOINT_MAG_RISE_X * o.rise_db

    def _joint_moved(self, o: Onset, t_best: float) -> Onset:
        """The joint timing's onset at ``t_best`` in place of the search's ``o``: refined by
        the energy fit where that stays within JOINT_KEEP_S of it; ``o`` as it was where the
        move reads no attack there (JOINT_HEARD) and ``o`` read one."""
        r = self._refine(o.pitch, t_best, o.rise_db)
        if JOINT_HEARD and r.velocity <= 0.0 < o.velocity:
            return o
        return r if abs(r.t_s - t_best) <= JOINT_KEEP_S else replace(r, t_s=t_best)

    def _joint_complex(self, k: int, o: Onset, intended: Sequence[tuple[float, int]],
                       found: dict[int, Onset | None], before_s: float, after_s: float) -> Onset:
        """The second opinion on the search's onset ``o`` of intended note ``k`` by the
        complex model of our partials' bands (:func:`bands.band_residuals`): ours at the
        search's onset and at each JOINT_BAND_STEP_S of the search window; every key planned
        in the INFORMED_RING_S before or in the stretch (at the search's onset where it
        found one, else the plan's time) a phasor of its
        partials near ours (ours too: a re-strike). Taken where it gains >=
        JOINT_BAND_MIN_GAIN and leaves <= JOINT_BAND_MAX_RESIDUAL of what the others leave;
        with a contested neighbour (:meth:`_contested`) only where the fit with it at its
        plan's distance from our onset asks a move too (a veto: the move taken is the first's)."""
        t, p = intended[k]
        hop_s = self.long_hop / self.sr
        bin_hz = self.sr / self.long_n
        grid = np.arange(t - before_s, t + after_s + 1e-9, JOINT_BAND_STEP_S)
        cand = [o.t_s, *(float(c) for c in grid if abs(c - o.t_s) > 0.5 * JOINT_BAND_STEP_S)]
        t_hi = max(cand) + bands.BAND_POST_S
        others: list[bands.Strike] = []
        placed: list[bands.Strike] = []  # the same, a contested neighbour at its plan's distance from us
        contested = False
        for j, (u, q) in enumerate(intended):
            if j == k or not t - INFORMED_RING_S <= u <= t_hi or (q == p and abs(u - t) < MIN_GAP_S):
                continue
            if not joint.may_meet(p, q, bands.BAND_SPAN):
                continue  # none of its partials in our bands (their measuring the cost)
            f = found.get(j)
            on = f.t_s if f is not None else u
            others.append(bands.Strike(joint.partial_freqs(self.frames, bin_hz, q, on, hop_s), on))
            if JOINT_CONTESTED and self._contested(f, u, o, t):
                on = u + (o.t_s - t)  # that rise may be ours: it at its plan's distance from our onset
                contested = True
                placed.append(bands.Strike(joint.partial_freqs(self.frames, bin_hz, q, on, hop_s), on))
            else:
                placed.append(others[-1])
        mine = joint.partial_freqs(self.frames, bin_hz, p, o.t_s, hop_s)
        moves: list[float] = []  # (the search's placement's first: its move is the one taken)
        for strikes in (others, placed) if contested else (others,):
            res = bands.band_residuals(self.y, self.sr, p, mine, cand, strikes)
            best = int(np.argmin(res))
            if best > 0 and self._plan_keeps(_fit(res, cand, 0), _fit(res, cand, best), t):
                best = 0  # (PLAN_TIE_STAGES, as above)
            ok = best > 0 and res[0] - res[best] >= JOINT_BAND_MIN_GAIN and res[best] <= JOINT_BAND_MAX_RESIDUAL
            self.joint_log.append((p, o.t_s, cand, res, ok))
            if not ok:
                return o  # (with a neighbour contested: a move only where both placements ask one)
            moves.append(cand[best])
        return self._joint_moved(o, moves[0])

    @staticmethod
    def _contested(f: Onset | None, u: float, o: Onset, t: float) -> bool:
        """Whether a neighbour's search onset ``f`` (planned at ``u``) was taken on our
        key's rise (JOINT_CONTESTED): it lies within JOINT_COINCIDE_S of our search onset
        ``o`` (planned at ``t``), the plan has the two >= JOINT_ROLL_S apart, and ours lies
        nearer its plan time than the neighbour's does to its own (by JOINT_CONTESTED_S or
        more). One rise is not two strikes the plan spaces apart; the plan says whose it
        more likely is. The complex model then moves our onset only where it asks a move
        with the neighbour at its search onset and at its plan's distance from ours too."""
        if f is None or abs(f.t_s - o.t_s) > JOINT_COINCIDE_S or abs(u - t) < JOINT_ROLL_S:
            return False
        return abs(f.t_s - u) - abs(o.t_s - t) >= JOINT_CONTESTED_S

    def _complex_rescue(self, k: int, intended: Sequence[tuple[float, int]], found: dict[int, Onset | None],
                        before_s: float, after_s: float) -> Onset | None:
        """Intended note ``k`` (from BASS_MAX_PITCH up) that neither the search nor the
        informed stage heard, heard where :meth:`complex_step`'s best step removes >=
        COMPLEX_MIN_GAIN of what the phasors leave, lies COMPLEX_EDGE_S or more inside the
        window (at either end a strike outside it) and within COMPLEX_PLAN_S of the note's
        plan time, not within COMPLEX_APART_S of another planned strike whose partials meet
        ours (:meth:`_struck_near`) unless it removes >= COMPLEX_NEAR_GAIN, and where no
        unplanned related key took more of what appeared (:meth:`_unplanned_took`) unless,
        with COMPLEX_RECHECK, the step stays without the partials of the one that took most
        (:meth:`_step_without`), timed there; a key struck again while it rings
        (:meth:`_struck_again`) needs only COMPLEX_AGAIN_GAIN, beside related strikes too,
        and so without those partials; else None (and None in a :attr:`quick` detector).
        Where the step in the partials that no key planned in the window reaches is not
        taken, the same with only the keys planned within COMPLEX_CUT_S of the plan time
        cut (:meth:`complex_step`'s ``cut_s``)."""
        if self.quick:
            return None
        o = self._complex_rescue_cut(k, intended, found, before_s, after_s, None)
        if o is None and COMPLEX_CUT_S is not None:
            o = self._complex_rescue_cut(k, intended, found, before_s, after_s, COMPLEX_CUT_S)
        return o

    def _complex_rescue_cut(self, k: int, intended: Sequence[tuple[float, int]], found: dict[int, Onset | None],
                            before_s: float, after_s: float, cut_s: float | None) -> Onset | None:
        """:meth:`_complex_rescue` with the step's partials cut by the keys planned within
        ``cut_s`` of the note's plan time (None: in its search window; :meth:`complex_step`)."""
        t, p = intended[k]
        got = self.complex_step(k, intended, found, before_s, after_s, cut_s=cut_s)
        if got is None:
            return None
        gain, tb = got
        if not t - before_s + COMPLEX_EDGE_S <= tb <= t + after_s - COMPLEX_EDGE_S or abs(tb - t) > COMPLEX_PLAN_S:
            return None
        r = self.rise_db(p)
        i = min(len(r) - 1, max(0, int(round(tb * self.sr / self.hop))))
        again = COMPLEX_AGAIN and self._struck_again(k, intended, gain, tb, r, i)
        if not again and (gain < COMPLEX_MIN_GAIN
                          or (gain < COMPLEX_NEAR_GAIN and self._struck_near(k, intended, found, tb))):
            return None
        took = self._unplanned_took(k, intended, before_s, after_s, tb)
        recheck = again or COMPLEX_RECHECK
        floor = COMPLEX_AGAIN_GAIN if again else COMPLEX_MIN_GAIN
        if took and not (recheck and self._step_without(k, intended, found, before_s, after_s, took[:1], tb, floor,
                                                        cut_s)):
            return None
        return replace(self._refine_energy(p, tb, float(r[i])), t_s=tb)

    def _struck_again(self, k: int, intended: Sequence[tuple[float, int]], gain: float, tb: float,
                      rise: np.ndarray, i: int) -> bool:
        """Whether intended note ``k``'s best step (removing ``gain``, at audio ``tb``,
        frame ``i`` of its key's salience rise ``rise``) is a re-strike of its key while it
        rings (COMPLEX_AGAIN): the plan struck the key within COMPLEX_AGAIN_S before, the
        step removes >= COMPLEX_AGAIN_GAIN and lies within COMPLEX_AGAIN_PLAN_S of the
        note's plan time, and the key's salience rose < COMPLEX_AGAIN_MAX_RISE_DB there."""
        t, p = intended[k]
        if gain < COMPLEX_AGAIN_GAIN or abs(tb - t) > COMPLEX_AGAIN_PLAN_S:
            return False
        if not any(q == p and t - COMPLEX_AGAIN_S <= u < t - MIN_GAP_S for u, q in intended):
            return False
        reach = int(round(COMPLEX_AGAIN_RISE_REACH_S * self.sr / self.hop))
        return float(np.max(rise[max(0, i - reach):i + reach + 1])) < COMPLEX_AGAIN_MAX_RISE_DB

    def _step_without(self, k: int, intended: Sequence[tuple[float, int]], found: dict[int, Onset | None],
                      before_s: float, after_s: float, keys: Sequence[int], t_s: float,
                      floor: float, cut_s: float | None = None) -> bool:
        """Whether intended note ``k``'s step stays where :meth:`complex_step` put it
        (within COMPLEX_RECHECK_S of ``t_s``) and removes >= ``floor`` (COMPLEX_MIN_GAIN;
        COMPLEX_AGAIN_GAIN for a key struck again, :meth:`_struck_again`) when its
        partials that ``keys`` (unplanned related keys that took more of what appeared in
        magnitudes, :meth:`_unplanned_took`) reach are left out too: what took the magnitude
        then was our own re-strike's sound at partials it shares with them (a key re-struck
        while it rings adds little magnitude, and its octave or twelfth above, never
        struck, takes it), not a key struck instead of ours (that one's step lies only in
        the partials it reaches)."""
        got = self.complex_step(k, intended, found, before_s, after_s, also=keys, cut_s=cut_s)
        return got is not None and got[0] >= floor and abs(got[1] - t_s) <= COMPLEX_RECHECK_S

    def complex_step(self, k: int, intended: Sequence[tuple[float, int]], found: dict[int, Onset | None],
                     before_s: float, after_s: float, also: Sequence[int] = (),
                     cut_s: float | None = None) -> tuple[float, float] | None:
        """(gain, audio s) of the best step of intended note ``k`` in its window by the band
        model of its partials (:func:`bands.band_residuals`, the complex second opinion's
        model): every key planned in the INFORMED_RING_S before its window or in the stretch
        (ours too: a re-strike of a ringing key) a phasor of its partials near ours, at the
        search's onset where it found one (``found``), else the plan's time; ours a step at
        each COMPLEX_STEP_S of the window, in the partials that no other key planned in the
        window reaches (:meth:`own_partials`: a step there may be that key's own strike
        the phasor's attack misfits; a key an octave under a struck one, never played, has
        every partial there; with ``cut_s`` only the keys planned, or found, within it of
        our plan time: one struck farther off strikes farther than COMPLEX_PLAN_S from any
        step the rescue takes, and is a phasor in our bands like any other). The gain: the fraction of what the phasors leave that the
        step removes. None where every partial is shared. ``also``: keys whose partials
        are left out too, as the planned keys' are."""
        t, p = intended[k]
        if cut_s is None:
            near_ = {q for u, q in intended if t - before_s <= u <= t + after_s and q != p}
        else:
            near_ = {q for j, (u, q) in enumerate(intended) if q != p and t - before_s <= u <= t + after_s and (
                abs(u - t) <= cut_s or ((f := found.get(j)) is not None and abs(f.t_s - t) <= cut_s))}
        near = sorted(near_ | set(also))
        cols = self.own_partials(p, near) if near else None
        if cols == ():
            return None
        hop_s = self.long_hop / self.sr
        bin_hz = self.sr / self.long_n
        grid = np.arange(t - before_s, t + after_s + 1e-9, COMPLEX_STEP_S)
        t_hi = t + after_s + bands.BAND_POST_S
        others: list[bands.Strike] = []
        for j, (u, q) in enumerate(intended):
            if j == k or not t - INFORMED_RING_S <= u <= t_hi or (q == p and abs(u - t) < MIN_GAP_S):
                continue
            if not joint.may_meet(p, q, bands.BAND_SPAN):
                continue
            f = found.get(j)
            on = f.t_s if f is not None else u
            others.append(bands.Strike(joint.partial_freqs(self.frames, bin_hz, q, on, hop_s), on))
        mine = joint.partial_freqs(self.frames, bin_hz, p, t, hop_s)
        if cols is not None:
            mine = mine[[c for c in cols if c < len(mine)]]
        # ... nor any partial of theirs above the 8th (own_partials reads 8: a planned C7 a
        # twelfth over a struck F5 kept its 3rd partial, the F5's 9th; rich random 5's fake)
        theirs = [j * f0_hz(q) for q in near for j in range(9, COMPLEX_HIGH_PARTIAL + 1)]
        mine = np.array([f for f in mine if all(abs(f - g) > 2.0 * bin_hz + INHARMONIC * f for g in theirs)])
        if not len(mine):
            return None
        res = bands.band_residuals(self.y, self.sr, p, mine, list(grid), others)
        best = int(np.argmin(res))
        return 1.0 - float(res[best]), float(grid[best])

    def _unplanned_took(self, k: int, intended: Sequence[tuple[float, int]], before_s: float, after_s: float,
                        t_s: float) -> list[int]:
        """The related keys the plan does not have near intended note ``k`` that, around
        ``t_s``, took >= MIN_NEW noise units of what appeared and more than ``k``'s key
        (:meth:`new_amplitude` over the owner test's rivals); empty where none did. Such a
        key may be struck instead of the planned one (the band model has no phasor for it;
        its sound in our bands is a step)."""
        t, p = intended[k]
        others = [q for u, q in intended if abs(u - t) <= before_s + after_s + OTHERS_S and q != p]
        rivals = self._rivals(p, others)
        loose = [j for j, q in enumerate(rivals) if j > 0 and q not in others]
        if not loose:
            return []
        i = int(round(t_s * self.sr / self.long_hop))
        hs = self.new_amplitude(rivals, max(0, i - 3), i + 4).max(axis=1)
        took = [j for j in loose if hs[j] >= MIN_NEW * self.noise_amp and hs[j] > hs[0]]
        return [rivals[j] for j in sorted(took, key=lambda j: -hs[j])]

    def _struck_near(self, k: int, intended: Sequence[tuple[float, int]], found: dict[int, Onset | None],
                     t_s: float) -> bool:
        """Whether a planned key other than intended note ``k``'s, whose partials meet its
        own, is struck within COMPLEX_APART_S of ``t_s`` (at the search's onset where it
        found one, else the plan's time)."""
        p = intended[k][1]
        for j, (u, q) in enumerate(intended):
            if j == k or q == p or abs(u - t_s) > COMPLEX_APART_S + OTHERS_S:
                continue
            f = found.get(j)
            if abs((f.t_s if f is not None else u) - t_s) <= COMPLEX_APART_S and joint.may_meet(p, q, bands.BAND_SPAN):
                return True
        return False

    def _bass_rescue(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int],
                     own: Sequence[int], strikes: Sequence[tuple[float, int]],
                     plan_s: float | None = None) -> Onset | None:
        """The second rescue below BASS_MAX_PITCH: where the informed stage on the
        8192-sample windows (:attr:`bass`) hears planned ``pitch`` in [t_lo_s, t_hi_s]
        (its tests), timed at its salience's largest rise where that is >= BASS_RISE_DB, else
        (STEP_FIT) by the step fit in its partials' bands (:func:`.stepfit.step_onset`,
        ``strikes``: the plan's other strikes (audio s, key) that may sound there); not
        where its activation there rose most well before that onset (:meth:`_rose_early`).
        Where it does not hear it, :meth:`_step_rescue` (``plan_s``: the planned time);
        a key alone in the plan (:meth:`_lone`) is also heard on the free fundamental's
        figures (:meth:`_free_heard`, BASS_LONE_S)."""
        b = self.bass
        if not b.informed_heard(pitch, t_lo_s, t_hi_s, sounding) and not (
                self._lone(strikes, plan_s) and b._free_heard(pitch, t_lo_s, t_hi_s, sounding)):
            return self._step_rescue(pitch, t_lo_s, t_hi_s, strikes, plan_s)
        got = b._informed_onset(pitch, t_lo_s, t_hi_s, own, BASS_RISE_DB, plan_s)
        if got is not None:
            o = b._refine(pitch, *got)
        elif not STEP_FIT:
            return self._step_rescue(pitch, t_lo_s, t_hi_s, strikes, plan_s)
        else:
            fit = step_onset(self.y, self.sr, pitch, t_lo_s, t_hi_s, strikes)
            if fit is None:
                return None
            o = replace(self._refine_energy(pitch, fit[0], 0.0), t_s=fit[0])  # (its loudness)
        # a neighbour's strike in the middle of the (8192-sample) window after, as above
        if b._rose_early(pitch, t_lo_s, t_hi_s, sounding, o.t_s):
            return self._step_rescue(pitch, t_lo_s, t_hi_s, strikes, plan_s)
        return o

    @staticmethod
    def _lone(strikes: Sequence[tuple[float, int]], plan_s: float | None) -> bool:
        """(BASS_LONE_S) Whether a note planned at ``plan_s`` is alone in the plan: none of
        ``strikes`` (the plan's other strikes) lies within BASS_LONE_S of it (None: not known)."""
        return BASS_LONE_S is not None and plan_s is not None and not any(
            abs(u - plan_s) <= BASS_LONE_S for u, _ in strikes)

    def _free_heard(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int]) -> bool:
        """(BASS_LONE_S) Whether the informed stage with ``pitch``'s fundamental free
        (:meth:`bass_tests`) hears it: rise >= INFORMED_MIN_RISE, >= INFORMED_LOOSE_X x the
        unplanned related keys', explained >= BASS_LONE_EXPLAINED."""
        rise, loose_x, explained = self.bass_tests(pitch, t_lo_s, t_hi_s, sounding)
        return rise >= INFORMED_MIN_RISE and loose_x >= INFORMED_LOOSE_X and explained >= BASS_LONE_EXPLAINED

    def _step_rescue(self, pitch: int, t_lo_s: float, t_hi_s: float,
                     strikes: Sequence[tuple[float, int]], plan_s: float | None = None) -> Onset | None:
        """(BASS_STEP_RESCUE) Planned ``pitch`` heard at the step fit's onset in [t_lo_s,
        t_hi_s] (:func:`.stepfit.step_onset`, ``strikes``: the plan's other strikes) where
        that step removes >= BASS_STEP_RESCUE_AT of its bands' residual and
        :meth:`_step_struck` holds there (``plan_s``: the note's planned time, None: the
        window's middle); else None (and None in a :attr:`quick` detector)."""
        if not BASS_STEP_RESCUE or self.quick:
            return None
        fit = step_onset(self.y, self.sr, pitch, t_lo_s, t_hi_s, strikes)
        if fit is None:
            return None
        own = self._step_bands(pitch, fit[0], strikes)
        if not own:
            return None
        fit = step_onset(self.y, self.sr, pitch, t_lo_s, t_hi_s, strikes, partials=own)  # (in our own bands)
        if fit is None or fit[1] < BASS_STEP_RESCUE_AT:
            return None
        o = replace(self._refine_energy(pitch, fit[0], 0.0), t_s=fit[0])  # (its loudness)
        return o if self._step_struck(o, t_lo_s, t_hi_s, strikes, plan_s) else None

    def _bass_retime(self, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
                     plan_s: float | None = None) -> Onset:
        """Onset ``o`` of a planned key below BASS_MAX_PITCH searched in [t_lo_s, t_hi_s],
        or where the step fit in its partials' bands (:func:`.stepfit.step_check`,
        ``strikes``: the plan's other strikes that may sound there) says it lies elsewhere,
        the onset of its best step: a step at ``o`` removes under BASS_RETIME_X of the
        best's and leaves over BASS_RETIME_LEFT_X x its residual, and the best lies more
        than BASS_RETIME_MIN_S from ``o`` and at least BASS_RETIME_EDGE_S inside the window
        (the constants' block), and not where ``o`` lies nearer ``plan_s`` (the note's plan
        time) and its step removes near as much (:meth:`_plan_keeps`)."""
        got = self._step_elsewhere(o, t_lo_s, t_hi_s, strikes, BASS_RETIME_X, BASS_RETIME_MIN_S, BASS_RETIME_EDGE_S)
        if got is None or 1.0 - got[2] <= BASS_RETIME_LEFT_X * (1.0 - got[1]):
            return o
        if self._plan_keeps((got[2], o.t_s), (got[1], got[0]), plan_s):
            return o
        return replace(self._refine_energy(o.pitch, got[0], o.rise_db), t_s=got[0])

    def _step_elsewhere(self, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
                        x: float, min_s: float, edge_s: float) -> tuple[float, float, float] | None:
        """The step fit of ``o``'s key in [t_lo_s, t_hi_s] (:func:`.stepfit.step_check`:
        its best step's time, the fraction the best removes, the fraction a step at ``o``
        removes) where it says the onset lies elsewhere: a step at ``o`` removes under ``x``
        of the best's, the best lies more than ``min_s`` from ``o`` and at least ``edge_s``
        inside the window; else None (the retimes' common gates; None in a :attr:`quick`
        detector)."""
        if self.quick:
            return None
        got = step_check(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, o.t_s)
        if got is None:
            return None
        t_step, best, at = got
        if at >= x * best or abs(t_step - o.t_s) <= min_s or not t_lo_s + edge_s <= t_step <= t_hi_s - edge_s:
            return None
        return got

    def _upper_retime(self, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]], *,
                      informed: bool = False, plan_s: float | None = None) -> Onset:
        """Onset ``o`` of a planned key from BASS_MAX_PITCH up searched in [t_lo_s,
        t_hi_s], or where the step fit in its partials' bands (:func:`.stepfit.step_check`,
        ``strikes``: the plan's other strikes that may sound there, our key's earlier ones
        among them) says it lies elsewhere, the onset of its best step: a step at ``o``
        removes under UPPER_RETIME_X of the best's, the best removes at least
        UPPER_RETIME_MIN_BEST of the bands' residual, the best lies more than
        UPPER_RETIME_MIN_S from ``o`` and at least UPPER_RETIME_EDGE_S inside the window,
        and the key's salience rose by UPPER_RETIME_STEP_DB or more within
        UPPER_RETIME_STEP_REACH_S of it (UPPER_RETIME_SURE_STEP_DB where the best removes
        UPPER_RETIME_SURE_BEST or more; no rise where ``informed``, the informed stage gave
        ``o``, and the best removes UPPER_RETIME_INFORMED_BEST or more), and where another
        key's strike lies near the best step, the key's fundamental band stepped there
        (:meth:`_neighbours_step`; the constants' block); not where ``o`` lies nearer
        ``plan_s`` (the note's plan time) and its step removes near as much (:meth:`_plan_keeps`)."""
        got = self._step_elsewhere(o, t_lo_s, t_hi_s, strikes, UPPER_RETIME_X, UPPER_RETIME_MIN_S, UPPER_RETIME_EDGE_S)
        if got is None or got[1] < UPPER_RETIME_MIN_BEST or self._plan_keeps((got[2], o.t_s), (got[1], got[0]), plan_s):
            return o
        t_step = got[0]
        r = self.rise_db(o.pitch)
        hop_s = self.hop / self.sr
        i0, i1 = (int(round((t_step + d) / hop_s)) for d in (-UPPER_RETIME_STEP_REACH_S, UPPER_RETIME_STEP_REACH_S))
        need_db = UPPER_RETIME_SURE_STEP_DB if got[1] >= UPPER_RETIME_SURE_BEST else UPPER_RETIME_STEP_DB
        if informed and got[1] >= UPPER_RETIME_INFORMED_BEST:
            need_db = -math.inf
        if not 0 <= i0 < i1 < len(r) or float(r[i0 : i1 + 1].max()) < need_db:
            return o  # the key's salience did not rise at the step: not a strike of it
        if self._neighbours_step(o, t_lo_s, t_hi_s, strikes, t_step):
            return o
        return replace(self._refine_energy(o.pitch, t_step, o.rise_db), t_s=t_step)

    def _neighbours_step(self, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
                         t_step: float) -> bool:
        """Whether the upper retime's best step at ``t_step`` is another key's strike, not
        ``o``'s key's: another key's planned strike (``strikes``) lies within
        UPPER_RETIME_NEIGHBOUR_S of it and in the key's fundamental band alone
        (:func:`.stepfit.step_check` in [t_lo_s, t_hi_s] on partial 1) a step there removes
        under UPPER_RETIME_FUND_GAIN more of the band's residual than a step at ``o``."""
        if not any(q != o.pitch and abs(u - t_step) < UPPER_RETIME_NEIGHBOUR_S for u, q in strikes):
            return False
        at_o = step_check(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, o.t_s, partials=(1,))
        at_step = step_check(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, t_step, partials=(1,))
        if at_o is None or at_step is None:
            return False
        return at_step[2] - at_o[2] < UPPER_RETIME_FUND_GAIN

    def _vetoed(self, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int],
                onset: Onset | None = None, strikes: Sequence[tuple[float, int]] = (),
                plan_s: float | None = None) -> bool:
        """Whether the informed stage drops the plan-known search's onset of ``pitch`` in
        [t_lo_s, t_hi_s]. Below BASS_MAX_PITCH, on the 8192-sample windows (:attr:`bass`):
        dropped where an unplanned related key's activation rose more than 1 /
        BASS_VETO_LOOSE_X of ours (a bass key's semitone or octave struck, ours not; fakes
        heard on random 1-3: 30 -> 19, F1 unchanged, session 14), unless our key with its
        fundamental free of its upper partials (BASS_FREE_FUNDAMENTAL, :meth:`bass_tests`)
        rose >= BASS_VETO_LOOSE_X x theirs and explains >= BASS_FREE_EXPLAINED of our
        bins' residual (session 20: the rich voice's weak bass fundamentals), or (BASS_FREE_PLANNED,
        :meth:`_free_planned_asked`) with every planned key's fundamental free too our upper
        partials rose >= INFORMED_MIN_RISE and >= BASS_VETO_LOOSE_X x theirs
        (:meth:`free_planned_tests`; session 29), kept where ours rose >=
        BASS_KEEP_RISE (on the 4096-sample windows an unplanned semitone's template takes a
        soft bass key's sound, and the veto below dropped notes the search heard on time:
        random 2's D#2, random 3's F#2, session 16); not dropped on the loose ratio where
        (BASS_VETO_STEP) the step fit in its bands says the search's ``onset`` is its strike
        (:meth:`_step_struck`; ``strikes``: the plan's other strikes, ``plan_s`` the planned
        time). Otherwise dropped where the plan's
        other keys explain what the search heard as ours (:meth:`informed_rise` <
        INFORMED_VETO_RISE), and from BASS_MAX_PITCH up where an unplanned related key's
        activation rose over 1 / INFORMED_VETO_LOOSE_X x ours there (a planned twelfth or
        octave above a struck key, never played; session 17)."""
        if pitch < BASS_MAX_PITCH:
            rise, loose_x, explained = self.bass.informed_tests(pitch, t_lo_s, t_hi_s, sounding)
            if loose_x < BASS_VETO_LOOSE_X and BASS_FREE_FUNDAMENTAL:
                _, loose_free, explained_free = self.bass.bass_tests(pitch, t_lo_s, t_hi_s, sounding)
                if explained_free >= BASS_FREE_EXPLAINED:
                    loose_x = loose_free
            if loose_x < BASS_VETO_LOOSE_X and BASS_FREE_PLANNED and self._free_planned_asked(
                    onset, t_lo_s, t_hi_s, strikes, plan_s):
                rise_all, loose_all = self.bass.free_planned_tests(pitch, t_lo_s, t_hi_s, sounding)
                if rise_all >= INFORMED_MIN_RISE:
                    loose_x = loose_all
            if loose_x < BASS_VETO_LOOSE_X and not (
                BASS_VETO_STEP and onset is not None and self._step_struck(onset, t_lo_s, t_hi_s, strikes, plan_s)
            ):
                return True
            if rise >= BASS_KEEP_RISE:
                return False
            return self.informed_rise(pitch, t_lo_s, t_hi_s, sounding) < INFORMED_VETO_RISE
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding)
        if dec is None:
            return True
        _, rise, loose_x = self._rise_loose(dec)
        return rise < INFORMED_VETO_RISE or loose_x < INFORMED_VETO_LOOSE_X

    @staticmethod
    def _free_planned_asked(onset: Onset | None, t_lo_s: float, t_hi_s: float,
                            strikes: Sequence[tuple[float, int]], plan_s: float | None) -> bool:
        """Whether the veto asks :meth:`free_planned_tests` of the search's ``onset``
        (BASS_FREE_PLANNED): it lies within BASS_HEARD_PLAN_S of ``plan_s`` (the note's planned
        time; None: the window's middle) and no key struck within BASS_VETO_STEP_NEAR_S of it
        lies BASS_OCTAVES_OVER semitones over its key or BASS_STEP_NEIGHBOURS from it
        (``strikes``: the plan's other strikes)."""
        if onset is None:
            return False
        if BASS_HEARD_PLAN_S is not None and abs(onset.t_s - _planned(plan_s, t_lo_s, t_hi_s)) > BASS_HEARD_PLAN_S:
            return False
        return not any((q - onset.pitch in BASS_OCTAVES_OVER or abs(q - onset.pitch) in BASS_STEP_NEIGHBOURS)
                       and abs(u - onset.t_s) <= BASS_VETO_STEP_NEAR_S for u, q in strikes)

    @staticmethod
    def _step_bands(pitch: int, t_s: float, strikes: Sequence[tuple[float, int]]) -> list[int]:
        """The partials of ``pitch`` the bass step rules fit at ``t_s``: those no key struck
        within BASS_VETO_STEP_NEAR_S meets (:func:`own_bands`); none where such a key lies
        BASS_OCTAVES_OVER semitones over ours."""
        near = [q for u, q in strikes if abs(u - t_s) <= BASS_VETO_STEP_NEAR_S]
        if any(q - pitch in BASS_OCTAVES_OVER for q in near):
            return []
        return own_bands(pitch, near)

    def _step_struck(self, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
                     plan_s: float | None = None) -> bool:
        """Whether the step fit in the bands of ``o``'s key (:func:`.stepfit.step_frequency`,
        ``strikes``: the plan's other strikes that may sound there) says ``o`` is its
        strike: in the bands of its partials that no key struck within
        BASS_VETO_STEP_NEAR_S of ``o`` meets (:func:`own_bands`; none, or such a key
        BASS_OCTAVES_OVER semitones over ours: False), a step
        within BASS_VETO_STEP_REACH_S of ``o`` removes >= BASS_VETO_STEP_AT of the
        residual and >= BASS_VETO_STEP_SHARE of what it removes at the best frequency in
        each band (not a neighbour's partial); only where the plan struck the key within
        BASS_STEP_RESTRUCK_S before ``o`` (a re-strike) or, from key BASS_KIN_MIN_PITCH up,
        struck a key BASS_STEP_KIN semitones from it within BASS_VETO_STEP_NEAR_S of ``o``
        (a chord's kin: then :meth:`_kin_clean` must hold too), no key struck within
        BASS_VETO_STEP_NEAR_S lies BASS_STEP_NEIGHBOURS semitones from ours, and ``o`` lies
        within BASS_STEP_PLAN_S of ``plan_s`` (the note's planned time; None: the window's
        middle). False in a :attr:`quick` detector."""
        if self.quick:
            return False
        kin_only = BASS_STEP_RESTRUCK_S is not None and not any(
            q == o.pitch and MIN_GAP_S < o.t_s - u <= BASS_STEP_RESTRUCK_S for u, q in strikes)
        if kin_only and (o.pitch < BASS_KIN_MIN_PITCH or not any(
                abs(q - o.pitch) in BASS_STEP_KIN and abs(u - o.t_s) <= BASS_VETO_STEP_NEAR_S for u, q in strikes)):
            return False
        if BASS_STEP_PLAN_S is not None and abs(o.t_s - _planned(plan_s, t_lo_s, t_hi_s)) > BASS_STEP_PLAN_S:
            return False
        if any(abs(q - o.pitch) in BASS_STEP_NEIGHBOURS and abs(u - o.t_s) <= BASS_VETO_STEP_NEAR_S for u, q in strikes):
            return False
        own = self._step_bands(o.pitch, o.t_s, strikes)
        if not own:
            return False
        got = step_frequency(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, o.t_s, BASS_VETO_STEP_REACH_S,
                             BASS_VETO_STEP_OFFSETS, own)
        if got is None or got[0] < BASS_VETO_STEP_AT or got[1] < BASS_VETO_STEP_SHARE:
            return False
        return not kin_only or self._kin_clean(o, t_lo_s, t_hi_s, strikes, own)

    def _kin_clean(self, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
                   own: Sequence[int]) -> bool:
        """(BASS_KIN_OFF_AT, BASS_KIN_ALIEN_X) Whether the step at ``o`` in its key's bands
        ``own`` (:func:`.stepfit.step_bands`) is its key's and not a wrong key's whose
        partials meet a subset of ours: our bands off each lattice of BASS_KIN_LATTICES
        hold >= BASS_KIN_OFF_AT of their residual in the step, and a key BASS_KIN_ALIENS
        semitones from ours steps in its partials (up to BASS_KIN_ALIEN_PARTIALS) that meet
        none of ours (up to BASS_KIN_OUR_PARTIALS, BASS_COINCIDE) nor lie near those of a
        key struck within BASS_VETO_STEP_NEAR_S (BASS_KIN_ALIEN_CLEAR) under
        BASS_KIN_ALIEN_X x our bands' step (the constants' block)."""
        ours = step_bands(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, o.t_s, BASS_VETO_STEP_REACH_S, own)
        if ours is None:
            return False
        for m in BASS_KIN_LATTICES:
            off = [ours[k] for k in ours if k % m]
            left = sum(ss for _, ss in off)
            if off and sum(g for g, _ in off) < BASS_KIN_OFF_AT * left:
                return False
        mine = sum(g for g, _ in ours.values())
        f0 = f0_hz(o.pitch)
        near = [q for u, q in strikes if abs(u - o.t_s) <= BASS_VETO_STEP_NEAR_S and q != o.pitch]
        struck = [j * f0_hz(q) for q in near for j in range(1, BASS_COINCIDE_PARTIALS + 1)]
        for d in BASS_KIN_ALIENS:
            fq = f0_hz(o.pitch + d)
            theirs = [j for j in range(1, BASS_KIN_ALIEN_PARTIALS + 1)
                      if all(abs(j * fq - k * f0) >= BASS_COINCIDE * f0 for k in range(1, BASS_KIN_OUR_PARTIALS + 1))
                      and all(abs(j * fq - g) >= BASS_KIN_ALIEN_CLEAR * f0 for g in struck)]
            if not theirs:
                continue
            got = step_bands(self.y, self.sr, o.pitch + d, t_lo_s, t_hi_s, strikes, o.t_s, BASS_VETO_STEP_REACH_S,
                             theirs)
            if got is not None and sum(g for g, _ in got.values()) >= BASS_KIN_ALIEN_X * mine:
                return False
        return True

    def bass_tests(self, pitch: int, t_lo_s: float, t_hi_s: float,
                   sounding: Sequence[int]) -> tuple[float, float, float]:
        """:meth:`informed_tests`' figures with ``pitch``'s fundamental fitted apart from
        its upper partials (two columns: :meth:`upper_template` and the fundamental's
        lobe; the rise and the loose ratio are its upper partials' activation's): a bass
        key whose fundamental radiates weakly is still its own 2nd..8th partials, which
        an unplanned key an octave or twelfth up (its partials a subset of ours) took with
        our fundamental-heavy template. The other keys keep their whole templates (an
        unplanned key must show its fundamental to take ours)."""
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding, free_fundamental=True)
        if dec is None:
            return 0.0, 0.0, 0.0
        keys, loose, after, w, h_a, rise = dec
        j, mine, loose_x = self._rise_loose(dec)
        x = after[:, j : j + 1]
        sup = (w[:, 0] + w[:, -1]) > 0.05  # our template's bins
        rest = w[:, 1:-1]  # the others' templates, without our two columns
        r_with = float(np.sum((x - w @ h_a[:, j : j + 1])[sup] ** 2))
        r_wo = float(np.sum((x - rest @ _nnls(rest, x, self.noise_amp))[sup] ** 2))
        return mine, loose_x, (r_wo - r_with) / r_wo if r_wo > 0.0 else 0.0

    def free_planned_tests(self, pitch: int, t_lo_s: float, t_hi_s: float,
                           sounding: Sequence[int]) -> tuple[float, float]:
        """(rise, loose ratio) of :meth:`informed_tests` with the fundamental of ``pitch`` and
        of every planned key ``sounding`` fitted apart from its upper partials (two columns
        each, :meth:`upper_template` and the fundamental's lobe; the rise is our upper
        partials' activation's, the unplanned related keys keep their whole templates): a
        planned key struck beside ours whose fundamental radiates weakly then explains its own
        upper partials, which our upper column took with its fundamental-heavy template
        (BASS_FREE_PLANNED)."""
        dec = self._decompose(pitch, t_lo_s, t_hi_s, sounding, free_fundamental=True, free_planned=True)
        if dec is None:
            return 0.0, 0.0
        _, mine, loose_x = self._rise_loose(dec)
        return mine, loose_x

    def _midpoint(self, pitch: int, i: int, cols: Cols = None, *, predicted: bool = False) -> float:
        """Audio time where the pitch's salience is halfway from before the rise at frame
        ``i`` to its top after it: a window centred on a step onset holds half of it.
        ``cols``: the salience of these partials only (:meth:`own_partials`); () (every
        partial shared with a key struck nearby): all, the top within SHARED_REACH.
        ``predicted``: of the new power (:meth:`new_power`) instead of the salience: a
        strike whose partials meet a ringing key's in anti-phase first lowers the
        salience and reaches its top late (the midpoint +20..+40 ms late)."""
        lag = int(round(RISE_S / HOP_S / 2))
        reach = 2 * lag if cols != () else SHARED_REACH
        if predicted:
            f_lo, s = self.new_power(pitch, i - lag, i + reach, cols or None)
        else:
            f_lo, s = 0, self.salience(pitch, cols or None)
        return self._half(s, i, lag, reach, f_lo)

    def partial_midpoints(self, pitch: int, i: int, cols: Cols = None) -> list[float]:
        """Per partial of ``pitch`` (``cols`` only, where given) that rose > 6 dB across
        frame ``i`` (as :meth:`risen_fraction` counts), the earlier of its salience's and
        its new power's midpoints (audio s): one partial still ringing from another key
        (the fundamental under a low key's 2nd partial, a semitone's) moves its own
        midpoint, not the others'."""
        lag = int(round(RISE_S / HOP_S / 2))
        reach = 2 * lag
        ps = self.partials(pitch)
        k_n = ps.shape[1]
        ks = [k for k in range(k_n) if cols is None or k in cols]
        fl = self.floor() / k_n
        a, b = ps[min(len(ps) - 1, i + lag)], ps[max(0, i - lag)]
        ks = [k for k in ks if 10.0 * math.log10((a[k] + fl) / (b[k] + fl)) > 6.0]
        if not ks:
            return []
        f_lo, r = self.new_power(pitch, i - lag, i + reach, tuple(ks), per_partial=True)
        out = []
        for j, k in enumerate(ks):
            t1 = self._half(ps[:, k], i, lag, reach, 0)
            t2 = self._half(r[:, j], i, lag, reach, f_lo)
            out.append(min(t1, t2))
        return out

    def _half(self, s: np.ndarray, i: int, lag: int, reach: int, f_lo: int) -> float:
        """Audio time where ``s`` (frames from ``f_lo``) is halfway from frame i - lag to
        its top in i..i + reach, walking back from the top."""
        lo = float(s[max(0, i - lag - f_lo)])
        k = max(0, i - f_lo)  # (the prediction's frames start 8 ms in at the earliest)
        top_i = k + int(np.argmax(s[k : k + reach + 1]))
        half = 0.5 * (lo + float(s[top_i]))
        j = top_i
        while j > max(0, i - lag - f_lo) and s[j] > half:
            j -= 1
        # interpolate between frames j (<= half) and j + 1 (> half)
        a, b = float(s[j]), float(s[min(j + 1, len(s) - 1)])
        frac = (half - a) / (b - a) if b > a else 0.0
        return (f_lo + j + frac) * self.hop / self.sr

    def new_power(self, pitch: int, f_lo: int, f_hi: int, cols: Cols = None,
                  per_partial: bool = False) -> tuple[int, np.ndarray]:
        """(f_lo', (frames,) power) at the bins of the key's partials (``cols`` only, where
        given) over spectrogram frames f_lo'..f_hi that the ringing sound does not
        explain: each bin predicted as one decaying, rotating sinusoid (its phase turn and
        decay over PREDICT_FRAMES frames, measured on the two frames that end before
        frame f_lo's window begins) and the complex residual's power summed. A ringing
        partial of another key in the same bins is predicted away whatever its phase; a
        magnitude (:meth:`salience`) adds the two, so a new partial in anti-phase first
        lowers it."""
        d = PREDICT_FRAMES
        half_w = int(math.ceil(N_FFT / 2 / self.hop))
        ref = max(d, f_lo - half_w)
        frames = np.concatenate([[ref - d], np.arange(ref, f_hi + 1)])
        groups = [list(range(lo, hi + 1)) for k, (lo, hi) in enumerate(self._partial_bins(pitch))
                  if cols is None or k in cols]
        bins = np.array(sorted({b for g in groups for b in g}))
        pad = N_FFT // 2
        idx = (frames * self.hop - pad)[:, None] + np.arange(N_FFT)[None, :]
        seg = np.where((idx >= 0) & (idx < len(self.y)), self.y[np.clip(idx, 0, len(self.y) - 1)], 0.0)
        x = np.fft.rfft(seg * np.hanning(N_FFT), axis=1)[:, bins]  # (frames, bins) complex
        a, b = x[0], x[1]
        turn = b / np.where(np.abs(a) > 0, a, 1e-30)
        # the phase turn over d frames: the bin's own turn plus a deviation of under half
        # a turn (a sinusoid in this bin is within ±2 bins of it: ±62 Hz over 8 ms)
        expect = 2.0 * np.pi * bins * self.hop * d / N_FFT
        phi = expect + np.angle(turn * np.exp(-1j * expect))
        m = (frames[1:] - ref)[:, None] / d
        pred = b[None, :] * np.minimum(np.abs(turn), 1.0)[None, :] ** m * np.exp(1j * phi[None, :] * m)
        e = np.abs(x[1:] - pred) ** 2  # (frames, bins)
        if per_partial:
            where = {b: j for j, b in enumerate(bins)}
            return int(ref), np.stack([e[:, [where[b] for b in g]].sum(axis=1) for g in groups], axis=1)
        return int(ref), e.sum(axis=1)

    def _partial_bins(self, pitch: int) -> list[tuple[int, int]]:
        """Per partial ``k·f0`` of ``pitch`` (k = 1..8, below F_MAX_HZ and 0.45 x the rate),
        the spectrogram bins (first, last) that hold it: a bin each side, and up to
        INHARMONIC above for the string's stretch."""
        bin_hz = self.sr / N_FFT
        f0 = f0_hz(pitch)
        out = []
        for k in range(1, 9):
            fk = k * f0
            if fk > min(F_MAX_HZ, 0.45 * self.sr):
                break
            lo = max(0, int(math.floor(fk / bin_hz)) - 1)
            out.append((lo, int(math.ceil(fk * (1 + INHARMONIC * min(1.0, k / 8)) / bin_hz)) + 1))
        return out

    # ---- the sample-accurate part ------------------------------------------------------
    def _refine(self, pitch: int, t_coarse: float, rise: float, *, direct: bool = False) -> Onset:
        """The onset and loudness of the strike heard near ``t_coarse``, with ``direct``
        (a known key's strike, the calibration's) below DIRECT_MAX_PITCH timed by
        :meth:`direct_onset` where it finds one within DIRECT_MOVE_S of the other, else
        where it finds one looked for from DIRECT_BACK_S before it (the energy fit late)."""
        o = self._refine_energy(pitch, t_coarse, rise)
        if direct and pitch < DIRECT_MAX_PITCH:
            # from the fit's onset, then from DIRECT_BACK_S before it (the energy fit late:
            # its background held the rise; only an onset before the fit's is taken there)
            for back in (0.0, *DIRECT_BACK_S):
                t_on = self.direct_onset(pitch, o.t_s - back)
                if t_on is None:
                    continue
                t_on -= direct_response(pitch, self.sr)
                if back == 0.0 and abs(t_on - o.t_s) <= DIRECT_MOVE_S:
                    return replace(o, t_s=t_on, sure=abs(t_on - o.t_s) <= DIRECT_SURE_S)
                if back > 0.0 and o.t_s - back - DIRECT_GAP_S <= t_on <= o.t_s:
                    return replace(o, t_s=t_on, sure=False)
            return replace(o, sure=False)
        return o

    def _refine_energy(self, pitch: int, t_coarse: float, rise: float) -> Onset:
        """The onset and loudness of the strike heard near ``t_coarse``: the energy fit
        (:meth:`y_onset`, twice: the second from the first's onset) less its own delay
        and over its own gain on the reference tone (:func:`energy_response`); where the
        fit fails (no rise of energy there), the comb's half-energy time and loudness."""
        t_fit, p_fit = self.y_onset(pitch, self.y_onset(pitch, t_coarse)[0])
        if math.isfinite(p_fit) and abs(t_fit - t_coarse) <= MAX_FIT_MOVE_S:
            _, p_note = self._attack(pitch, t_fit)
            delay, gain = energy_response(pitch, self.sr)
            f_hi = band_hi_hz(f0_hz(pitch), self.sr)
            power = max(p_note, 0.0) / 2.0 / gain / self.gain**2
            return Onset(t_fit - delay, pitch, velocity_for_power(pitch, power, f_hi + 1.0), rise)
        t_on, p_note = self._attack(pitch, t_coarse)
        delay, gain = detector_response(pitch, self.sr)
        f_hi = band_hi_hz(f0_hz(pitch), self.sr)
        # |analytic|^2 of a partial of amplitude a is a^2 (its mean power is a^2 / 2)
        power = max(p_note, 0.0) / 2.0 / gain / self.gain**2
        return Onset(t_on - delay, pitch, velocity_for_power(pitch, power, f_hi + 1.0), rise)

    def direct_onset(self, pitch: int, t_s: float) -> float | None:
        """Where the key's sound that began near ``t_s`` (within DIRECT_GAP_S) rises
        (audio s, this method's own delay not taken off: :func:`direct_response`), timed
        from the first millisecond of its direct sound; None where no rise is found.

        Each partial ``k·f0`` (its string's stretch included) demodulated through a
        causal window of one period of f0 (a steady harmonic sound's other partials cancel
        in it): a partial struck at t0 grows linearly in amplitude from t0 to t0 + one
        period, and the window's value at t holds nothing later than t. The partials'
        power summed, the background (a line through DIRECT_PRE_S ending DIRECT_GAP_S
        before ``t_s``) taken off, its square root over its level 1..6 ms past one period
        (the amplitude's rise, 0..1); the part between DIRECT_LO and DIRECT_HI fitted by a
        line that meets zero at the onset (plus the attack's own delay). That part ends a
        third of a period in (8 ms at F1): the room's reflections, from 4 ms, add little
        to it, where the Gaussian bands of :meth:`y_onset` (sd f0/4) smooth over the
        first 10-25 ms of a low note, reflections and decay included."""
        y, sr = self.y, self.sr
        f0 = f0_hz(pitch)
        n_win = int(round(sr / f0))
        ms = sr // 1000
        c = int(round(t_s * sr))
        gap, pre_n = int(DIRECT_GAP_S * sr), int(DIRECT_PRE_S * sr)
        s0 = c - pre_n - gap - n_win - 2 * ms
        s1 = c + 2 * n_win + 10 * ms
        if s0 < 0 or s1 > len(y):
            return None
        seg = y[s0:s1]
        n = np.arange(s0, s1)
        pw = np.zeros(len(seg) - n_win + 1)  # pw[j]: the window of samples s0+j .. s0+j+n_win-1
        end0 = s0 + n_win - 1  # the sample pw[0]'s window ends on
        x = c - end0
        pre = np.arange(x - gap - pre_n, x - gap)
        for k in range(1, 9):
            fk = k * f0 * (1 + STRETCH * k * k / 2)
            if fk > band_hi_hz(f0, sr):
                break
            cs = np.concatenate([[0.0], np.cumsum(seg * np.exp(-2j * np.pi * fk / sr * n))])
            z = cs[n_win:] - cs[:-n_win]
            # a sound ringing on at this partial (a related key's, this key's own) is a
            # slowly turning phasor here: its mean over the background taken off in the
            # complex plane, so the new partial does not beat against it (soft strikes
            # after a loud kin key: |error| p50 1.04 -> 0.79 ms; a line instead of the
            # mean: 0.69 ms, but the louder strikes' p90 0.34 -> 0.53 ms)
            pw += np.abs(z - z[pre].mean()) ** 2
        b_slope, b0 = np.polyfit(pre - x, pw[pre], 1)
        ex = pw - (b0 + b_slope * (np.arange(len(pw)) - x))
        top = float(np.median(ex[x + n_win + ms : x + n_win + 6 * ms]))
        if not top > 0.0:
            return None
        amp = np.sqrt(np.maximum(ex, 0.0) / top)
        ups = np.nonzero(amp[x - gap :] >= DIRECT_HI)[0]
        if not len(ups) or ups[0] == 0:
            return None  # no rise, or risen already before the search (the background's)
        j_hi = x - gap + int(ups[0])
        below = np.nonzero(amp[:j_hi] < DIRECT_LO)[0]
        if not len(below):
            return None
        j_lo = int(below[-1]) + 1
        if j_hi - j_lo < 3:
            return None
        slope, icept = np.polyfit(np.arange(j_lo, j_hi), amp[j_lo:j_hi], 1)
        if slope <= 0.0:
            return None
        return float((end0 - icept / slope) / sr)

    def y_onset(self, pitch: int, t_coarse: float, y: np.ndarray | None = None) -> tuple[float, float]:
        """Where the key's sound that began near ``t_coarse`` (within SNAP_S) starts, and
        its power (audio s, power; ``(t_coarse, nan)`` where nothing rose): the key's
        partials through Gaussian bands, power summed, snapped to its steepest rise; the
        background before (a line through 24 ms) taken off and the excess summed; the
        part of that sum between 15 % and 60 % of its value 10 ms past the bands' reach,
        fitted by a line, meets zero at the onset plus a constant of the key and the
        attack's shape (:func:`energy_response`). A sum, not a threshold: a soft note
        and a loud one read alike."""
        y = self.y if y is None else y
        sr = self.sr
        f0 = f0_hz(pitch)
        ms = sr // 1000
        s0 = max(0, int((t_coarse - 0.15) * sr))
        s1 = min(len(y), int((t_coarse + 0.12) * sr))
        seg = y[s0:s1]
        n = len(seg)
        if n < 2:  # t_coarse far past the take's end (a second fit from a first's far onset)
            return t_coarse, float("nan")
        x = int(t_coarse * sr) - s0
        # the key's partials only, each through its own Gaussian band (sd f0/4: no
        # beats between partials, little of other keys' sound), power summed
        sf = min(BAND_SD * f0, 300.0)
        freqs = np.fft.fftfreq(n, 1.0 / sr)
        spec = np.fft.fft(seg)
        pw = np.zeros(n)
        for k in range(1, 9):
            fk = k * f0
            if fk > min(F_MAX_HZ, 0.45 * sr):
                break
            g = np.where(freqs > 0, 2.0 * np.exp(-0.5 * ((freqs - fk * (1 + STRETCH * k * k / 2)) / sf) ** 2), 0.0)
            pw += np.abs(np.fft.ifft(spec * g)) ** 2
        w = 2 * int(3.0 * sr / (2 * np.pi * sf))  # the bands' reach, both sides
        # the coarse onset snapped to the steepest rise of this power within SNAP_S
        d = max(ms, w // 4)
        a0, a1 = max(d, x - int(SNAP_S * sr)), min(n - d, x + int(SNAP_S * sr))
        if a1 > a0:
            rise = pw[a0 + d : a1 + d] - pw[a0 - d : a1 - d]
            x = a0 + int(np.argmax(rise))
        start = x - w // 2 - 6 * ms
        ref = w + 16 * ms  # from start: 10 ms after the smoothing's reach past x
        if start - 24 * ms < 0 or start + ref >= n:
            return t_coarse, float("nan")
        # the background (keys still ringing, decaying) as a line through the 24 ms before
        pre = np.arange(start - 24 * ms, start)
        b_slope, b0 = np.polyfit(pre - start, pw[pre], 1)
        c = np.cumsum(pw[start:] - (b0 + b_slope * np.arange(n - start)))
        if c[ref] <= 0.0:
            return t_coarse, float("nan")
        below = np.nonzero(c[:ref] < 0.15 * c[ref])[0]
        i_lo = int(below[-1]) if len(below) else 0
        i_hi = i_lo + int(np.argmax(c[i_lo:ref] >= 0.6 * c[ref]))
        if i_hi - i_lo < 3:
            return t_coarse, float("nan")
        slope, icept = np.polyfit(np.arange(i_lo, i_hi), c[i_lo:i_hi], 1)
        if slope <= 0.0:
            return t_coarse, float("nan")
        return (s0 + start - icept / slope) / sr, float(slope)

    def _attack(self, pitch: int, t_coarse: float) -> tuple[float, float]:
        """Half-energy time (audio s) of the note's comb-filtered envelope, smoothed over
        one period of f0 (the partials' beats cancel), and its |analytic|² over one
        period (>= 10 ms) from 3 ms after, less the background."""
        sr = self.sr
        f0 = f0_hz(pitch)
        s0, seg, freqs, period, f_hi = _attack_segment(self, pitch, t_coarse)
        n = len(seg)
        band = np.where(freqs > 0, 2.0, 0.0) * _comb(freqs, f0, f_hi)
        seg_f = np.fft.fft(seg)
        env = np.abs(np.fft.ifft(seg_f * band)) ** 2  # timing: the key's partials only
        w = max(1, int(round(period * sr)))
        cs = np.concatenate([[0.0], np.cumsum(env)])
        idx = np.arange(n)
        lo, hi = np.clip(idx - w // 2, 0, n), np.clip(idx - w // 2 + w, 0, n)
        sm = (cs[hi] - cs[lo]) / np.maximum(hi - lo, 1)  # (n,) centred boxcar of one period
        c = int(t_coarse * sr) - s0
        ms = int(0.001 * sr)
        half_n = w // 2
        cross = float(c)
        for _ in range(3):  # background and top from around the last crossing
            x = int(cross)
            pre = sm[max(0, x - half_n - 20 * ms) : max(1, x - half_n - ms)]
            post = sm[min(n - 1, x + half_n + 2 * ms) : min(n, x + half_n + 9 * ms)]
            b = float(np.median(pre)) if len(pre) else 0.0
            top = float(np.median(post)) if len(post) else b
            half = b + 0.5 * (top - b)
            # the first crossing of half forward from the background (later dips of the
            # envelope, from beats the boxcar does not cancel, do not count)
            # (searched around the coarse onset c, so the iterations cannot walk away)
            start = max(0, c - half_n - 10 * ms)
            win = sm[start : min(n, c + half_n + 10 * ms)]
            ups = np.nonzero((win[:-1] <= half) & (win[1:] > half))[0]
            if not len(ups):
                break
            j = start + int(ups[np.argmin(np.abs(start + ups - c))])  # the rise nearest c
            a0, a1 = float(sm[j]), float(sm[j + 1])
            cross = j + ((half - a0) / (a1 - a0) if a1 > a0 else 0.0)
        t_on = (s0 + cross) / sr
        # loudness: the note's band power over one period (>= 10 ms) from 3 ms after the
        # half-energy point, less the background
        k0 = int((t_on - s0 / sr + 0.003) * sr)
        k1 = k0 + max(w, int(0.010 * sr))
        p_note = float(np.mean(env[max(0, k0) : max(k0 + 1, min(n, k1))])) - b
        return t_on, p_note


# ---- loudness over the partials (the calibration's, with the take's level known) -------
# Through a room each partial of a key is coloured by the reverb's response at its
# frequency, drawn anew per take and independent from one partial to the next; the
# power sum (the comb's loudness, :meth:`Detector._attack`) is mostly the fundamental's,
# so it keeps one partial's colour (4 % of a velocity, s.d.). Each partial's power
# against the reference tone's, read through the level law's partials at one velocity,
# averages the colour over the partials (log-mean, every usable partial alike): 3.0 ->
# 1.7 % a strike (22 keys x 6 takes, velocity 96; docs/calibration.md, "Loudness through the microphone").
# It reads the level law's brightness, so the microphone's gain must be known: the
# calibration hears so once the take's level is fitted (calibrator/listening.py).
# It reads the level law's spectrum too: a key whose partials are not the law's (a weak
# bass fundamental, its upper partials carrying the power) reads off by a constant of
# that key (the simulator's rich voice: A0 +28 % at velocity 64). The power sum (the
# whole comb's power, :func:`power_velocity`) is what a velocity means on any spectrum,
# with one partial's colour in it; the calibration sets each key's log-mean at its power
# sum's level over the key's strikes (listening.spectrum_offsets; docs/calibration.md,
# "The key's spectrum").
PARTIAL_MIN_SHARE = 0.01  # a partial under this share of the reference tone's power (the law at velocity 64) says too little
PARTIAL_MIN_SNR = 3.0  # ... and one under this x its band's background is the noise's
# The notes decay unlike the reference tone (a 0.5 s decay on every partial): a bass
# string rings for seconds, a treble one a few tenths of a second, and each partial
# faster than the one below. Read over a window 3..39 ms after the onset, a note that
# decays slower than the reference reads loud, a faster one soft (+3.4 % at A0, -2.0 %
# at C8 at velocity 96, no room). Each partial's decay against the reference tone's is
# read from a second window (DECAY_WINDOW_S after the half-energy point, before a
# calibration strike's damper lands, >= 73 ms after its onset), and its power taken
# back to the onset over the window's effective time (measured on the reference tone
# with its decay undone: the band's response to the onset makes it less than the
# window's middle). docs/calibration.md, "The loudness trend across the keyboard".
DECAY_WINDOW_S = (0.030, 0.050)
DECAY_MIN_SNR = 3.0  # a partial's decay is read where its second window is this x its background
DECAY_RATE_RANGE = (0.0, 40.0)  # 1/s (amplitude): a string does not grow; 40: a damper's fade is 20
REFERENCE_DECAY_S = 0.5  # :func:`_reference_tone`'s decay (every partial)
T_EFF_MAX_S = 0.1  # a reference partial whose loudness window's effective time is past this is its noise (A0's 5th..8th)
ONSET_TRUST_S = 0.0025  # the windows follow the onset where the half-energy time is this near where it should be
# The power sum read through short windows (:func:`_compact_power`, session 22). The
# comb's bands (:func:`_comb`, 20 Hz skirts) ring for tens of ms either side of a
# sample: their power over the loudness window holds the hammer's thump of the first
# ms (a fixed noise of each key, whose cross term with the partials does not average
# out: the rich voice's keys 69, 72, 78 read 2-3 % soft at velocity 25) and the room's
# reverb of the ms after the window. Each partial demodulated through a Hann window of
# COMPACT_PERIODS periods of f0 (its zeros fall on the other harmonics) holds only the
# samples inside it. The windows start COMPACT_START_S after the onset and their centres
# span COMPACT_SPAN_S. The start trades the thump (early: a soft blow's dull noise of
# the first ~10 ms) against the room (late: the reverb builds up from its first
# reflection). Session 22 chose 6 ms while the simulator drew a new reverb tail every
# take (a key's room colour then averaged over its ~13 takes: the thump weighed more);
# a real room's tail is the same on every take (sim://'s default since session 24), a
# key keeps its whole colour there, and session 25 moved the start to 2 ms. Single
# notes of the rich voice at velocity 64 (keys 50..80 every 6th, rooms 0 / 3 / 7 with a
# fixed tail): one strike's room colour 3.27 -> 2.10 %, the thump's part 0.53 -> 0.88 %
# (keys 48..96). make demo (rich voice, fixed tail) truth seed / room 1/0, 2/0, 2/3, 2/7,
# 3/0: 2.65 / 2.69 / 3.04 / 2.61 / 3.16 -> 1.89 / 2.20 / 2.24 / 2.32 / 2.22; centres
# over 3 ms (less room, more thump) 1.97 on 1/0; the first reflection at 2 ms (sim://
# predelay_ms=2, not 4) on 1/0: 2.80 -> 2.24 (docs/calibration.md, "Session 25,
# velocity"). Keys whose COMPACT_PERIODS periods are over COMPACT_MAX_S (below G#2)
# keep the comb's power: their window would reach a calibration strike's damper, and
# the thump moves their read little (0.4 % rms).
COMPACT_PERIODS = 2.0
COMPACT_MIN_S = 0.004  # the window's shortest (the treble: a few periods)
COMPACT_START_S = 0.002
COMPACT_SPAN_S = 0.006
COMPACT_MAX_S = 0.020
COMPACT_PRE_S = 0.020  # the background: the windows' median over this long, ending 1 ms before the onset
_PARTIALS_REF: dict[tuple[int, int], PartialsReference] = {}


def _partial_band(freqs: np.ndarray, fk: float, k: int) -> np.ndarray:
    """The comb's band (:func:`_comb`) around partial ``k`` at ``fk`` alone."""
    f = np.abs(freqs)
    lo, hi = fk * 0.985, fk * (1.0 + INHARMONIC * min(1.0, k / 8)) * 1.005
    skirt = max(20.0, 0.01 * fk)
    up = np.clip((f - (lo - skirt)) / skirt, 0.0, 1.0)
    down = np.clip(((hi + skirt) - f) / skirt, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def compact_key(pitch: int) -> bool:
    """Whether ``pitch``'s power sum is read through short windows (:func:`_compact_power`)."""
    return COMPACT_PERIODS / f0_hz(pitch) <= COMPACT_MAX_S


def _compact_power(det: Detector, pitch: int, t_on: float) -> float:
    """The power of ``pitch``'s partials (k = 1..8 under the band's top) of the strike
    whose onset is ``t_on`` (audio s): each partial demodulated through a Hann window of
    COMPACT_PERIODS periods of f0 (at least COMPACT_MIN_S), its power's mean over the
    windows starting COMPACT_START_S after ``t_on`` whose centres span COMPACT_SPAN_S,
    less its background (the median over the windows of the COMPACT_PRE_S ending 1 ms
    before ``t_on``), summed over the partials (at the detector's gain; nan where the
    audio does not reach)."""
    sr = det.sr
    f0 = f0_hz(pitch)
    n = max(int(round(COMPACT_PERIODS * sr / f0)), int(COMPACT_MIN_S * sr))
    w = np.hanning(n + 2)[1:-1]
    w *= 2.0 / float(np.sum(w))  # a partial of amplitude a reads |z| = a
    on = int(round(t_on * sr))
    ms = sr // 1000
    step = max(1, ms // 4)
    starts = np.concatenate([
        np.arange(on - ms - n - int(COMPACT_PRE_S * sr), on - ms - n + 1, step),  # the background's
        np.arange(on + int(COMPACT_START_S * sr), on + int(COMPACT_START_S * sr) + int(COMPACT_SPAN_S * sr) + 1, step),
    ])
    n_pre = len(starts) - len(np.arange(0, int(COMPACT_SPAN_S * sr) + 1, step))
    if starts[0] < 0 or starts[-1] + n > len(det.y):
        return math.nan
    idx = starts[:, None] + np.arange(n)[None, :]  # (windows, n)
    seg = det.y[idx] * w[None, :]
    total = 0.0
    for k in range(1, 9):
        if k * f0 > band_hi_hz(f0, sr):
            break
        fk = k * f0 * (1 + STRETCH * k * k / 2)
        ph = 2.0 * np.pi * fk / sr * np.arange(n)
        # |seg . e^{-i ph}|^2 as two real products (a real matrix times a complex vector
        # takes numpy's slow mixed-type path: 35 ms against 0.1 ms a partial)
        p = (seg @ np.cos(ph)) ** 2 + (seg @ np.sin(ph)) ** 2
        # each window's phase from its own first sample: |z| does not depend on it
        total += float(np.mean(p[n_pre:])) - float(np.median(p[:n_pre]))
    return total


def _attack_segment(det: Detector, pitch: int, t_s: float, after_s: float = 0.0) -> tuple[int, np.ndarray, np.ndarray, float, float]:
    """The audio around a strike of ``pitch`` near ``t_s`` that its attack and loudness
    are read on (60 ms and a period of f0 either side, ``after_s`` more after): (first
    sample, samples, their FFT frequencies, the period s, the band's top Hz)."""
    sr = det.sr
    f0 = f0_hz(pitch)
    period = 1.0 / f0
    half_w = 0.06 + period
    s0 = max(0, int((t_s - half_w) * sr))
    seg = det.y[s0 : min(len(det.y), int((t_s + half_w + after_s) * sr))]
    return s0, seg, np.fft.fftfreq(len(seg), 1.0 / sr), period, band_hi_hz(f0, sr)


def _partial_windows(
    det: Detector, pitch: int, t_half: float, comb: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """Each partial's power less its background (the median over 20 ms before) over the
    comb loudness' window (from 3 ms after the half-energy time ``t_half``, a period of
    f0 or 10 ms long) and over the decay's (:data:`DECAY_WINDOW_S` after ``t_half``),
    and that background: three (K,), partials 1..K under the band's top (the decay
    window's nan where the audio ends before it); and the whole comb's power (all the
    partials' bands as one, :func:`_comb`) over the loudness window less its background
    (nan with ``comb`` False: not computed, one inverse FFT fewer); None where the audio
    ends before the loudness window."""
    sr = det.sr
    f0 = f0_hz(pitch)
    s0, seg, freqs, period, f_hi = _attack_segment(det, pitch, t_half, DECAY_WINDOW_S[1])
    n = len(seg)
    seg_f = np.fft.fft(seg) * np.where(freqs > 0, 2.0, 0.0)
    w = max(1, int(round(period * sr)))
    ms = int(0.001 * sr)
    x = int((t_half - s0 / sr) * sr)
    k0 = x + 3 * ms
    k1 = k0 + max(w, int(0.010 * sr))
    d0, d1 = x + int(DECAY_WINDOW_S[0] * sr), x + int(DECAY_WINDOW_S[1] * sr)
    if n < 2 or k0 <= 0 or k1 > n:
        return None
    whole = math.nan
    if comb:
        env = np.abs(np.fft.ifft(seg_f * _comb(freqs, f0, f_hi))) ** 2
        pre = env[max(0, x - w // 2 - 20 * ms) : max(1, x - w // 2 - ms)]
        whole = float(np.mean(env[k0:k1])) - (float(np.median(pre)) if len(pre) else 0.0)
    pw, pd, bg = [], [], []
    for k in range(1, 9):
        if k * f0 > f_hi:
            break
        env = np.abs(np.fft.ifft(seg_f * _partial_band(freqs, k * f0, k))) ** 2
        pre = env[max(0, x - w // 2 - 20 * ms) : max(1, x - w // 2 - ms)]
        b = float(np.median(pre)) if len(pre) else 0.0
        pw.append(float(np.mean(env[k0:k1])) - b)
        pd.append(float(np.mean(env[d0:d1])) - b if d1 <= n else math.nan)  # nan: the audio ends first
        bg.append(b)
    return np.array(pw), np.array(pd), np.array(bg), whole


@dataclass(frozen=True, slots=True)
class PartialsReference:
    """The reference tone's partials (:func:`energy_response`'s tone: the level law's at
    velocity 64, a :data:`REFERENCE_DECAY_S` decay) as :func:`_partial_windows` reads
    them at its energy fit's onset: the loudness window's power, the decay window's, and
    each window's effective time after the tone's onset (s: where a decay of the
    partial's power reads as at one instant), all (K,); ``half_s``: its half-energy time
    after its onset; ``comb``: the whole comb's power over the loudness window;
    ``band_sums``, ``comb_t_eff``: the partials' bands' powers summed over each window
    (:func:`_band_sums`) and those sums' effective times, (2,); ``compact``,
    ``compact_t_eff``: :func:`_compact_power` from its onset and that read's effective
    time."""

    power: np.ndarray
    power_decay: np.ndarray
    t_eff: np.ndarray
    t_eff_decay: np.ndarray
    half_s: float
    comb: float
    band_sums: np.ndarray
    comb_t_eff: np.ndarray
    compact: float
    compact_t_eff: float


def _band_sums(power: np.ndarray, power_decay: np.ndarray) -> np.ndarray:
    """(2,) the partials' bands' powers (:func:`_partial_windows`' first two) summed over
    the loudness and the decay window (nan where the audio ends before the decay one)."""
    return np.array([float(np.sum(power)), float(np.sum(power_decay))])


def _partials_reference(pitch: int, sample_rate: int) -> PartialsReference:
    key = (pitch, sample_rate)
    if key not in _PARTIALS_REF:
        y = _reference_tone(pitch, sample_rate)
        det = Detector(y, sample_rate, gain_db=0.0)
        t_fit, _ = det.y_onset(pitch, det.y_onset(pitch, 0.2)[0])
        t_half, _ = det._attack(pitch, t_fit)
        got = _partial_windows(det, pitch, t_half)
        # the same tone with its decay undone: a window's power over the decaying one's
        # is exp(2 t_eff / REFERENCE_DECAY_S), t_eff the window's effective time
        t = np.maximum(np.arange(len(y)) / sample_rate - 0.2, 0.0)
        det_flat = Detector(y * np.exp(t / REFERENCE_DECAY_S), sample_rate, gain_db=0.0)
        flat = _partial_windows(det_flat, pitch, t_half)
        assert got is not None and flat is not None, f"the reference tone of key {pitch} is too short"
        # from the tone's own onset, as a strike's from its onset (every key: the rule's
        # reach, compact_key, is read when a strike is)
        compact = _compact_power(det, pitch, 0.2)
        compact_t_eff = 0.5 * REFERENCE_DECAY_S * math.log(_compact_power(det_flat, pitch, 0.2) / compact)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_eff = 0.5 * REFERENCE_DECAY_S * np.log(flat[0] / got[0])
            t_eff_decay = 0.5 * REFERENCE_DECAY_S * np.log(flat[1] / got[1])
            sums, flat_sums = _band_sums(got[0], got[1]), _band_sums(flat[0], flat[1])
            comb_t_eff = 0.5 * REFERENCE_DECAY_S * np.log(flat_sums / sums)
        _PARTIALS_REF[key] = PartialsReference(got[0], got[1], t_eff, t_eff_decay, t_half - 0.2, got[3], sums, comb_t_eff,
                                               compact, compact_t_eff)  # fmt: skip
    return _PARTIALS_REF[key]


@dataclass(frozen=True, slots=True)
class PartialsRead:
    """One strike's partials against the reference tone's (:func:`partials_read`), all
    (K,): the log of heard over reference power in the loudness window (at the
    detector's gain), whether it says anything (over PARTIAL_MIN_SNR x its background),
    the loudness window's effective time after the strike's onset (s), and each
    partial's decay rate (1/s, of its amplitude) as this strike showed it (nan where its
    decay window is under DECAY_MIN_SNR x its background); and the same three of the
    whole comb (all its partials as one band: the power sum, what a velocity means on
    any spectrum, :func:`power_velocity`): the log of its power over the reference's
    (nan where it heard none), the loudness window's effective time, its decay rate."""

    pitch: int
    log_ratio: np.ndarray
    sure: np.ndarray
    t_eff: np.ndarray
    rate: np.ndarray
    comb_ratio: float
    comb_t_eff: float
    comb_rate: float


def partials_read(det: Detector, pitch: int, t_s: float, comb: bool = True) -> PartialsRead | None:
    """What the partials of the strike of ``pitch`` whose onset is ``t_s`` (audio s) say
    of its loudness and decay (:class:`PartialsRead`), read over windows as far after
    ``t_s`` as the reference tone's after its onset (a half-energy time farther than
    ONSET_TRUST_S from theirs moves them on); None where the audio ends first. ``comb``
    False: the whole comb's power is not read (``comb_ratio`` nan: no
    :func:`power_velocity`; one inverse FFT fewer, for :func:`read_velocity` alone)."""
    ref = _partials_reference(pitch, det.sr)
    t_half, _ = det._attack(pitch, t_s)
    # the windows as far after the onset as the reference tone's (its half-energy time
    # after its onset): the strike's own half-energy time sits up to 2.5 ms off that by
    # the spectrum (A0 +2.5 ms, A4 -1.5 ms at velocity 96), and a window on the bands'
    # rise reads ~2 % a ms; farther off than ONSET_TRUST_S, the onset is doubted
    t_half -= float(np.clip(t_half - (t_s + ref.half_s), -ONSET_TRUST_S, ONSET_TRUST_S))
    compact = comb and compact_key(pitch)
    got = _partial_windows(det, pitch, t_half, comb and not compact)
    if got is None or len(got[0]) != len(ref.power) or len(ref.power) < 2:
        return None
    heard, heard_d, bg = (a / det.gain**2 for a in got[:3])
    # a partial the reference tone barely has (the bass's top ones) has no effective time
    ok = (ref.power > 0.0) & (ref.t_eff >= 0.0) & (ref.t_eff <= T_EFF_MAX_S)
    sure = (heard > PARTIAL_MIN_SNR * bg) & ok
    ratio = np.log(np.where(sure, heard, 1.0) / np.where(ok, ref.power, 1.0))
    # the heard windows sit this much later after the strike's onset than the reference's
    late = (t_half - t_s) - ref.half_s
    t_eff, t_eff_d = ref.t_eff + late, ref.t_eff_decay + late
    with np.errstate(invalid="ignore"):
        decays = sure & (heard_d > DECAY_MIN_SNR * bg) & (ref.power_decay > 0.0) & (t_eff_d > t_eff + 1e-3)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_d = np.log(np.where(decays, heard_d, 1.0) / np.where(decays, ref.power_decay, 1.0))
        rate = np.where(decays, 1.0 / REFERENCE_DECAY_S + (ratio - ratio_d) / (2.0 * (t_eff_d - t_eff)), np.nan)
    whole, ref_whole = got[3] / det.gain**2, ref.comb  # nan where not read
    comb_t, comb_td = ref.comb_t_eff + late
    whole_t = comb_t
    if compact:
        # through short windows from the onset the loudness windows were placed from
        # (the strike's half-energy time less the reference tone's, within ONSET_TRUST_S)
        whole, ref_whole = _compact_power(det, pitch, t_half - ref.half_s) / det.gain**2, ref.compact
        whole_t = ref.compact_t_eff + late
    comb_ratio, comb_rate = math.nan, math.nan
    sums = _band_sums(heard, heard_d)
    if whole > 0.0 and ref_whole > 0.0:
        comb_ratio = math.log(whole / ref_whole)
    with np.errstate(invalid="ignore"):
        rated = bool(np.all(sums > 0.0) and sums[1] > DECAY_MIN_SNR * float(np.sum(bg)) and np.all(ref.band_sums > 0.0)
                     and comb_td > comb_t + 1e-3)  # fmt: skip
    if rated:
        # the power sum's decay from the partials' bands summed (each band holds one
        # partial, whose power does not pulse; the whole comb's does, once a period of f0)
        log_ratio = np.log(sums / ref.band_sums)
        comb_rate = 1.0 / REFERENCE_DECAY_S + float(log_ratio[0] - log_ratio[1]) / (2.0 * (comb_td - comb_t))
    return PartialsRead(pitch, ratio, sure, t_eff, rate, comb_ratio, float(whole_t), comb_rate)


def pooled_rates(reads: Sequence[PartialsRead]) -> np.ndarray:
    """One key's partials' decay rates (1/s, (K,)) over ``reads`` of its strikes: the
    median of each partial's over the strikes that showed it (through a room one strike's
    scatters by several 1/s: the reverb builds up under it), nan where none did."""
    if not reads:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (a partial no strike showed: nan)
        return np.nanmedian(np.array([r.rate for r in reads]), axis=0)


def read_velocity(read: PartialsRead, rates: np.ndarray | None = None) -> float | None:
    """The loudness (MIDI velocity at the detector's gain) of the strike ``read``: each
    partial's power taken back to the onset with its decay rate (``rates`` (K,), 1/s, a
    key's :func:`pooled_rates`; None: the strike's own; a partial without one: the mean
    of those with one, clipped to DECAY_RATE_RANGE), then the velocity whose level-law
    partials, against the reference tone's, best match them (the mean of the log
    ratios over one set of partials, whatever velocity is tried): each usable partial
    weighs alike, so the room's colour, independent from partial to partial, averages
    out (the power sum keeps the fundamental's). None where fewer than two partials can
    say it."""
    ratio = read.log_ratio + _decay_back(read, rates, "read_velocity")
    ks = np.arange(1, len(ratio) + 1, dtype=np.float64)
    a64 = partial_amplitudes(64.0, ks)
    # the partials that say it: heard, and carrying PARTIAL_MIN_SHARE of the reference
    # tone's power (the law at velocity 64), one set whatever velocity is tried: a set
    # that changed with it (the law's share at each v) made the log-mean jump where a
    # partial unlike the law's came in (the rich voice's A0: +15 % at velocity 15, +31 %
    # at 40, +23 % at 120 over its power sum), which no line in loudness
    # (listening.spectrum_offsets) follows
    ok = read.sure & (a64 * a64 >= PARTIAL_MIN_SHARE * float(np.sum(a64 * a64)))
    if int(ok.sum()) < 2:
        return None
    heard = ratio[ok]

    def above(v: float) -> bool:  # heard over the law at v, the partials' log-mean
        a = partial_amplitudes(v, ks[ok])
        return float(np.mean(heard - 2.0 * np.log(a / a64[ok]))) > 0.0

    return _bisect_velocity(above)


def _bisect_velocity(above: Callable[[float], bool]) -> float:
    """The velocity at which the level law meets what was heard, by bisection in log over
    0.5..VELOCITY_MAX (the top of the law's scale; the law grows with velocity):
    ``above(v)`` says whether what was heard is above the law at ``v``."""
    lo, hi = 0.5, VELOCITY_MAX
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if above(mid) else (lo, mid)
    return math.sqrt(lo * hi)


def _decay_back(read: PartialsRead, rates: np.ndarray | None, where: str) -> np.ndarray:
    """(K,) the log of what takes each partial's power in ``read``'s loudness window back
    to the onset, against the reference tone's: with its decay rate (``rates``, a key's
    :func:`pooled_rates`; None: the strike's own; a partial without one: the mean of
    those with one, clipped to DECAY_RATE_RANGE); zeros where no partial has one."""
    r = read.rate if rates is None else rates
    if len(r) != len(read.log_ratio):
        raise ValueError(f"{where}: key {read.pitch}: {len(r)} decay rates for {len(read.log_ratio)} partials")
    known = np.isfinite(r)
    if not known.any():
        return np.zeros(len(r))
    r = np.clip(np.where(known, r, float(np.mean(r[known]))), *DECAY_RATE_RANGE)
    return 2.0 * (r - 1.0 / REFERENCE_DECAY_S) * read.t_eff


def pooled_comb_rate(reads: Sequence[PartialsRead]) -> float:
    """One key's power sum's decay rate (1/s) over ``reads`` of its strikes: the median of
    those that showed one (:func:`pooled_rates`' reason), nan where none did."""
    r = [x.comb_rate for x in reads if math.isfinite(x.comb_rate)]
    return float(np.median(r)) if r else math.nan


def power_velocity(read: PartialsRead, rate: float | None = None) -> float | None:
    """The loudness (MIDI velocity at the detector's gain) of the strike ``read`` from
    its power sum: the whole comb's power over the reference tone's, taken back to the
    onset with its decay rate (``rate``, 1/s: a key's :func:`pooled_comb_rate`; None or
    nan: the strike's own; neither: none taken out; clipped to DECAY_RATE_RANGE), then
    the velocity whose level-law partials under the band's top carry it. What a velocity
    means on any spectrum (the level law's onset power: a weak fundamental or a partial
    the law over-predicts counts for what it carries), but a room's colour on the
    strongest partial stays in it (:func:`read_velocity` weighs the partials alike).
    None where nothing was heard."""
    if not math.isfinite(read.comb_ratio):
        return None
    r = rate if rate is not None and math.isfinite(rate) else read.comb_rate
    back = 2.0 * (float(np.clip(r, *DECAY_RATE_RANGE)) - 1.0 / REFERENCE_DECAY_S) * read.comb_t_eff if math.isfinite(r) else 0.0
    ks = np.arange(1, len(read.log_ratio) + 1, dtype=np.float64)
    a64 = partial_amplitudes(64.0, ks)
    heard = math.exp(read.comb_ratio + back) * float(np.sum(a64 * a64))  # the law's onset power (x2) heard

    def above(v: float) -> bool:
        a = partial_amplitudes(v, ks)
        return float(np.sum(a * a)) < heard

    return _bisect_velocity(above)


def partials_velocity(det: Detector, pitch: int, t_s: float) -> float | None:
    """The loudness (MIDI velocity at the detector's gain, ``det``'s ``gain_db``) of the
    strike of ``pitch`` whose onset is ``t_s`` (audio s), taken back to the onset with
    the decay this strike showed (:func:`partials_read`, :func:`read_velocity`; the
    calibration pools a key's strikes' decays: calibrator/listening.py). None where
    fewer than two partials can say it (the caller keeps the comb's loudness)."""
    read = partials_read(det, pitch, t_s, comb=False)
    return None if read is None else read_velocity(read)
