"""The report's heard figures: a heard note whose loudness the ear could not read."""

from __future__ import annotations

from robo_player.performance import HeardNote, Performance
from robo_player.planner import plan as plan_for
from robo_player.report import build_report, summary_lines
from robo_player.score import Note, Score
from robo_player.spec import load_spec


def test_a_heard_note_with_unread_loudness_counts_its_onset_not_its_loudness() -> None:
    """Four notes heard on time, each at its own velocity but one at velocity 0 (the
    ear timed it and could not read its loudness): all four onsets count, the velocity
    error is over the three read (0 here, where counting the unread one as 0 would make
    it ~14), and the report and its summary say one loudness was unread."""
    spec = load_spec("piano-88-grand")
    score = Score([Note(60 + 2 * i, 200_000 + 400_000 * i, 300_000, 40 + 10 * i) for i in range(4)])
    _, rep = plan_for(score, spec, None)
    played = [o for o in rep.outcomes if o.fate.name == "PLAYED"]
    assert len(played) == 4
    heard = [HeardNote(o.intended_t_us + 300, o.pitch_out, 0.0 if k == 1 else float(o.velocity_in))
             for k, o in enumerate(played)]  # fmt: skip
    r = build_report(plan_report=rep, performance=Performance(heard=heard), piece="p", spec=spec, port="sim://")
    assert r["notes_unheard"] == 0 and r["onset_error_ms"]["n"] == 4
    assert r["velocity_error"]["n"] == 3 and r["velocity_error"]["unread"] == 1
    assert r["velocity_error"]["mean"] == 0.0
    assert any("1 heard notes' loudness unread" in line for line in summary_lines(r))
