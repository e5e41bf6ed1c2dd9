"""Issue 9 §8 on every subcommand (also those other modules register: train, generate,
perform, eval-model, live...): a description, help text on every option, and every
default worth saying shown in ``--help``."""

from __future__ import annotations

import argparse
import re

import pytest

from robo_player.cli import build_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    return dict(sub.choices)


def _entry(text: str, flag: str) -> str:
    """The help entry of ``flag`` in the options part of ``--help``, on one line."""
    body = text[text.index("options:") :]
    for entry in re.split(r"\n(?=  -)", body):
        names = re.split(r"\s{2,}", entry.strip())[0]
        if flag in re.findall(r"-[-\w]+", names):
            return " ".join(entry.split())
    raise AssertionError(f"{flag} not in the help")


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_describes_itself_and_every_option_and_default(name: str) -> None:
    sp = _subcommands()[name]
    assert sp.description, f"{name}: no description"
    text = sp.format_help()
    for action in sp._actions:
        if not action.option_strings or action.dest == "help" or action.help == argparse.SUPPRESS:
            continue
        flag = action.option_strings[-1]
        assert action.help, f"{name} {flag}: no help text"
        if any(action.default is d for d in (None, False, argparse.SUPPRESS)):
            continue
        own = _entry(text, flag)
        d = action.default
        said = f"{d:g}" if isinstance(d, float) else str(d).split(",")[0]  # 3.0 may read "3"
        assert "default" in own and said in own, (
            f"{name} {flag}: default {action.default!r} not shown: {own!r}"
        )


def test_the_train_options_say_what_they_do() -> None:
    out = _subcommands()["train"].format_help()
    for text in ("--patience PATIENCE", "stop after this many epochs", "learning rate (default: 0.002)"):
        assert text in " ".join(out.split()), text
