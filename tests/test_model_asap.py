"""ASAP corpus (``asap:PATH``): match-file parsing, split by piece, cache, tokens with
pedal and velocities. All on a tiny data set written here (never the real one)."""

from __future__ import annotations

import csv
import lzma
from pathlib import Path

import numpy as np
import pytest

from robo_player.errors import UsageError
from robo_player.model import asap, corpus
from robo_player.model import tokenizer as tk

HEAD_V1 = ["info(matchFileVersion,1.0.0).", "info(midiClockUnits,480).", "info(midiClockRate,500000)."]


def _snote(i: int, step: str, octave: int, bar: int, beat: int, dur: str, on_b: float, off_b: float,
           attrs: str = "v1,staff1") -> str:
    return f"snote(n{i},[{step},n],{octave},{bar}:{beat},0,{dur},{on_b:.4f},{off_b:.4f},[{attrs}])"


def match_text(timesig: str = "4/4", velocities: tuple[int, ...] = (40, 60, 80, 100),
               tempo_ticks: int = 480, old: bool = False, pedal: bool = True) -> str:
    """A four-note score (C4 D4 E4 F4, quarter notes in 4/4 or eighths in 3/8), all played
    but the third; one inserted note; pedal down over the first two notes."""
    steps = [("C", 60), ("D", 62), ("E", 64), ("F", 65)]
    lines = list(HEAD_V1)
    if old:
        lines = ["info(matchFileVersion,5.0).", "info(midiClockUnits,480).", "info(midiClockRate,500000).",
                 f"info(timeSignature,[{timesig}])."]
    else:
        lines.append(f"scoreprop(timeSignature,{timesig},1:1,0,0.0000).")
    num, den = (int(x) for x in timesig.split("/"))
    for i, ((step, p), v) in enumerate(zip(steps, velocities, strict=True)):
        bar, beat = 1 + i // num, 1 + i % num
        sn = _snote(i, step, 4, bar, beat, f"1/{den}", float(i), float(i + 1),
                    "v1,staff1,accent" if i == 0 else "v2,staff2")
        on, off = 480 + i * tempo_ticks, 480 + i * tempo_ticks + tempo_ticks // 2
        if i == 2:
            lines.append(sn + "-deletion.")
        elif old:
            lines.append(sn + f"-note(n{i},[{step},n],4,{on},{off},{off},{v}).")
        else:
            lines.append(sn + f"-note(n{i},{p},{on},{off},{v},0,0).")
    lines.append("insertion-note(n9,72,700,800,50,0,0)." if not old
                 else "insertion-note(n9,[C,n],5,700,800,800,50).")
    if pedal:
        lines += ["sustain(400,100).", "sustain(1400,0)."]
    lines.append("soft(400,0).")
    return "\n".join(lines) + "\n"


def test_parse_match_v1_gives_score_performance_pairs() -> None:
    p = asap.parse_match(match_text(), "A/b", "perf")
    assert p.pitch.tolist() == [60, 62, 64, 65]  # the deleted E4 from its spelling
    assert p.onset_q.tolist() == [0.0, 1.0, 2.0, 3.0] and p.dur_q.tolist() == [1.0] * 4
    assert p.p_vel.tolist() == [40, 60, -1, 100]
    assert p.p_onset_s[1] == pytest.approx((480 + 480) / 480 * 0.5)
    assert p.p_dur_s[0] == pytest.approx(0.25)
    assert np.isnan(p.p_onset_s[2])
    assert p.flags[0] & asap.ACCENT and p.staff.tolist() == [1, 2, 2, 2] and p.voice[0] == 1
    assert p.inserted == 1 and len(p.played) == 4  # 3 matched + 1 inserted
    assert p.pedal.tolist() == [[round(400 / 480 * 0.5e6), 100], [round(1400 / 480 * 0.5e6), 0]]
    assert p.bar_pos_q.tolist() == [0.0, 1.0, 2.0, 3.0] and p.bar_len_q[0] == 4.0


def test_parse_match_three_eight_beats_become_quarters() -> None:
    p = asap.parse_match(match_text("3/8"), "A/b", "perf")
    assert p.onset_q.tolist() == [0.0, 0.5, 1.0, 1.5]  # one beat = an eighth
    assert p.dur_q.tolist() == [0.5] * 4 and p.bar_len_q[0] == 1.5
    assert p.bar_pos_q.tolist() == [0.0, 0.5, 1.0, 0.0]


def test_parse_match_old_version_spells_pitches() -> None:
    p = asap.parse_match(match_text(old=True), "A/b", "perf")
    assert p.pitch.tolist() == [60, 62, 64, 65] and p.p_vel.tolist() == [40, 60, -1, 100]
    assert sorted(p.played[:, 0].tolist()) == [60, 62, 65, 72]


def make_asap(root: Path, folders: list[str], perfs_per_folder: int = 2) -> Path:
    """A tiny ASAP-shaped folder: metadata.csv and xz-compressed match files."""
    rows = []
    for f in folders:
        for k in range(perfs_per_folder):
            name = f"P{k}"
            rows.append({"composer": f.split("/")[0], "folder": f, "midi_performance": f"{f}/{name}.mid"})
            d = root / "match" / f
            d.mkdir(parents=True, exist_ok=True)
            vel = tuple(int(v) for v in np.clip(np.array([40, 60, 80, 100]) + 5 * k, 1, 127))
            with lzma.open(d / f"{name}.match.xz", "wt") as fh:
                fh.write(match_text(velocities=vel, tempo_ticks=480 + 40 * k))
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["composer", "folder", "midi_performance"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_load_asap_splits_by_folder_and_caches(tmp_path: Path) -> None:
    folders = [f"Comp/Piece_{i}" for i in range(30)]
    root = make_asap(tmp_path / "asap", folders)
    seen: list[tuple[int, int]] = []
    c = asap.load_asap(root, cache_dir=tmp_path / "cache", progress=lambda i, n: seen.append((i, n)))
    assert len(c.performances) == 60 and seen[-1] == (60, 60)
    assert c.alignment_rate() == pytest.approx(3 / 5)  # 3 matched of 4 score notes + 1 insertion
    for p in c.performances:  # both performances of a piece share the piece's split
        assert p.split == corpus.split_of(p.folder)
    splits = {p.split for p in c.performances}
    assert {"train", "test"} <= splits
    assert len(list((tmp_path / "cache").glob("asap-*.npz"))) == 1
    again = asap.load_asap(root, cache_dir=tmp_path / "cache")
    assert [p.name for p in again.performances] == [p.name for p in c.performances]
    assert np.array_equal(again.performances[3].p_vel, c.performances[3].p_vel)
    assert np.array_equal(again.performances[3].pedal, c.performances[3].pedal)


def test_asap_corpus_tokens_keep_velocity_and_pedal(tmp_path: Path) -> None:
    root = make_asap(tmp_path / "asap", [f"Comp/Piece_{i}" for i in range(12)])
    pieces = corpus.load_corpus(f"asap:{root}", cache_dir=tmp_path / "cache")
    assert len(pieces) == 24
    for p in pieces:
        assert p.split == corpus.split_of(p.name.rsplit("/", 1)[0])
    toks = pieces[0].tokens.tolist()
    assert tk.PEDAL_ON in toks and tk.PEDAL_OFF in toks
    sc = tk.decode(pieces[0].tokens)
    assert len({n.velocity for n in sc.notes}) >= 3  # the pianist's dynamics, not one level
    assert not tk.check_grammar(toks)
    packed = tmp_path / "t.npz"
    corpus.pack_tokens(pieces, packed)
    back = corpus.load_corpus(f"tokens:{packed}", cache_dir=tmp_path / "none")
    assert [p.split for p in back] == [p.split for p in pieces]
    assert np.array_equal(back[5].tokens, pieces[5].tokens)


def test_asap_bad_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        asap.load_asap(tmp_path / "nope", cache_dir=tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="metadata.csv"):
        asap.load_asap(tmp_path / "empty", cache_dir=tmp_path / "c")


def test_alignment_in_a_variant_folder_keeps_its_performance_folder(tmp_path: Path) -> None:
    root = make_asap(tmp_path / "asap", ["Comp/Piece_0"], perfs_per_folder=1)
    # metadata lists Comp/Piece_0/P9; (n)ASAP keeps its alignment in Comp/Piece_0_no_repeat/
    d = root / "match" / "Comp" / "Piece_0_no_repeat"
    d.mkdir(parents=True)
    with lzma.open(d / "P9.match.xz", "wt") as fh:
        fh.write(match_text())
    with (root / "metadata.csv").open("a", newline="") as fh:
        fh.write("Comp,Comp/Piece_0,Comp/Piece_0/P9.mid\n")
    c = asap.load_asap(root, cache_dir=tmp_path / "cache")
    assert [(p.folder, p.name) for p in c.performances] == [("Comp/Piece_0", "P0"), ("Comp/Piece_0", "P9")]
    assert c.missing_match == 0 and len(c.performances[1].pitch) == 4
    assert {p.split for p in c.performances} == {corpus.split_of("Comp/Piece_0")}
