"""MIDI files in and out (through mido), score statistics and the bundled pieces.

Reading rules (:func:`read_midi`):

- **Time.** Type 0 and 1 files share one timeline: every ``set_tempo`` in any track
  builds one tempo map (the default 500000 µs/beat until the first). Two tempo
  changes at the same tick: the later one (track order, then event order) wins.
  Type 2 files hold independent sequences: each track runs on its own timeline from
  0 with its own tempo events; selected tracks are laid over each other from 0 (a
  warning is logged when more than one holds notes), and the score keeps a tempo map
  only when exactly one track is read. SMPTE-timed files (negative division) run at
  ``1e6 / (fps * ticks_per_frame)`` µs per tick and keep no tempo map. Tick to µs
  conversion is exact integer arithmetic, rounded to the nearest µs.
- **Notes.** ``note_on`` with velocity 0 is a ``note_off``. Notes are matched per
  (track, channel, pitch), taking the note events of one tick together, so that
  their order within the tick does not matter. First the tick's ``note_off`` events close
  notes begun earlier, oldest first: offs still owed by re-struck notes, then the
  sounding note. Then its ``note_on`` events start notes: a ``note_on`` on a pitch still
  sounding ends that note there (a re-strike; the old note's own off is then owed);
  a second ``note_on`` at the same tick merges into the first (a unison doubling:
  one note, the louder velocity, ending at the later off). Then any ``note_off`` events
  left close the notes begun at this tick: zero-length notes, kept with a length of
  one tick. A ``note_off`` with nothing to close is ignored (counted in the log).
  Notes still sounding at the end of their track end at the track's last tick.
  Every note read lasts at least 1 µs.
- **Pedal.** Sustain pedal (CC64) values are kept as they are (half pedal too), but
  only changes: a value equal to the previous one on its channel (the first compared
  with 0, pedal up) is dropped.
- **Selection.** ``tracks`` (MTrk chunk indexes from 0) and ``channels`` (0..15)
  filter notes and pedal; tempo events are read from every track whatever the
  selection. The drum channel (9, zero-based) is left out unless ``include_drums``
  is true or ``channels`` names it.
- **Faults.** Before mido decodes anything, the file's chunks and every event are
  walked here, bounded by their chunk, so that a fault is reported as a
  :class:`~robo_player.errors.MidiFileError` naming the file and the byte offset of
  the broken event (or chunk): empty file, not a MIDI file, truncated header, chunk
  or event, data byte above 127, running status with none in effect, undefined
  status byte, a bad tempo event, fewer track chunks than the header declares.
  Alien (non-MTrk) chunks are skipped. A file without notes is *not* an error here
  (``inspect`` may read it); :func:`require_notes` makes it one for playing.

Writing (:func:`write_midi`) makes a type 1 file, one MTrk per ``Note.track`` (so
track numbers survive a round trip), tempo and pedal events in track 0. The score's
tempo map is written when it is consistent (ticks increasing, ``t_us`` matching
the ticks); otherwise, or when it is empty, one tempo of 500000 µs/beat. The file is
written to a temporary file beside the target and renamed over it.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from .errors import MidiFileError, UsageError
from .fileio import atomic_open
from .pitch import pitch_name  # noqa: F401 - re-exported: midi.pitch_name
from .score import DRUM_CHANNEL, Note, PedalEvent, Score, TempoChange

log = logging.getLogger(__name__)

DEFAULT_US_PER_BEAT = 500_000  # MIDI's default tempo, 120 beats per minute
SUSTAIN_CC = 64
MAX_TICKS_PER_BEAT = 0x7FFF
MAX_US_PER_BEAT = 0xFFFFFF  # set_tempo holds 3 bytes
_MAX_EVENT_DATA = 1_000_000  # mido refuses meta/sysex data longer than this

PIECES_DIR = Path(__file__).resolve().parent / "data" / "pieces"
DEFAULT_PIECE = "maple_leaf_rag"  # the demo piece: Joplin's Maple Leaf Rag, for piano

_CHANNEL_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
# System common / real-time messages mido accepts inside a track, with their data bytes.
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0,
                      0xFC: 0, 0xFE: 0}
_SMPTE_FPS = {24: (24, 1), 25: (25, 1), 29: (30000, 1001), 30: (30, 1)}  # (num, den)


# --------------------------------------------------------------------------- time


class _Clock:
    """File ticks <-> µs through a tempo map, in exact integer arithmetic.

    ``changes`` is [(tick, us_per_beat)], ticks strictly increasing, the first at 0.
    ``_num[i]`` is the time of change i in µs times ``ticks_per_beat`` (exact).
    """

    def __init__(self, changes: list[tuple[int, int]], ticks_per_beat: int):
        self.tpb = ticks_per_beat
        self.ticks = [c[0] for c in changes]
        self.upb = [c[1] for c in changes]
        self._num = [0]
        for i in range(1, len(changes)):
            self._num.append(self._num[-1] + (self.ticks[i] - self.ticks[i - 1]) * self.upb[i - 1])

    def us(self, tick: int) -> int:
        i = bisect.bisect_right(self.ticks, tick) - 1
        x = self._num[i] + (tick - self.ticks[i]) * self.upb[i]
        return (2 * x + self.tpb) // (2 * self.tpb)

    def tick(self, t_us: int) -> int:
        x = t_us * self.tpb
        i = max(bisect.bisect_right(self._num, x) - 1, 0)
        return self.ticks[i] + (2 * (x - self._num[i]) + self.upb[i]) // (2 * self.upb[i])

    def tempo_map(self) -> list[TempoChange]:
        return [TempoChange(tick=t, t_us=self.us(t), us_per_beat=u)
                for t, u in zip(self.ticks, self.upb, strict=True)]


def _clock_from(changes: Iterable[tuple[int, int]], tpb: int) -> _Clock:
    """A clock from (tick, us_per_beat) in file order; the last change at a tick wins."""
    at: dict[int, int] = {}
    for tick, upb in changes:
        at[tick] = upb
    if 0 not in at:
        at[0] = DEFAULT_US_PER_BEAT
    return _Clock(sorted(at.items()), tpb)


# ----------------------------------------------------------------- fault finding


@dataclass(frozen=True, slots=True)
class _TrackChunk:
    index: int  # MTrk chunks counted from 0
    offset: int  # byte offset of the chunk header
    end: int  # one past the chunk's last byte


@dataclass(frozen=True, slots=True)
class _Layout:
    fmt: int
    division: int
    tracks: list[_TrackChunk]


def _fault(where: str, offset: int, what: str) -> MidiFileError:
    return MidiFileError(f"{where}: byte {offset}: {what}", path=where, offset=offset)


def _scan(data: bytes, where: str) -> _Layout:
    """Walk the header, the chunks and every track event; raise at the first fault."""
    n = len(data)
    if n == 0:
        raise _fault(where, 0, "empty file (0 bytes); a MIDI file starts with b'MThd'")
    if data[:4] != b"MThd":
        raise _fault(where, 0, f"not a MIDI file: starts with {data[:4]!r}, expected b'MThd'")
    if n < 14:
        raise _fault(where, n, f"truncated header: the file has {n} bytes, a header needs 14")
    hlen = int.from_bytes(data[4:8], "big")
    if hlen < 6:
        raise _fault(where, 4, f"header length {hlen}, allowed 6 or more")
    fmt, ntracks, division = struct.unpack(">HHH", data[8:14])
    if fmt > 2:
        raise _fault(where, 8, f"MIDI format {fmt}, allowed 0..2")
    if ntracks == 0:
        raise _fault(where, 10, "the header declares 0 tracks, allowed 1..65535")
    if division == 0:
        raise _fault(where, 12, "0 ticks per beat, allowed 1..32767")
    if division & 0x8000:
        fps = 256 - (division >> 8)
        if fps not in _SMPTE_FPS or division & 0xFF == 0:
            raise _fault(where, 12, f"SMPTE division {fps} fps x {division & 0xFF} ticks/frame; "
                         "allowed 24, 25, 29 or 30 fps and 1..255 ticks/frame")
    pos = 8 + hlen
    if pos > n:
        raise _fault(where, n, f"truncated header: it declares {hlen} bytes, the file ends after "
                     f"{n - 8}")
    chunks: list[_TrackChunk] = []
    while pos < n:
        ctype = data[pos:pos + 4]
        if n - pos < 8 or not all(0x20 <= b < 0x7F for b in ctype):
            if len(chunks) >= ntracks:  # padding or junk after the last track
                log.warning("%s: %d bytes after the last track chunk ignored", where, n - pos)
                break
            if n - pos < 8:
                raise _fault(where, pos, f"truncated chunk header: {n - pos} bytes left, 8 needed")
            raise _fault(where, pos, f"expected a chunk header (b'MTrk'), found {ctype!r}")
        end = pos + 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
        if ctype == b"MTrk":
            chunks.append(_TrackChunk(len(chunks), pos, end))
            _scan_track(data, chunks[-1], where)
        elif end > n and len(chunks) >= ntracks:
            log.warning("%s: byte %d: truncated %r chunk after the last track ignored", where,
                        pos, ctype)
            break
        elif end > n:
            raise _fault(where, pos, f"truncated {ctype!r} chunk: it declares {end - pos - 8} "
                         f"bytes, the file holds {n - pos - 8}")
        else:
            log.debug("%s: byte %d: skipped %r chunk", where, pos, ctype)
        pos = end
    if len(chunks) < ntracks:
        raise _fault(where, n, f"the file ends after {len(chunks)} of the {ntracks} track "
                     "chunks its header declares (truncated file?)")
    if len(chunks) > ntracks:
        log.warning("%s: the header declares %d tracks, the file holds %d; all are read",
                    where, ntracks, len(chunks))
    if fmt == 0 and len(chunks) > 1:
        log.warning("%s: type 0 file with %d tracks, read as type 1", where, len(chunks))
    return _Layout(fmt=fmt, division=division, tracks=chunks)


def _scan_track(data: bytes, chunk: _TrackChunk, where: str) -> None:
    """Walk one track chunk's events, each bounded by the chunk and by the file."""
    n = len(data)
    limit = min(chunk.end, n)
    declared = chunk.end - chunk.offset - 8
    name = f"track {chunk.index} (chunk at byte {chunk.offset})"

    def cut(ev: int) -> MidiFileError:
        if chunk.end > n:
            return _fault(where, ev, f"{name} is truncated: it declares {declared} bytes, the "
                          f"file holds {n - chunk.offset - 8}; the event at byte {ev} is cut off")
        return _fault(where, ev, f"{name}: the event at byte {ev} runs past the end of the "
                      f"chunk (byte {chunk.end})")

    def vlq(p: int, ev: int, what: str) -> tuple[int, int]:
        value = 0
        for _ in range(4):
            if p >= limit:
                raise cut(ev)
            b = data[p]
            p += 1
            value = (value << 7) | (b & 0x7F)
            if b < 0x80:
                return value, p
        raise _fault(where, p - 4, f"{name}: {what} is longer than 4 bytes (bad variable-length "
                     "number)")

    pos = chunk.offset + 8
    running: int | None = None
    while pos < limit:
        ev = pos
        _, pos = vlq(pos, ev, "delta time")
        if pos >= limit:
            raise cut(ev)
        status = data[pos]
        if status < 0x80:
            if running is None:
                raise _fault(where, pos, f"{name}: data byte 0x{status:02X} where a status byte "
                             "is needed and no running status is in effect (bad running status)")
            status = running
        else:
            pos += 1
        if status == 0xFF:
            if pos >= limit:
                raise cut(ev)
            meta = data[pos]
            length, pos = vlq(pos + 1, ev, "meta event length")
            if meta == 0x51:
                if length != 3:
                    raise _fault(where, ev, f"{name}: set_tempo event with {length} data bytes, "
                                 "3 required")
                if pos + 3 <= limit and int.from_bytes(data[pos:pos + 3], "big") == 0:
                    raise _fault(where, ev, f"{name}: set_tempo of 0 µs per beat, allowed "
                                 f"1..{MAX_US_PER_BEAT}")
        elif status in (0xF0, 0xF7):
            length, pos = vlq(pos, ev, "sysex length")
            running = None
        elif status > 0xF0:
            if status not in _SYSTEM_DATA_BYTES:
                raise _fault(where, ev, f"{name}: undefined status byte 0x{status:02X}")
            length = _SYSTEM_DATA_BYTES[status]
            running = None
        else:
            length = _CHANNEL_DATA_BYTES[status & 0xF0]
            running = status
        if length > _MAX_EVENT_DATA:
            raise _fault(where, ev, f"{name}: event of {length} data bytes, allowed up to "
                         f"{_MAX_EVENT_DATA}")
        if pos + length > limit:
            raise cut(ev)
        if status < 0xF0 or status in _SYSTEM_DATA_BYTES:
            for p in range(pos, pos + length):
                if data[p] >= 0x80:
                    raise _fault(where, p, f"{name}: data byte 0x{data[p]:02X} in the event at "
                                 f"byte {ev} (status 0x{status:02X}), allowed 0x00..0x7F")
        pos += length
    if chunk.end > n:
        raise _fault(where, n, f"{name} is truncated: it declares {declared} bytes, the file "
                     f"holds {n - chunk.offset - 8}")


def _decode(data: bytes, layout: _Layout, where: str) -> list[mido.MidiTrack]:
    """mido messages of each track chunk, each decoded alone so a fault stays local."""
    tracks: list[mido.MidiTrack] = []
    header = b"MThd" + struct.pack(">LHHH", 6, 0, 1, layout.division)
    for chunk in layout.tracks:
        stream = io.BytesIO(header + data[chunk.offset:chunk.end])
        try:
            tracks.append(mido.MidiFile(file=stream).tracks[0])
        # mido raises many kinds (OSError, EOFError, KeyError, ValueError, its own
        # KeySignatureError...) on data it cannot decode; all mean a malformed file.
        except Exception as err:
            at = chunk.offset + max(stream.tell() - 14, 0)
            raise _fault(where, at, f"track {chunk.index} (chunk at byte {chunk.offset}): mido "
                         f"cannot decode the event ending near byte {at}: "
                         f"{type(err).__name__}: {err}") from err
    return tracks


# ----------------------------------------------------------------------- reading


@dataclass(slots=True)
class _Key:
    """One (track, channel, pitch) while reading: its sounding note and owed offs."""

    onset_tick: int = -1  # -1: not sounding
    velocity: int = 0
    owed_offs: int = 0  # note_offs still owed by notes already ended by a re-strike


def read_midi(path: str | os.PathLike[str], *, tracks: set[int] | None = None,
              channels: set[int] | None = None, include_drums: bool = False) -> Score:
    """Read a Standard MIDI File into a :class:`Score` (rules in the module docstring).

    Raises :class:`MidiFileError` (with ``path`` and ``offset``) for a file that cannot
    be read or is malformed, and :class:`UsageError` for a ``tracks`` or ``channels``
    value out of range.
    """
    where = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise MidiFileError(f"{where}: cannot read: {err.strerror or err}", path=where) from err
    layout = _scan(data, where)
    mtracks = _decode(data, layout, where)
    ntracks = len(mtracks)
    if tracks is not None:
        bad = sorted(t for t in tracks if not 0 <= t < ntracks)
        if bad:
            raise UsageError(f"{where}: tracks {bad}: the file has {ntracks} tracks, allowed "
                             f"0..{ntracks - 1}")
    if channels is not None:
        bad = sorted(c for c in channels if not 0 <= c <= 15)
        if bad:
            raise UsageError(f"{where}: channels {bad}: allowed 0..15 (zero-based)")
    wanted = [channels is None or c in channels for c in range(16)]
    if channels is None and not include_drums:
        wanted[DRUM_CHANNEL] = False

    tpb = 480
    tempo_map: list[TempoChange] = []
    clocks: list[_Clock]
    if layout.division & 0x8000:
        fps_num, fps_den = _SMPTE_FPS[256 - (layout.division >> 8)]
        # µs per tick = 1e6 * den / (num * ticks_per_frame): one segment, no tempo.
        smpte = _Clock([(0, 1_000_000 * fps_den)], fps_num * (layout.division & 0xFF))
        clocks = [smpte] * ntracks
    else:
        tpb = layout.division
        if layout.fmt == 2:
            clocks = [_clock_from(_tempi([t]), tpb) for t in mtracks]
        else:
            clocks = [_clock_from(_tempi(mtracks), tpb)] * ntracks
            tempo_map = clocks[0].tempo_map()

    notes: list[Note] = []
    pedal_raw: list[tuple[int, int, int, int, int]] = []  # (t_us, track, seq, channel, value)
    stats = {"restruck": 0, "doubled": 0, "stray_offs": 0, "zero_length": 0, "closed_at_end": 0, "drums": 0}
    with_notes: list[int] = []
    for index, track in enumerate(mtracks):
        if tracks is not None and index not in tracks:
            continue
        before = len(notes)
        _read_track(track, index, clocks[index], wanted, notes, pedal_raw, stats)
        if len(notes) > before:
            with_notes.append(index)
    if layout.fmt == 2 and not layout.division & 0x8000:
        if len(with_notes) > 1:
            log.warning("%s: type 2 file: tracks %s are independent sequences, laid over each "
                        "other from 0; choose one with tracks={i}", where, with_notes)
        selected = [i for i in range(ntracks) if tracks is None or i in tracks]
        if len(selected) == 1:
            tempo_map = clocks[selected[0]].tempo_map()
    pedal_raw.sort()
    pedal: list[PedalEvent] = []
    last = [0] * 16
    for t_us, _, _, channel, value in pedal_raw:
        if value != last[channel]:
            pedal.append(PedalEvent(t_us=t_us, value=value, channel=channel))
            last[channel] = value
    if any(stats.values()):
        log.info("%s: %d notes ended by a re-strike, %d unison doublings merged, %d note_off without a note, %d zero-length "
                 "notes given one tick, %d notes ended at their track's end, %d drum notes left "
                 "out", where, stats["restruck"], stats["doubled"], stats["stray_offs"], stats["zero_length"],
                 stats["closed_at_end"], stats["drums"])
    return Score(notes=notes, pedal=pedal, tempo_map=tempo_map, ticks_per_beat=tpb,
                 source=where)


def _tempi(tracks: list[mido.MidiTrack]) -> list[tuple[int, int]]:
    """(tick, us_per_beat) of every set_tempo, in (tick, track, event) order."""
    found: list[tuple[int, int, int, int]] = []
    for index, track in enumerate(tracks):
        tick = 0
        for seq, msg in enumerate(track):
            tick += msg.time
            if msg.type == "set_tempo":
                found.append((tick, index, seq, msg.tempo))
    found.sort()
    return [(tick, upb) for tick, _, _, upb in found]


def _read_track(track: mido.MidiTrack, index: int, clock: _Clock, wanted: list[bool],
                notes: list[Note], pedal_raw: list[tuple[int, int, int, int, int]],
                stats: dict[str, int]) -> None:
    keys: dict[tuple[int, int], _Key] = {}
    # Note events of the current tick per (channel, pitch): [velocities of ons, offs].
    pending: dict[tuple[int, int], tuple[list[int], list[int]]] = {}

    def emit(channel: int, pitch: int, key: _Key, off_tick: int) -> None:
        onset = clock.us(key.onset_tick)
        if off_tick == key.onset_tick:
            stats["zero_length"] += 1
            off_tick += 1  # a zero-length note lasts one tick
        duration = max(clock.us(off_tick) - onset, 1)
        notes.append(Note(pitch=pitch, onset_us=onset, duration_us=duration,
                          velocity=key.velocity, channel=channel, track=index))
        key.onset_tick = -1

    def close(channel: int, pitch: int, key: _Key, offs: int, tick: int) -> int:
        """Use ``offs`` note_offs at ``tick``: owed ones first, then the sounding note."""
        used = min(offs, key.owed_offs)
        key.owed_offs -= used
        offs -= used
        if offs and key.onset_tick >= 0:
            emit(channel, pitch, key, tick)
            offs -= 1
        return offs

    def flush(tick: int) -> None:
        for (channel, pitch), (ons, offs_box) in pending.items():
            key = keys.setdefault((channel, pitch), _Key())
            offs = close(channel, pitch, key, offs_box[0], tick)  # notes begun before tick
            for velocity in ons:
                if key.onset_tick == tick:  # unison doubling: one strike, the louder
                    stats["doubled"] += 1
                    key.velocity = max(key.velocity, velocity)
                    key.owed_offs += 1
                    continue
                if key.onset_tick >= 0:  # re-strike of a sounding pitch
                    stats["restruck"] += 1
                    emit(channel, pitch, key, tick)
                    key.owed_offs += 1
                key.onset_tick = tick
                key.velocity = velocity
            if offs:  # notes begun at this tick: zero length, whatever the event order
                offs = close(channel, pitch, key, offs, tick)
            stats["stray_offs"] += offs
        pending.clear()

    tick = 0
    for seq, msg in enumerate(track):
        if msg.time:
            if pending:
                flush(tick)
            tick += msg.time
        kind = msg.type
        if kind == "note_on" or kind == "note_off":
            if not wanted[msg.channel]:
                if msg.channel == DRUM_CHANNEL and kind == "note_on" and msg.velocity:
                    stats["drums"] += 1
                continue
            ons, offs_box = pending.setdefault((msg.channel, msg.note), ([], [0]))
            if kind == "note_on" and msg.velocity > 0:
                ons.append(msg.velocity)
            else:
                offs_box[0] += 1
        elif kind == "control_change" and msg.control == SUSTAIN_CC and wanted[msg.channel]:
            pedal_raw.append((clock.us(tick), index, seq, msg.channel, msg.value))
    if pending:
        flush(tick)
    for (channel, pitch), key in keys.items():
        if key.onset_tick >= 0:
            stats["closed_at_end"] += 1
            emit(channel, pitch, key, tick)


def require_notes(score: Score, path: str | os.PathLike[str] | None = None) -> Score:
    """Return ``score`` if it has notes to play; else raise :class:`MidiFileError`."""
    if score.notes:
        return score
    where = os.fspath(path) if path is not None else (score.source or "<score>")
    raise MidiFileError(f"{where}: no notes to play (none on the selected tracks and channels; "
                        f"the drum channel, MIDI channel {DRUM_CHANNEL + 1}, is left out unless "
                        "asked for with --include-drums)",
                        path=where)


# ----------------------------------------------------------------------- writing


def _writer_clock(score: Score, tpb: int) -> _Clock:
    """The score's tempo map at ``tpb`` when it is consistent; else 500000 µs/beat."""
    tm = score.tempo_map
    if not tm:
        return _Clock([(0, DEFAULT_US_PER_BEAT)], tpb)
    problem = ""
    if score.ticks_per_beat <= 0:
        problem = f"ticks_per_beat {score.ticks_per_beat}"
    elif any(b.tick <= a.tick for a, b in zip(tm, tm[1:], strict=False)) or tm[0].tick < 0:
        problem = "ticks not strictly increasing from 0 or later"
    elif any(not 1 <= c.us_per_beat <= MAX_US_PER_BEAT for c in tm):
        problem = f"us_per_beat outside 1..{MAX_US_PER_BEAT}"
    else:
        own = _clock_from(((c.tick, c.us_per_beat) for c in tm), score.ticks_per_beat)
        if any(abs(own.us(c.tick) - c.t_us) > 1 for c in tm):
            problem = "t_us does not match the ticks and tempi"
    if problem:
        log.warning("%s: tempo map not written (%s); 500000 µs/beat used",
                    score.source or "<score>", problem)
        return _Clock([(0, DEFAULT_US_PER_BEAT)], tpb)
    stpb = score.ticks_per_beat
    scaled = (((c.tick * tpb * 2 + stpb) // (2 * stpb), c.us_per_beat) for c in tm)
    return _clock_from(scaled, tpb)


def _check_score(score: Score, where: str) -> None:
    for i, n in enumerate(score.notes):
        for field, value, lo, hi in (("pitch", n.pitch, 0, 127), ("velocity", n.velocity, 1, 127),
                                     ("channel", n.channel, 0, 15), ("track", n.track, 0, 65534),
                                     ("onset_us", n.onset_us, 0, None),
                                     ("duration_us", n.duration_us, 0, None)):
            if value < lo or (hi is not None and value > hi):
                allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise MidiFileError(f"{where}: notes[{i}].{field}: {value}, allowed {allowed}",
                                    path=where)
    for i, p in enumerate(score.pedal):
        for field, value, lo, hi in (("t_us", p.t_us, 0, None), ("value", p.value, 0, 127),
                                     ("channel", p.channel, 0, 15)):
            if value < lo or (hi is not None and value > hi):
                allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise MidiFileError(f"{where}: pedal[{i}].{field}: {value}, allowed {allowed}",
                                    path=where)


def write_midi(score: Score, path: str | os.PathLike[str], *, ticks_per_beat: int = 480) -> None:
    """Write ``score`` as a type 1 MIDI file, atomically (temporary file + rename).

    Times are rounded to the nearest tick, so reading the file back gives onsets,
    ends and pedal times within half a tick (+1 µs) of the score's, except that a note
    shorter than half a tick comes back one tick long; the rest of each note exactly.
    Same-key notes that overlap come back resolved by the reading rules.

    At the same tick, a track's events run: tempo, note_offs, pedal, then note_ons in
    score order, a note that rounds to zero ticks followed at once by its own off.
    """
    where = os.fspath(path)
    if not 1 <= ticks_per_beat <= MAX_TICKS_PER_BEAT:
        raise UsageError(f"{where}: ticks_per_beat {ticks_per_beat}, allowed "
                         f"1..{MAX_TICKS_PER_BEAT}")
    _check_score(score, where)
    clock = _writer_clock(score, ticks_per_beat)
    ntracks = max((n.track for n in score.notes), default=0) + 1
    # Per track: (tick, group, seq, message); group orders events at one tick.
    events: list[list[tuple[int, int, int, mido.Message | mido.MetaMessage]]] = [
        [] for _ in range(ntracks)]
    for i, (tick, upb) in enumerate(zip(clock.ticks, clock.upb, strict=True)):
        events[0].append((tick, 0, i, mido.MetaMessage("set_tempo", tempo=upb)))
    for i, p in enumerate(score.pedal):
        msg = mido.Message("control_change", channel=p.channel, control=SUSTAIN_CC, value=p.value)
        events[0].append((clock.tick(p.t_us), 2, i, msg))
    for i, n in enumerate(score.notes):
        on, off = clock.tick(n.onset_us), clock.tick(n.end_us)
        evs = events[n.track]
        evs.append((on, 3, 2 * i, mido.Message("note_on", channel=n.channel, note=n.pitch,
                                               velocity=n.velocity)))
        off_msg = mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)
        evs.append((off, 3, 2 * i + 1, off_msg) if off == on else (off, 1, i, off_msg))
    mf = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for evs in events:
        evs.sort(key=lambda e: (e[0], e[1], e[2]))
        track = mido.MidiTrack()
        last = 0
        for tick, _, _, msg in evs:
            track.append(msg.copy(time=tick - last))
            last = tick
        mf.tracks.append(track)
    _save_atomic(mf, Path(path))


def _save_atomic(mf: mido.MidiFile, path: Path) -> None:
    try:
        with atomic_open(path, "wb", mkdir=False) as fh:
            mf.save(file=fh)
    except OSError as err:
        raise MidiFileError(f"{path}: cannot write: {err.strerror or err}", path=str(path)) from err


# -------------------------------------------------------------------- statistics


def score_stats(score: Score) -> dict[str, object]:
    """Summary numbers for ``robo-player inspect``.

    Polyphony counts notes sounding at once (a note ending at t does not overlap one
    starting at t; zero-length notes count for 1 µs); the mean is weighted by time over
    the time at least one note sounds.
    """
    notes = score.notes
    count = len(notes)
    duration_s = score.end_us / 1e6
    stats: dict[str, object] = {
        "notes": count, "duration_s": duration_s,
        "notes_per_s": count / duration_s if duration_s > 0 else 0.0,
        "pitch_min": None, "pitch_max": None, "pitch_range": None,
        "velocity_min": None, "velocity_max": None, "velocity_mean": None,
        "max_polyphony": 0, "mean_polyphony": 0.0,
        # MIDI channels as people count them (1..16); the Score stores them 0-based
        "channels": sorted({n.channel + 1 for n in notes}),
        "tracks": sorted({n.track for n in notes}),
        "pedal_events": len(score.pedal),
        "tempo_changes": len(score.tempo_map),
    }
    if not count:
        return stats
    arr = np.array([(n.pitch, n.velocity, n.onset_us, n.duration_us) for n in notes],
                   dtype=np.int64)  # (N, 4)
    pitches, velocities, onsets = arr[:, 0], arr[:, 1], arr[:, 2]
    ends = onsets + np.maximum(arr[:, 3], 1)
    lo, hi = int(pitches.min()), int(pitches.max())
    times = np.concatenate([onsets, ends])
    steps = np.concatenate([np.ones(count, np.int64), -np.ones(count, np.int64)])
    order = np.lexsort((steps, times))  # by time, ends (-1) before starts at one time
    levels = np.cumsum(steps[order])
    spans = np.diff(times[order])
    sounding = spans[levels[:-1] > 0].sum()
    stats.update({
        "pitch_min": lo, "pitch_max": hi, "pitch_range": f"{pitch_name(lo)}..{pitch_name(hi)}",
        "velocity_min": int(velocities.min()), "velocity_max": int(velocities.max()),
        "velocity_mean": float(velocities.mean()),
        "max_polyphony": int(levels.max()),
        "mean_polyphony": float((levels[:-1] * spans).sum() / sounding) if sounding else 0.0,
    })
    return stats


# ---------------------------------------------------------------- bundled pieces


def bundled_pieces() -> list[Path]:
    """The MIDI files shipped in ``robo_player/data/pieces``, sorted by name."""
    return sorted(PIECES_DIR.glob("*.mid"))



def resolve_piece(song: str | Path) -> Path:
    """A MIDI path, or the name of a bundled piece (``default`` is :data:`DEFAULT_PIECE`).

    MidiFileError naming the argument and the bundled pieces when it is neither.
    """
    path = Path(song)
    if path.exists():
        return path
    bundled = {p.stem: p for p in bundled_pieces()}
    name = DEFAULT_PIECE if str(song) == "default" else str(song).removesuffix(".mid")
    if name in bundled:
        return bundled[name]
    known = ", ".join(sorted(bundled))
    raise MidiFileError(f"{song}: no such file (bundled pieces: {known})", path=str(song))

def bundled_piece(name: str) -> Path:
    """Path of the bundled piece ``name`` (``"maple_leaf_rag"`` or ``"maple_leaf_rag.mid"``)."""
    stem = name.removesuffix(".mid")
    path = PIECES_DIR / f"{stem}.mid"
    if stem and "/" not in stem and "\\" not in stem and path.is_file():
        return path
    names = ", ".join(p.stem for p in bundled_pieces()) or "none"
    raise UsageError(f"no bundled piece named {name!r}; bundled pieces: {names}")
