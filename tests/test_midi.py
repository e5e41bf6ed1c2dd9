"""MIDI in and out: reading rules, faults with offsets, round trips, stats, bundled pieces."""

from __future__ import annotations

import math
import os
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robo_player.errors import MidiFileError, UsageError
from robo_player.midi import (
    DEFAULT_PIECE,
    bundled_piece,
    bundled_pieces,
    pitch_name,
    read_midi,
    require_notes,
    score_stats,
    write_midi,
)
from robo_player.score import Note, PedalEvent, Score, TempoChange

US_PER_TICK = 500_000 / 480  # default tempo at 480 ticks per beat


def on(tick: int, pitch: int, velocity: int = 64, channel: int = 0) -> tuple[int, mido.Message]:
    return tick, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)


def off(tick: int, pitch: int, channel: int = 0, *, zero_on: bool = False
        ) -> tuple[int, mido.Message]:
    if zero_on:  # note_on with velocity 0 stands for note_off
        return tick, mido.Message("note_on", note=pitch, velocity=0, channel=channel)
    return tick, mido.Message("note_off", note=pitch, velocity=0, channel=channel)


def cc64(tick: int, value: int, channel: int = 0) -> tuple[int, mido.Message]:
    return tick, mido.Message("control_change", control=64, value=value, channel=channel)


def tempo(tick: int, us_per_beat: int) -> tuple[int, mido.MetaMessage]:
    return tick, mido.MetaMessage("set_tempo", tempo=us_per_beat)


def save(path: Path, tracks: list[list[tuple[int, mido.Message | mido.MetaMessage]]], *,
         kind: int = 1, tpb: int = 480) -> Path:
    """Write tracks given as (absolute tick, message); events at one tick keep their order."""
    mf = mido.MidiFile(type=kind, ticks_per_beat=tpb)
    for events in tracks:
        track = mido.MidiTrack()
        last = 0
        for tick, msg in sorted(events, key=lambda e: e[0]):
            track.append(msg.copy(time=tick - last))
            last = tick
        mf.tracks.append(track)
    mf.save(path)
    return path


def us(tick: int) -> int:
    return round(tick * US_PER_TICK)


def keyed(score: Score) -> list[tuple[int, int, int, int]]:
    return [(n.pitch, n.onset_us, n.end_us, n.velocity) for n in score.notes]


# ------------------------------------------------------------------ time and tempo


def test_tempo_changes_in_any_track_make_one_tempo_map(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [
        [tempo(0, 500_000)],
        [on(0, 60), off(480, 60), on(960, 62), off(1440, 62), on(1440, 64), off(1920, 64)],
        [tempo(960, 250_000), tempo(1440, 1_000_000)],  # tempo events outside track 0
    ])
    score = read_midi(path)
    assert keyed(score) == [(60, 0, 500_000, 64), (62, 1_000_000, 1_250_000, 64),
                            (64, 1_250_000, 2_250_000, 64)]
    assert score.tempo_map == [TempoChange(0, 0, 500_000), TempoChange(960, 1_000_000, 250_000),
                               TempoChange(1440, 1_250_000, 1_000_000)]
    assert score.ticks_per_beat == 480
    assert score.source == str(path)
    assert [n.track for n in score.notes] == [1, 1, 1]


def test_default_tempo_until_first_set_tempo_and_last_at_a_tick_wins(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [
        [tempo(480, 100_000), tempo(480, 1_000_000), on(480, 60), off(960, 60)],
    ], kind=0)
    score = read_midi(path)
    assert keyed(score) == [(60, 500_000, 1_500_000, 64)]
    assert score.tempo_map == [TempoChange(0, 0, 500_000), TempoChange(480, 500_000, 1_000_000)]


def test_type2_tracks_run_on_their_own_timelines(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [
        [tempo(0, 1_000_000), on(480, 60), off(960, 60)],
        [on(480, 72), off(960, 72)],  # default tempo: its own timeline, not track 0's
    ], kind=2)
    score = read_midi(path)
    assert keyed(score) == [(72, 500_000, 1_000_000, 64), (60, 1_000_000, 2_000_000, 64)]
    assert score.tempo_map == []  # two timelines: no single tempo map
    one = read_midi(path, tracks={0})
    assert keyed(one) == [(60, 1_000_000, 2_000_000, 64)]
    assert one.tempo_map == [TempoChange(0, 0, 1_000_000)]


def test_smpte_division_sets_microseconds_per_tick(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[tempo(0, 250_000), on(40, 60), off(1040, 60)]])
    data = bytearray(path.read_bytes())
    data[12:14] = bytes([256 - 25, 40])  # 25 fps x 40 ticks/frame = 1000 µs per tick
    path.write_bytes(bytes(data))
    score = read_midi(path)
    assert keyed(score) == [(60, 40_000, 1_040_000, 64)]  # set_tempo has no effect
    assert score.tempo_map == []


# --------------------------------------------------------------------- note rules


def test_note_on_with_velocity_zero_is_a_note_off(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[on(0, 60, 90), off(480, 60, zero_on=True),
                                      on(480, 60, 30), off(960, 60)]])
    assert keyed(read_midi(path)) == [(60, 0, us(480), 90), (60, us(480), us(960), 30)]


def test_restrike_ends_sounding_note_and_its_owed_off_is_used_first(tmp_path: Path) -> None:
    # Two overlapping notes of one pitch: A 0..960, B 480..1440.
    path = save(tmp_path / "t.mid", [[on(0, 60, 50), on(480, 60, 70), off(960, 60),
                                      off(1440, 60), on(1920, 60, 90), off(2400, 60)]])
    assert keyed(read_midi(path)) == [(60, 0, us(480), 50), (60, us(480), us(1440), 70),
                                      (60, us(1920), us(2400), 90)]


def test_order_of_events_within_a_tick_does_not_matter(tmp_path: Path) -> None:
    # Next note_on written before the previous note's note_off at the same tick.
    a = save(tmp_path / "a.mid", [[on(0, 60), on(480, 60), off(480, 60), off(960, 60)]])
    b = save(tmp_path / "b.mid", [[on(0, 60), off(480, 60), on(480, 60), off(960, 60)]])
    assert keyed(read_midi(a)) == keyed(read_midi(b)) == [(60, 0, us(480), 64),
                                                            (60, us(480), us(960), 64)]


def test_zero_length_note_lasts_one_tick_even_when_its_off_comes_first(tmp_path: Path) -> None:
    # music21 writes a grace note's note_off before its note_on at the same tick.
    path = save(tmp_path / "t.mid", [[off(480, 60), on(480, 60, 80), on(960, 60, 70),
                                      off(1440, 60), on(1440, 62), off(1440, 62)]])
    assert keyed(read_midi(path)) == [(60, us(480), us(481), 80), (60, us(960), us(1440), 70),
                                      (62, us(1440), us(1441), 64)]


def test_unison_doubling_is_one_note_with_the_louder_velocity(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[on(0, 60, 40), on(0, 60, 100), off(240, 60),
                                      off(480, 60)]])
    assert keyed(read_midi(path)) == [(60, 0, us(480), 100)]


def test_note_off_without_a_note_is_ignored(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[off(0, 61), on(0, 60), off(480, 60), off(960, 60)]])
    assert keyed(read_midi(path)) == [(60, 0, us(480), 64)]


def test_notes_left_open_end_at_their_own_tracks_end(tmp_path: Path) -> None:
    end = (1920, mido.MetaMessage("end_of_track"))
    path = save(tmp_path / "t.mid", [
        [on(0, 60), (960, mido.MetaMessage("text", text="x"))],
        [on(0, 62), on(480, 64), end],
    ])
    score = read_midi(path)
    assert keyed(score) == [(60, 0, us(960), 64), (62, 0, us(1920), 64),
                            (64, us(480), us(1920), 64)]


def test_matching_is_per_track_and_channel(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [
        [on(0, 60, channel=0), on(240, 60, channel=1), off(480, 60, channel=0),
         off(960, 60, channel=1)],
        [on(120, 60, channel=0), off(720, 60, channel=0)],
    ])
    notes = {(n.track, n.channel): (n.onset_us, n.end_us) for n in read_midi(path).notes}
    assert notes == {(0, 0): (0, us(480)), (0, 1): (us(240), us(960)),
                     (1, 0): (us(120), us(720))}


def test_other_messages_are_ignored(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[
        (0, mido.Message("program_change", program=5)),
        (0, mido.Message("sysex", data=[1, 2, 3])),
        (0, mido.Message("pitchwheel", pitch=100)),
        (0, mido.Message("control_change", control=7, value=10)),
        (0, mido.MetaMessage("track_name", name="piano")),
        on(0, 60), off(480, 60),
    ]])
    score = read_midi(path)
    assert keyed(score) == [(60, 0, us(480), 64)]
    assert score.pedal == []


# -------------------------------------------------------------- pedal, selection


def test_pedal_keeps_half_values_and_only_changes(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[
        cc64(0, 0), on(0, 60), cc64(100, 127), cc64(200, 127), cc64(300, 64),
        cc64(300, 90, channel=1), cc64(400, 0), off(480, 60), cc64(500, 0),
    ]])
    pedal = read_midi(path).pedal
    assert pedal == [PedalEvent(us(100), 127, 0), PedalEvent(us(300), 64, 0),
                     PedalEvent(us(300), 90, 1), PedalEvent(us(400), 0, 0)]


def test_pedal_across_tracks_is_merged_per_channel(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[cc64(0, 127), on(0, 60), off(480, 60)],
                                     [cc64(100, 127), cc64(200, 0)]])
    assert [(p.t_us, p.value) for p in read_midi(path).pedal] == [(0, 127), (us(200), 0)]


def test_drum_channel_left_out_unless_asked(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[on(0, 36, channel=9), off(240, 36, channel=9),
                                      on(0, 60), off(480, 60), cc64(0, 127, channel=9)]])
    plain = read_midi(path)
    assert [n.channel for n in plain.notes] == [0]
    assert plain.pedal == []
    assert sorted(n.channel for n in read_midi(path, include_drums=True).notes) == [0, 9]
    assert [n.channel for n in read_midi(path, channels={9}).notes] == [9]


def test_tracks_and_channels_filter_and_merge(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [
        [on(0, 60, channel=0), off(480, 60, channel=0), on(0, 62, channel=1),
         off(480, 62, channel=1)],
        [on(0, 64, channel=0), off(480, 64, channel=0), on(0, 65, channel=2),
         off(480, 65, channel=2)],
    ])
    assert [n.pitch for n in read_midi(path).notes] == [60, 62, 64, 65]
    assert [n.pitch for n in read_midi(path, tracks={1}).notes] == [64, 65]
    assert [n.pitch for n in read_midi(path, channels={0}).notes] == [60, 64]
    assert [n.pitch for n in read_midi(path, tracks={0}, channels={1, 2}).notes] == [62]


def test_selection_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    path = save(tmp_path / "t.mid", [[on(0, 60), off(480, 60)]])
    with pytest.raises(UsageError, match=r"t\.mid: tracks \[3\]: the file has 1 tracks"):
        read_midi(path, tracks={3})
    with pytest.raises(UsageError, match=r"channels \[16\]: allowed 0..15"):
        read_midi(path, channels={16})


def test_file_without_notes_reads_but_require_notes_refuses(tmp_path: Path) -> None:
    path = save(tmp_path / "quiet.mid", [[cc64(0, 127)], [on(0, 36, channel=9),
                                                           off(240, 36, channel=9)]])
    score = read_midi(path)
    assert score.notes == []
    with pytest.raises(MidiFileError, match=r"quiet\.mid: no notes to play") as info:
        require_notes(score, path)
    assert info.value.path == str(path)
    full = read_midi(path, include_drums=True)
    assert require_notes(full, path) is full


# ------------------------------------------------------------------------- faults


def raw_file(*tracks: bytes, ntracks: int | None = None, fmt: int = 1) -> bytes:
    head = b"MThd" + struct.pack(">LHHH", 6, fmt, len(tracks) if ntracks is None else ntracks,
                                 480)
    return head + b"".join(b"MTrk" + struct.pack(">L", len(t)) + t for t in tracks)


GOOD_TRACK = bytes([0x00, 0x90, 60, 64, 0x83, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00])
FIRST_EVENT = 14 + 8  # offset of the first track's first byte of data


def fault(tmp_path: Path, data: bytes, name: str = "bad.mid") -> MidiFileError:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MidiFileError) as info:
        read_midi(path)
    err = info.value
    assert str(path) in str(err) and err.path == str(path)
    assert err.offset is not None and 0 <= err.offset <= len(data)
    assert f"byte {err.offset}" in str(err)
    return err


def test_good_raw_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "good.mid"
    path.write_bytes(raw_file(GOOD_TRACK))
    assert keyed(read_midi(path)) == [(60, 0, us(480), 64)]


def test_empty_file(tmp_path: Path) -> None:
    err = fault(tmp_path, b"", "empty.mid")
    assert err.offset == 0 and "empty file" in str(err)


def test_not_a_midi_file(tmp_path: Path) -> None:
    err = fault(tmp_path, b"RIFF\x00\x00\x00\x04WAVE", "song.wav")
    assert err.offset == 0 and "not a MIDI file" in str(err)


def test_truncated_header(tmp_path: Path) -> None:
    err = fault(tmp_path, raw_file(GOOD_TRACK)[:11])
    assert "truncated header" in str(err)


def test_bad_header_values(tmp_path: Path) -> None:
    data = bytearray(raw_file(GOOD_TRACK))
    data[8:10] = b"\x00\x07"
    assert fault(tmp_path, bytes(data)).offset == 8
    data = bytearray(raw_file(GOOD_TRACK))
    data[12:14] = b"\x00\x00"
    err = fault(tmp_path, bytes(data))
    assert err.offset == 12 and "0 ticks per beat" in str(err)


def test_truncated_track_names_the_cut_event(tmp_path: Path) -> None:
    data = raw_file(GOOD_TRACK)[:-5]  # cut inside the note_off event at track byte 4
    err = fault(tmp_path, data)
    assert err.offset == FIRST_EVENT + 4
    assert "truncated" in str(err) and "track 0 (chunk at byte 14)" in str(err)


def test_every_prefix_of_a_file_is_a_fault_with_an_offset(tmp_path: Path) -> None:
    data = raw_file(GOOD_TRACK, GOOD_TRACK)
    for cut in range(len(data)):
        fault(tmp_path, data[:cut])


def test_file_ends_before_the_declared_tracks(tmp_path: Path) -> None:
    data = raw_file(GOOD_TRACK, ntracks=2)
    err = fault(tmp_path, data)
    assert err.offset == len(data) and "1 of the 2 track chunks" in str(err)


def test_bad_running_status(tmp_path: Path) -> None:
    err = fault(tmp_path, raw_file(bytes([0x00, 60, 64, 0x00, 0xFF, 0x2F, 0x00])))
    assert err.offset == FIRST_EVENT + 1 and "running status" in str(err)


def test_running_status_does_not_survive_a_sysex(tmp_path: Path) -> None:
    track = bytes([0x00, 0x90, 60, 64, 0x00, 0xF0, 0x01, 0xF7, 0x10, 60, 0])
    err = fault(tmp_path, raw_file(track))
    assert err.offset == FIRST_EVENT + 9 and "running status" in str(err)


def test_data_byte_above_127(tmp_path: Path) -> None:
    err = fault(tmp_path, raw_file(bytes([0x00, 0x90, 60, 0xC8, 0x00, 0xFF, 0x2F, 0x00])))
    assert err.offset == FIRST_EVENT + 3 and "data byte 0xC8" in str(err)


def test_undefined_status_byte(tmp_path: Path) -> None:
    err = fault(tmp_path, raw_file(bytes([0x00, 0xF4, 0x00, 0xFF, 0x2F, 0x00])))
    assert err.offset == FIRST_EVENT and "undefined status byte 0xF4" in str(err)


def test_bad_set_tempo(tmp_path: Path) -> None:
    err = fault(tmp_path, raw_file(bytes([0x00, 0xFF, 0x51, 0x02, 0x07, 0xA1])))
    assert err.offset == FIRST_EVENT and "set_tempo" in str(err)


def test_event_running_past_its_chunk(tmp_path: Path) -> None:
    track = GOOD_TRACK[:-2]  # end_of_track event now claims bytes beyond the chunk
    err = fault(tmp_path, raw_file(track, GOOD_TRACK))
    assert err.offset == FIRST_EVENT + 9 and "runs past the end of the chunk" in str(err)


def test_overlong_variable_length_number(tmp_path: Path) -> None:
    err = fault(tmp_path, raw_file(bytes([0x81, 0x81, 0x81, 0x81, 0x01, 0x90, 60, 64])))
    assert err.offset == FIRST_EVENT and "longer than 4 bytes" in str(err)


def test_event_mido_cannot_decode_is_located_in_its_chunk(tmp_path: Path) -> None:
    # key_signature with 20 sharps: well framed, but mido refuses to decode it
    track = bytes([0x00, 0xFF, 0x59, 0x02, 20, 0]) + GOOD_TRACK
    err = fault(tmp_path, raw_file(GOOD_TRACK, track))
    assert 14 + 8 + len(GOOD_TRACK) <= err.offset <= len(raw_file(GOOD_TRACK, track))
    assert "track 1" in str(err) and "mido cannot decode" in str(err)


def test_alien_chunk_is_skipped(tmp_path: Path) -> None:
    good = raw_file(GOOD_TRACK)
    data = good[:14] + b"XFIR" + struct.pack(">L", 3) + b"abc" + good[14:]
    path = tmp_path / "alien.mid"
    path.write_bytes(data)
    assert keyed(read_midi(path)) == [(60, 0, us(480), 64)]


def test_padding_after_the_last_track_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "padded.mid"
    path.write_bytes(raw_file(GOOD_TRACK) + b"\x00\x00\x00")
    assert keyed(read_midi(path)) == [(60, 0, us(480), 64)]


def test_missing_file_is_a_midi_file_error(tmp_path: Path) -> None:
    with pytest.raises(MidiFileError, match="nope.mid: cannot read"):
        read_midi(tmp_path / "nope.mid")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1,
                      max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 200)))
def test_damaged_files_read_or_raise_midi_file_error(edits: list[tuple[int, int]],
                                                      cut: int | None) -> None:
    data = bytearray(raw_file(GOOD_TRACK + bytes([0x00, 0xB0, 64, 127]) + GOOD_TRACK[-4:],
                              GOOD_TRACK))
    for at, value in edits:
        data[at % len(data)] = value
    if cut is not None:
        del data[cut % len(data):]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.mid"
        path.write_bytes(bytes(data))
        try:
            score = read_midi(path)
        except MidiFileError as err:
            assert err.offset is not None and 0 <= err.offset <= len(data)
            assert str(path) in str(err)
        else:
            assert all(n.duration_us >= 1 for n in score.notes)


# ------------------------------------------------------------------------ writing


class _TickModel:
    """An independent tick<->µs model (exact fractions) for the round-trip test."""

    def __init__(self, changes: list[tuple[int, int]], tpb: int):
        self.tpb = tpb
        self.starts: list[tuple[int, Fraction, int]] = []  # (tick, exact µs, us_per_beat)
        t = Fraction(0)
        for i, (tick, upb) in enumerate(changes):
            if i:
                prev_tick, _, prev_upb = self.starts[-1]
                t += Fraction((tick - prev_tick) * prev_upb, tpb)
            self.starts.append((tick, t, upb))

    def us(self, tick: int) -> int:
        s = max(s for s in self.starts if s[0] <= tick)
        return math.floor(s[1] + Fraction((tick - s[0]) * s[2], self.tpb) + Fraction(1, 2))

    def tick(self, t_us: int) -> int:
        s = max(s for s in self.starts if s[1] <= t_us)
        return s[0] + math.floor((t_us - s[1]) * self.tpb / s[2] + Fraction(1, 2))


@st.composite
def scores(draw: st.DrawFn) -> tuple[Score, _TickModel]:
    tpb = draw(st.sampled_from([96, 480, 960]))
    changes = [(0, draw(st.integers(200_000, 1_500_000)))]
    for tick in sorted(draw(st.sets(st.integers(1, 40 * tpb), max_size=3))):
        changes.append((tick, draw(st.integers(200_000, 1_500_000))))
    model = _TickModel(changes, tpb)
    tempo_map = [TempoChange(t, model.us(t), u) for t, u in changes]
    raw = draw(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 30_000_000),
                                  st.integers(0, 2_000_000), st.integers(1, 127),
                                  st.integers(0, 15), st.integers(0, 3)), max_size=40))
    notes: list[Note] = []
    last_tick: dict[tuple[int, int, int], int] = {}  # key -> first tick free for a new note
    for pitch, onset, duration, velocity, channel, track in sorted(raw, key=lambda r: r[1]):
        key = (track, channel, pitch)
        on_tick, end_tick = model.tick(onset), model.tick(onset + duration)
        if on_tick < last_tick.get(key, 0):
            continue  # would overlap the previous note of its key once quantised
        last_tick[key] = max(end_tick, on_tick + 1)
        notes.append(Note(pitch, onset, duration, velocity, channel, track))
    pedal: list[PedalEvent] = []
    for channel in draw(st.sets(st.integers(0, 15), max_size=2)):
        value = 0
        for t in sorted(draw(st.lists(st.integers(0, 30_000_000), max_size=6))):
            value = draw(st.integers(0, 127).filter(lambda v, last=value: v != last))
            pedal.append(PedalEvent(t, value, channel))
    with_map = draw(st.booleans())
    if not with_map:
        model = _TickModel([(0, 500_000)], tpb)
    score = Score(notes=notes, pedal=pedal, tempo_map=tempo_map if with_map else [],
                  ticks_per_beat=tpb)
    return score, model


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scores())
def test_round_trip_keeps_notes_and_pedal_within_half_a_tick(case: tuple[Score, _TickModel]
                                                             ) -> None:
    """Score -> MIDI -> Score: pitch, velocity, channel, track exact; onsets and pedal
    times within half a tick (+1 µs rounding); ends within half a tick, except notes
    shorter than half a tick, which come back one tick long. The tempo map comes back
    exactly; with none, 500000 µs/beat is written."""
    score, model = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rt.mid"
        write_midi(score, path, ticks_per_beat=score.ticks_per_beat)
        back = read_midi(path, include_drums=True)
        assert os.listdir(tmp) == ["rt.mid"]
    max_tick_us = max(s[2] for s in model.starts) / model.tpb
    half = max_tick_us / 2 + 1
    assert len(back.notes) == len(score.notes)
    order = lambda n: (n.track, n.channel, n.pitch, n.onset_us)  # noqa: E731
    for a, b in zip(sorted(score.notes, key=order), sorted(back.notes, key=order), strict=True):
        assert (a.pitch, a.velocity, a.channel, a.track) == (b.pitch, b.velocity, b.channel,
                                                              b.track)
        assert abs(a.onset_us - b.onset_us) <= half
        if model.tick(a.end_us) > model.tick(a.onset_us):
            assert abs(a.end_us - b.end_us) <= half
        else:  # rounds to zero ticks: comes back one tick long
            assert b.end_us - b.onset_us <= max_tick_us + 1
    assert [(p.value, p.channel) for p in back.pedal] == [(p.value, p.channel)
                                                          for p in score.pedal]
    assert all(abs(a.t_us - b.t_us) <= half for a, b in zip(score.pedal, back.pedal, strict=True))
    expected = score.tempo_map or [TempoChange(0, 0, 500_000)]
    assert back.tempo_map == expected
    assert back.ticks_per_beat == score.ticks_per_beat


def test_read_write_read_of_a_file_is_exact_at_its_own_resolution(tmp_path: Path) -> None:
    first = read_midi(bundled_piece("mazurka06-2"))
    write_midi(first, tmp_path / "again.mid", ticks_per_beat=first.ticks_per_beat)
    again = read_midi(tmp_path / "again.mid")
    assert again.notes == first.notes
    assert again.pedal == first.pedal and again.tempo_map == first.tempo_map


def test_write_honours_tempo_map_at_another_resolution(tmp_path: Path) -> None:
    score = Score(notes=[Note(60, 1_000_000, 250_000, 80)],
                  tempo_map=[TempoChange(0, 0, 500_000), TempoChange(960, 1_000_000, 250_000)],
                  ticks_per_beat=480)
    write_midi(score, tmp_path / "t.mid", ticks_per_beat=96)
    mf = mido.MidiFile(tmp_path / "t.mid")
    assert mf.type == 1 and mf.ticks_per_beat == 96
    tempi, tick = [], 0
    for msg in mf.tracks[0]:
        tick += msg.time
        if msg.type == "set_tempo":
            tempi.append((tick, msg.tempo))
    assert tempi == [(0, 500_000), (192, 250_000)]
    back = read_midi(tmp_path / "t.mid")
    assert keyed(back) == [(60, 1_000_000, 1_250_000, 80)]


def test_inconsistent_tempo_map_falls_back_to_default(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    score = Score(notes=[Note(60, 0, 500_000, 80)],
                  tempo_map=[TempoChange(0, 0, 500_000), TempoChange(480, 123, 250_000)])
    write_midi(score, tmp_path / "t.mid")
    assert "tempo map not written" in caplog.text
    back = read_midi(tmp_path / "t.mid")
    assert back.tempo_map == [TempoChange(0, 0, 500_000)]
    assert keyed(back) == [(60, 0, 500_000, 80)]


def test_write_keeps_track_numbers_and_event_order(tmp_path: Path) -> None:
    score = Score(notes=[Note(60, 0, 500_000, 80, channel=3, track=2),
                         Note(60, 500_000, 500_000, 70, channel=3, track=2),
                         Note(62, 0, 0, 90, channel=0, track=0)])
    write_midi(score, tmp_path / "t.mid")
    mf = mido.MidiFile(tmp_path / "t.mid")
    assert len(mf.tracks) == 3 and mf.tracks[1] == mido.MidiTrack(
        [mido.MetaMessage("end_of_track", time=0)])
    kinds = [(m.type, m.time) for m in mf.tracks[2] if m.type.startswith("note")]
    assert kinds == [("note_on", 0), ("note_off", 480), ("note_on", 0), ("note_off", 480)]
    zero = [m.type for m in mf.tracks[0] if m.type.startswith("note")]
    assert zero == ["note_on", "note_off"]  # its own off right after it, at the same tick
    back = read_midi(tmp_path / "t.mid")
    assert [(n.track, n.channel, n.onset_us, n.duration_us) for n in back.notes] == [
        (2, 3, 0, 500_000), (0, 0, 0, us(1)), (2, 3, 500_000, 500_000)]


def test_invalid_score_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "t.mid"
    with pytest.raises(MidiFileError, match=r"t\.mid: notes\[0\]\.velocity: 0, allowed 1..127"):
        write_midi(Score(notes=[Note(60, 0, 10, 0)]), path)
    with pytest.raises(MidiFileError, match=r"pedal\[0\]\.value: 200, allowed 0..127"):
        write_midi(Score(notes=[Note(60, 0, 10, 1)], pedal=[PedalEvent(0, 200)]), path)
    with pytest.raises(UsageError, match="ticks_per_beat 0"):
        write_midi(Score(notes=[Note(60, 0, 10, 1)]), path, ticks_per_beat=0)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_when_saving_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    path = tmp_path / "t.mid"
    path.write_bytes(b"old contents")

    def broken_save(self: mido.MidiFile, filename: object = None, file: object = None) -> None:
        assert file is not None
        file.write(b"MThd half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mido.MidiFile, "save", broken_save)
    with pytest.raises(MidiFileError, match="t.mid: cannot write: No space left"):
        write_midi(Score(notes=[Note(60, 0, 10, 1)]), path)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["t.mid"]


def test_write_into_missing_folder_is_a_midi_file_error(tmp_path: Path) -> None:
    with pytest.raises(MidiFileError, match="cannot write"):
        write_midi(Score(notes=[Note(60, 0, 10, 1)]), tmp_path / "no" / "t.mid")


# --------------------------------------------------------------------- statistics


@pytest.mark.parametrize(("pitch", "name"), [(0, "C-1"), (21, "A0"), (60, "C4"), (61, "C#4"),
                                             (69, "A4"), (108, "C8"), (127, "G9")])
def test_pitch_name(pitch: int, name: str) -> None:
    assert pitch_name(pitch) == name


def test_pitch_name_out_of_range() -> None:
    with pytest.raises(ValueError, match="pitch 128, allowed 0..127"):
        pitch_name(128)


def test_score_stats_counts_polyphony_and_ranges() -> None:
    score = Score(notes=[
        Note(21, 0, 1_000_000, 40, channel=0, track=1),
        Note(60, 0, 500_000, 80, channel=1, track=1),
        Note(64, 500_000, 500_000, 120, channel=1, track=2),  # touches, does not overlap
        Note(108, 1_000_000, 1_000_000, 60, channel=0, track=1),
    ], pedal=[PedalEvent(0, 127), PedalEvent(1_500_000, 0)])
    stats = score_stats(score)
    assert stats["notes"] == 4
    assert stats["pitch_min"] == 21 and stats["pitch_max"] == 108
    assert stats["pitch_range"] == "A0..C8"
    assert stats["duration_s"] == 2.0 and stats["notes_per_s"] == 2.0
    assert stats["max_polyphony"] == 2
    assert stats["mean_polyphony"] == pytest.approx(1.5)  # 2 for 1 s, 1 for 1 s
    assert stats["channels"] == [1, 2] and stats["tracks"] == [1, 2]  # channels 1..16
    assert stats["pedal_events"] == 2
    assert (stats["velocity_min"], stats["velocity_max"]) == (40, 120)


def test_score_stats_of_an_empty_score() -> None:
    stats = score_stats(Score())
    assert stats["notes"] == 0 and stats["max_polyphony"] == 0 and stats["pitch_range"] is None


# ----------------------------------------------------------------- bundled pieces


def test_bundled_pieces_read_and_are_real_music() -> None:
    paths = bundled_pieces()
    assert {p.stem for p in paths} == {"bwv66.6", "maple_leaf_rag", "mazurka06-2"}
    for path in paths:
        assert path.stat().st_size < 100_000
        score = require_notes(read_midi(path), path)
        stats = score_stats(score)
        assert 30 <= stats["duration_s"] <= 180, path
        assert stats["notes"] >= 150, path
        assert 21 <= stats["pitch_min"] and stats["pitch_max"] <= 108  # on an 88-key piano
    for piano in ("maple_leaf_rag", "mazurka06-2"):
        velocities = {n.velocity for n in read_midi(bundled_piece(piano)).notes}
        assert len(velocities) >= 2, piano  # dynamics became velocities


def test_bundled_piece_lookup() -> None:
    assert bundled_piece(DEFAULT_PIECE).name == "maple_leaf_rag.mid"
    assert bundled_piece("bwv66.6.mid") == bundled_piece("bwv66.6")
    with pytest.raises(UsageError, match="no bundled piece named 'nope'.*maple_leaf_rag"):
        bundled_piece("nope")
    with pytest.raises(UsageError):
        bundled_piece("../pieces/maple_leaf_rag")
