"""The model's subcommands: ``train``, ``generate``, ``perform`` and ``eval-model``.

``robo_player.cli`` calls :func:`register`. Nothing here imports torch at import time
(Light core): the torch modules are imported inside the handlers, and ``perform``
(rule-based) never needs torch. Handlers return an exit code and raise
``robo_player.errors`` errors for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelError, UsageError
from ..resources import shipped_dir
from ..score import Score

log = logging.getLogger(__name__)

MODELS_DIR = shipped_dir("models")
DEFAULT_MODEL = MODELS_DIR / "performance.pt"
DEFAULT_LSTM = MODELS_DIR / "lstm.pt"
DEFAULT_TRANSFORMER = MODELS_DIR / "transformer.pt"
DEFAULT_RENDER = MODELS_DIR / "render.pt"


def _need_torch(what: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise UsageError(f"{what} needs the `model` extra: pip install 'robo_player[model]'") from err


def _model_path(p: str | None) -> Path:
    path = Path(p) if p else DEFAULT_MODEL
    if not path.is_file():
        raise ModelError(f"{path}: no such model checkpoint")
    return path


def _spec(name: str) -> Any:
    from ..spec.loader import load_spec

    return load_spec(name)


# ---------------------------------------------------------------- generate


def generate_score(model_path: str | Path | None, spec: Any, seconds: float = 30.0,
                   primer: str | None = None, temperature: float = 1.0, top_p: float | None = None,
                   seed: int = 0, primer_midi: str | Path | None = None) -> Score:
    """A performance the model composes, playable on ``spec`` (for ``play --generate``)."""
    _need_torch("generate")
    from .generate import DEFAULT_TOP_P, generate_from_file

    g = generate_from_file(_model_path(str(model_path) if model_path else None), spec, seconds,
                           primer=primer, primer_midi=primer_midi, temperature=temperature,
                           top_p=DEFAULT_TOP_P if top_p is None else top_p, seed=seed)
    return g.score


def cmd_generate(args: argparse.Namespace) -> int:
    _need_torch("generate")
    from ..midi import write_midi
    from ..planner import plan as plan_for
    from .generate import MAX_SECONDS, generate_from_file

    if not 0 < args.seconds <= MAX_SECONDS:  # inf, nan, 1e9: refused before any work
        raise UsageError(f"generate --seconds {args.seconds:g}: must be a number of seconds in "
                         f"(0, {MAX_SECONDS:g}]")
    spec = _spec(args.spec)
    show = None
    if args.seconds > 60 and not args.quiet:
        from .corpus import progress_line

        show = progress_line(f"generating {args.seconds:g}s")
    g = generate_from_file(_model_path(args.model), spec, args.seconds, primer=args.primer,
                           primer_midi=args.primer_midi, temperature=args.temperature,
                           top_p=args.top_p, seed=args.seed, constrain=not args.no_mask,
                           progress=show)
    write_midi(g.score, args.out)
    _, report = plan_for(g.score, spec)
    sys.stdout.write(
        f"{args.out}: {len(g.score.notes)} notes, {g.score.duration_s:.1f}s of music in "
        f"{g.wall_s:.2f}s ({g.realtime_factor:.0f}x real time); on {spec.name}: "
        f"{report.notes_altered} altered, {report.notes_dropped} dropped\n")
    return 0


# ---------------------------------------------------------------- perform


_RULE_OPTIONS = ("k_phrase_arch", "k_high_loud", "k_duration_contrast", "k_melodic_charge",
                 "k_final_ritard", "noise_ms")


def cmd_perform(args: argparse.Namespace) -> int:
    from ..midi import read_midi, require_notes, resolve_piece, write_midi

    if args.model is None:
        if args.temperature is not None or args.max_shift_ms is not None:
            raise UsageError("perform: --temperature and --max-shift-ms need --model "
                             "(the rule-based renderer has --k-* and --noise-ms)")
        from .render import RenderRules, perform

        given = {name: getattr(args, name) for name in _RULE_OPTIONS if getattr(args, name) is not None}
        d = RenderRules()  # unset options take the rules' defaults
        rules = RenderRules(phrase_arch=given.get("k_phrase_arch", d.phrase_arch),
                            high_loud=given.get("k_high_loud", d.high_loud),
                            duration_contrast=given.get("k_duration_contrast", d.duration_contrast),
                            melodic_charge=given.get("k_melodic_charge", d.melodic_charge),
                            final_ritard=given.get("k_final_ritard", d.final_ritard),
                            noise_ms=given.get("noise_ms", d.noise_ms), seed=args.seed)
        path = resolve_piece(args.score)
        score = require_notes(read_midi(path), path)
        out = perform(score, rules)
        write_midi(out, args.out)
        sys.stdout.write(f"{args.out}: {len(out.notes)} notes performed ({score.duration_s:.1f}s -> "
                         f"{out.duration_s:.1f}s)\n")
        return 0

    # model-based: the rule options would be silently ignored, so refuse them
    flags = [f"--{name.replace('_', '-')}" for name in _RULE_OPTIONS if getattr(args, name) is not None]
    if flags:
        raise UsageError(f"perform --model: {', '.join(flags)} belong(s) to the rule-based renderer; "
                         f"drop them or drop --model")
    from .perform_model import ModelRenderOptions

    opts = ModelRenderOptions(temperature=1.0 if args.temperature is None else args.temperature,
                              max_shift_ms=30 if args.max_shift_ms is None else args.max_shift_ms,
                              seed=args.seed)
    _need_torch("perform --model")
    model_path = _model_path(args.model)
    from .render_net import is_renderer

    if is_renderer(model_path):
        if args.temperature is not None or args.max_shift_ms is not None:
            raise UsageError(f"perform --model {model_path}: a rendering network is deterministic; "
                             f"--temperature and --max-shift-ms belong to generative models")
        return _perform_with_renderer(args, model_path)
    from .perform_model import perform_from_file

    path = resolve_piece(args.score)
    score = require_notes(read_midi(path), path)
    r = perform_from_file(score, _model_path(args.model), opts)
    write_midi(r.score, args.out)
    vel = [n.velocity for n in r.score.notes]
    moved = sum(1 for d in r.shift_steps if d)
    sys.stdout.write(f"{args.out}: {len(r.score.notes)} notes performed by {args.model} (velocity "
                     f"{min(vel)}..{max(vel)}, {r.velocity_changes} changes; {moved} of "
                     f"{len(r.shift_steps)} onsets moved; {r.wall_s:.2f}s)\n")
    return 0


def _time_signature(path: Path) -> tuple[int, int]:
    """The first time signature of a MIDI file (4/4 where it has none)."""
    import mido

    try:
        for tr in mido.MidiFile(str(path)).tracks:
            for msg in tr:
                if msg.type == "time_signature":
                    return int(msg.numerator), int(msg.denominator)
    except (OSError, ValueError, EOFError):
        pass
    return 4, 4


def _perform_with_renderer(args: argparse.Namespace, model_path: Path) -> int:
    import time

    from ..midi import read_midi, require_notes, resolve_piece, write_midi
    from . import score_features as sf
    from .render_net import load, render

    model, _ = load(model_path)
    path = resolve_piece(args.score)
    score = require_notes(read_midi(path), path)
    t0 = time.perf_counter()
    s = sf.from_score(score, _time_signature(Path(path)))
    out = render(model, s, source=str(path))
    wall = time.perf_counter() - t0
    write_midi(out, args.out)
    vel = [n.velocity for n in out.notes]
    downs = sum(1 for p in out.pedal if p.value >= 64)
    sys.stdout.write(f"{args.out}: {len(out.notes)} notes rendered by {model_path.name} (velocity "
                     f"{min(vel)}..{max(vel)}; {score.duration_s:.1f}s -> {out.duration_s:.1f}s; "
                     f"{downs} pedal presses; {wall:.2f}s)\n")
    return 0


# ---------------------------------------------------------------- eval-model


REFERENCES = {
    "nll_per_event": {"Performance RNN": 1.969, "Music Transformer": 1.835, "target": 1.9},
    "rendering_human_asap": {"velocity_r": 0.62, "articulation_r": 0.65, "tempo_r": 0.69},
    "rendering_targets": {"velocity_r": 0.6, "tempo_r": 0.5},
    "js_overall": {"Pianist Transformer": 0.1634, "VirtuosoNet": 0.2791, "score": 0.3200, "target": 0.163},
}


def _json_safe(x: Any) -> Any:
    """NaN and infinities -> None (JSON has no NaN), recursively."""
    import math

    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _need_corpus_extra(spec: str, cache: Path) -> None:
    """music21 sources not yet in the cache need the `corpus` extra: say so before any work."""
    from . import corpus

    for kind, arg in corpus.parse_sources(spec):
        if kind == "music21" and not corpus._cache_path(cache, kind, arg).exists():
            try:
                import music21  # noqa: F401
            except ImportError as err:
                raise UsageError(f"--corpus {spec}: music21:{arg} is not parsed yet ({cache}) and "
                                 f"parsing needs the `corpus` extra: pip install 'robo_player[corpus]'") from err


def _fmt(x: Any, nd: int = 3) -> str:
    import math

    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def cmd_eval(args: argparse.Namespace) -> int:
    _need_torch("eval-model")
    import numpy as np

    from . import corpus
    from .checkpoint import load_model
    from .evaluate import KneserNey, model_nll, sample_statistics
    from .generate import generate

    cache = Path(args.cache) if args.cache else corpus.default_cache_dir()
    _need_corpus_extra(args.corpus, cache)
    quiet = args.json or args.quiet
    pieces = corpus.load_corpus(args.corpus, cache_dir=cache,
                                progress=None if args.quiet else corpus.progress_line("parsing corpus"))
    split = corpus.by_split(pieces)
    if args.files:
        from ..midi import read_midi
        from . import tokenizer as tk

        held = [np.array(tk.encode(read_midi(f)), np.int16) for f in args.files]
        ref_scores = [tk.decode(t) for t in held]
        where = f"{len(held)} files"
    else:
        from . import tokenizer as tk

        held = [p.tokens for p in split[args.split]]
        ref_scores = [tk.decode(p.tokens) for p in split[args.split]]
        where = f"{args.corpus} {args.split} split ({len(held)} pieces)"
    if not held:
        raise UsageError(f"eval-model: nothing to evaluate in {where}")
    result: dict[str, Any] = {"data": where, "models": {}, "samples": {}}
    nets: dict[str, Any] = {}
    done: dict[Path, tuple[Any, dict[str, Any]]] = {}  # one evaluation per file
    shipped = _model_path(args.model)
    wanted = [("shipped", shipped, True),
              ("lstm", Path(args.lstm) if args.lstm else DEFAULT_LSTM, bool(args.lstm)),
              ("transformer", Path(args.transformer) if args.transformer else DEFAULT_TRANSFORMER,
               bool(args.transformer))]
    on_asap = any(kind == "asap" for kind, _ in corpus.parse_sources(args.corpus))
    for name, p, required in wanted:
        if on_asap and not required and name != "shipped":
            continue  # the default comparison models are chorale models: on ASAP only when asked
        if not p.is_file():
            if required:
                raise ModelError(f"{p}: no such model checkpoint")
            arch = done[shipped.resolve()][1]["arch"]
            if arch != name:
                log.warning("%s: no checkpoint; skipping the %s", p, name)
                continue
            p = shipped  # the shipped model is this architecture
        key = p.resolve()
        if key not in done:
            if not quiet:
                sys.stderr.write(f"NLL of {p.name} on {where}...\n")
            model, cfg, _ = load_model(p)
            r = model_nll(model, held)
            done[key] = (model, {**r.to_json(), "arch": cfg.arch, "path": str(p)})
        nets[name] = done[key][0]
        result["models"][name] = done[key][1]
    if args.ngram_order > 0:
        kn = KneserNey(order=args.ngram_order).fit([p.tokens for p in split["train"]])
        r = kn.nll(held)
        result["models"][f"ngram{args.ngram_order}"] = {**r.to_json(), "arch": "interpolated Kneser-Ney"}
    spec = _spec(args.spec)
    sampled: dict[int, Any] = {}
    for name, model in nets.items():
        if id(model) not in sampled:
            samples = [generate(model, spec, args.sample_seconds, seed=s, top_p=args.top_p).score
                       for s in range(args.samples)]
            sampled[id(model)] = sample_statistics(samples, ref_scores)
        result["samples"][name] = sampled[id(model)]
    asap_roots = [arg for kind, arg in corpus.parse_sources(args.corpus) if kind == "asap"]
    if asap_roots and not args.files:
        result.update(_eval_rendering(args, asap_roots[0], cache, quiet))
        result["references"] = REFERENCES
    if args.json:
        sys.stdout.write(json.dumps(_json_safe(result), indent=2) + "\n")
        return 0
    sys.stdout.write(f"evaluated on {where}\n")
    for name, m in result["models"].items():
        sys.stdout.write(f"  {name:12s} {_fmt(m['nll_per_event'], 4)} nats/event  "
                         f"{_fmt(m['nll_per_note'], 4)} nats/note\n")
    if asap_roots:
        ref = REFERENCES["nll_per_event"]
        sys.stdout.write(f"  {'(published)':12s} Performance RNN {ref['Performance RNN']}, Music Transformer "
                         f"{ref['Music Transformer']} nats/event (Piano-e-Competition); target <= {ref['target']}\n")
    for name, st in result["samples"].items():
        sys.stdout.write(f"  samples of {name} (distance to held-out):\n")
        for k, v in st.items():
            extra = f" (value {v['value']}, held-out {v['reference']})" if "value" in v else ""
            sys.stdout.write(f"    {k:20s} {v['distance']}{extra}\n")
    if "rendering" in result:
        sys.stdout.write(f"rendering, mean over {args.split} performances (alignment rate "
                         f"{result['alignment_rate']:.3f}):\n")
        sys.stdout.write(f"  {'':8s} {'velocity r':>10s} {'tempo r':>8s} {'artic. r':>8s} {'vel. MAE':>8s}  "
                         f"n (r defined on: velocity/tempo/artic.)\n")
        for name, m in result["rendering"].items():
            dfn = "/".join(str(v) for v in m.get("defined", {}).values())
            sys.stdout.write(f"  {name:8s} {_fmt(m['velocity_r']):>10s} {_fmt(m['tempo_r']):>8s} "
                             f"{_fmt(m['articulation_r']):>8s} {_fmt(m['velocity_mae'], 2):>8s}  "
                             f"{m['performances']} ({dfn})\n")
        sys.stdout.write("  targets: velocity r >= 0.6, tempo r >= 0.5 and above rules; human-to-human "
                         "on ASAP (issue): velocity 0.62, articulation 0.65, tempo 0.69\n")
        sys.stdout.write("distributions vs the human performances, Jensen-Shannon (bits):\n")
        for name, d in result["distributions"].items():
            sys.stdout.write(f"  {name:8s} " + "  ".join(f"{k} {v:.4f}" for k, v in d.items()) + "\n")
        sys.stdout.write("  overall: Pianist Transformer 0.1634, VirtuosoNet 0.2791, plain score 0.3200; "
                         "target < 0.163\n")
    return 0


def _marks_progress(quiet: bool) -> Any:
    def prog(i: int, n: int) -> None:
        if not quiet and (i % 50 == 0 or i == n):
            sys.stderr.write(f"\rreading the scores' dynamics and tempo marks: {i}/{n}" + ("\n" if i == n else ""))

    return prog


def _eval_rendering(args: argparse.Namespace, root: str, cache: Path, quiet: bool) -> dict[str, Any]:
    from .asap import attach_score_marks, load_asap
    from .eval_render import evaluate_rendering, flat, model_renderer, rules

    c = load_asap(root, cache_dir=cache)
    perfs = c.split(args.split)
    attach_score_marks(c, cache_dir=cache, progress=_marks_progress(quiet))
    renderers: dict[str, Any] = {}
    rpath = Path(args.render_model) if args.render_model else DEFAULT_RENDER
    if rpath.is_file():
        from .render_net import load

        renderers["model"] = model_renderer(load(rpath)[0])
    elif args.render_model:
        raise ModelError(f"{rpath}: no such model checkpoint")
    renderers["rules"] = rules
    renderers["flat"] = flat

    def prog(i: int, n: int) -> None:
        if not args.quiet:
            sys.stderr.write(f"\rrendering {args.split} performances: {i}/{n}" + ("\n" if i == n else ""))

    r = evaluate_rendering(perfs, renderers, root=Path(root), progress=prog)
    return {"alignment_rate": c.alignment_rate(), "performances_without_alignment": c.missing_match, **r}


# ---------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    _need_torch("train")
    from .train import run

    return run(args)


# ---------------------------------------------------------------- registration


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `robo-player train` and `python -m robo_player.model.train` (one
    definition, torch-free; the defaults are TrainConfig's, checked by a test)."""
    p.add_argument("--corpus", default="music21:bach,palestrina",
                   help="music21:NAME[,NAME], midi:FOLDER and/or asap:FOLDER (ASAP's root), joined "
                        "by + (default music21:bach,palestrina)")
    p.add_argument("--arch", choices=["lstm", "transformer", "render"], default="lstm",
                   help="lstm / transformer: generative performance models; render: the "
                        "score-conditioned rendering network (needs asap:PATH) (default lstm)")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="best weights go here")
    p.add_argument("--d-model", type=int, default=None, help="width (default 256)")
    p.add_argument("--layers", type=int, default=None, help="layers (default: lstm 2, transformer 4)")
    p.add_argument("--heads", type=int, default=4, help="transformer: attention heads")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout between layers")
    p.add_argument("--features", action="store_true",
                   help="the network also reads the performance state (held keys, time since onsets)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the corpus at most")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per training sequence")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument("--patience", type=int, default=3,
                   help="stop after this many epochs without a better validation loss")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long (0: no limit)")
    p.add_argument("--no-augment", action="store_true", help="no transposition or tempo stretch")
    p.add_argument("--corr-weight", type=float, default=0.3,
                   help="render: weight of the (1 - Pearson r) loss on velocity and tempo beside the "
                        "squared errors (0: squared errors only)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    p.add_argument("--init-from", metavar="MODEL.pt", default=None,
                   help="start from these weights (same --arch/--d-model/--layers; --features may be new)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data order, initial weights)")
    p.add_argument("--cache", default=None,
                   help="parsed-corpus cache folder (default ~/.cache/robo_player)")
    p.add_argument("--limit-pieces", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--valid-pieces", type=int, default=0,
                   help="validate on the first N validation pieces only (default 0: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: Any) -> None:
    from .generate import DEFAULT_TOP_P  # numpy only: the CLI registers without torch

    """Add ``train``, ``generate``, ``perform`` and ``eval-model`` to the CLI."""
    p = subparsers.add_parser("train", help="train a performance model on a corpus",
                              description="Train a performance model (LSTM or relative-position "
                                          "Transformer). Multi-GPU: torchrun --nproc_per_node N "
                                          "-m robo_player.model.train ...")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "generate", help="compose a performance playable on a spec", formatter_class=fmt,
        description="Compose new music with the performance model (dynamics, pedal and timing as "
                    "it learnt them), sampled under the hardware mask so the spec plays every note "
                    "unaltered. Needs the `model` extra (torch).")
    p.add_argument("--model", default=None,
                   help=f"checkpoint (None: {DEFAULT_MODEL.name} in the shipped models/)")
    p.add_argument("--spec", default="piano-88-grand", help="hardware spec name or file")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="length of music to compose, in seconds (at most 3600)")
    p.add_argument("--primer", help='primer notes, e.g. "C4 E4 G4"')
    p.add_argument("--primer-midi", metavar="FILE", help="primer from a MIDI file")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0)")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help="nucleus sampling mass (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same piece)")
    p.add_argument("--no-mask", action="store_true", help="no hardware mask (to compare)")
    p.add_argument("--quiet", action="store_true", help="no progress line for long pieces")
    p.add_argument("--out", required=True, metavar="OUT.mid", help="MIDI file to write")
    p.set_defaults(func=cmd_generate)

    p = subparsers.add_parser("perform", help="render a plain score expressively (rules, or --model)",
                              description="Add dynamics and timing to a plain score: rule-based "
                                          "(Director Musices style, the default) or with a performance "
                                          "model (--model).")
    p.add_argument("score", metavar="SCORE.mid")
    p.add_argument("--out", required=True, metavar="PERFORMED.mid", help="the performed MIDI file to write")
    for name, help_ in (("phrase-arch", "phrase arch"), ("high-loud", "high-loud"),
                        ("duration-contrast", "duration contrast"), ("melodic-charge", "melodic charge"),
                        ("final-ritard", "final ritard")):
        p.add_argument(f"--k-{name}", type=float, default=None,
                       help=f"rules: quantity k of the {help_} rule (default 1, 0 = off)")
    p.add_argument("--noise-ms", type=float, default=None, help="rules: 1/f timing deviations, std in ms (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the timing noise and sampling")
    p.add_argument("--model", default=None, metavar="MODEL.pt",
                   help="render with this performance model instead of the rules")
    p.add_argument("--temperature", type=float, default=None,
                   help="model: sampling temperature of its choices (default 1, 0 = most likely)")
    p.add_argument("--max-shift-ms", type=int, default=None,
                   help="model: how far an onset may move, in 10 ms steps (default 30, 0 = velocities only)")
    p.set_defaults(func=cmd_perform)

    p = subparsers.add_parser(
        "eval-model", help="NLL, rendering and sample statistics on held-out pieces", formatter_class=fmt,
        description="Evaluate the performance models on a corpus's held-out split: NLL per event and "
                    "per note (and a Kneser-Ney n-gram), statistics of masked samples against the "
                    "held-out pieces, and with --corpus asap:PATH the rendering of each test score "
                    "against its human performances (model, rules, flat, human). Needs the `model` "
                    "extra (torch); music21 corpora not yet cached need the `corpus` extra.")
    p.add_argument("--model", default=None, help="shipped model (None: models/performance.pt)")
    p.add_argument("--lstm", default=None,
                   help="LSTM to compare (None: models/lstm.pt, or the shipped model if it is one)")
    p.add_argument("--transformer", default=None,
                   help="Transformer to compare (None: models/transformer.pt, or the shipped model)")
    p.add_argument("--render-model", default=None,
                   help="rendering network for asap: corpora (None: models/render.pt where present)")
    p.add_argument("--corpus", default="music21:bach,palestrina",
                   help="music21:NAME[,NAME], midi:FOLDER or asap:FOLDER (ASAP's root), joined by +")
    p.add_argument("--split", choices=["valid", "test"], default="test", help="held-out split")
    p.add_argument("--files", nargs="+", metavar="MIDI", help="evaluate on these files instead")
    p.add_argument("--ngram-order", type=int, default=6, help="Kneser-Ney order (0: skip the n-gram)")
    p.add_argument("--samples", type=int, default=4, help="samples per model for the statistics")
    p.add_argument("--sample-seconds", type=float, default=20.0, help="length of each sample")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help="nucleus mass of the samples")
    p.add_argument("--spec", default="piano-88-grand", help="spec the samples are masked to")
    p.add_argument("--cache", default=None, help="parsed-corpus cache folder (None: ~/.cache/robo_player)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print JSON (NaN as null)")
    p.set_defaults(func=cmd_eval)
