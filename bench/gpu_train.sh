#!/bin/sh
# One prepared run for a session that is lent a GPU (the device tool's H200; about
# 9 minutes): trains the two models the performance-model issue still lacks, with
# bf16 autocast, each for MINUTES (default 3.5) with its cosine schedule fitted to that
# budget, then prints their test NLL beside the shipped model's, one table.
#
#   the device tool:  run(command="sh bench/gpu_train.sh", timeout_s=600,
#                         carry=["cache/music21-bach-c2d752276a.npz",
#                                "cache/music21-palestrina-e379605159.npz"])
#                     (the two parse-cache files, 29 MB, beside the 20 MB tree: under the
#                     64 MiB a call takes; not cache/ whole, its runs/ is big)
#   here, on the CPU, as a check of the script itself (seconds):
#                     DEVICE=cpu MINUTES=0.05 TINY=1 OUT=/tmp/gpu sh bench/gpu_train.sh
#
# Needs only torch and numpy (the device's python3 has both): the corpus comes from the
# parse cache (cache/music21-bach-*.npz, cache/music21-palestrina-*.npz, made here by
# `robo-player train` or scripts/build_corpus.py), so neither music21 nor mido is read.
# Writes to $OUT: the checkpoints in float16 (the files that come back are capped at
# 16 MiB; the loader casts them back to float32), the training logs and results.json.
set -eu
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-3.5}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
ls cache/music21-bach-*.npz cache/music21-palestrina-*.npz >/dev/null || {
    echo "gpu_train: no corpus cache under cache/ (carry its two .npz files)" >&2; exit 2; }
if [ "${TINY:-0}" = 1 ]; then  # the CPU check: tiny networks, a few pieces
    LSTM="--d-model 32 --layers 1"; TF="--d-model 32 --layers 1 --heads 2"; LIM="--limit-pieces 40"
else
    LSTM="--d-model 512 --layers 3"; TF="--d-model 512 --layers 6 --heads 8"; LIM=""
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# shellcheck disable=SC2086
$PY -m robo_player.model.train --arch lstm $LSTM --features --device "$DEVICE" \
    --epochs 200 --max-minutes "$MINUTES" --batch-size 64 --lr 2e-3 --patience 200 \
    --cache cache --quiet $LIM --out "$OUT/lstm_feat_3x512.pt" 2>&1 | tee "$OUT/lstm.log"
# shellcheck disable=SC2086
$PY -m robo_player.model.train --arch transformer $TF --features --device "$DEVICE" \
    --epochs 200 --max-minutes "$MINUTES" --batch-size 64 --lr 5e-4 --patience 200 \
    --cache cache --quiet $LIM --out "$OUT/tf_feat_6x512.pt" 2>&1 | tee "$OUT/tf.log"
$PY - "$OUT" "$DEVICE" <<'EOF'
"""Test NLL of the new checkpoints and the shipped model; float16 copies for the trip back."""
import json
import sys
import time
from pathlib import Path

import torch

from robo_player.model import corpus
from robo_player.model.checkpoint import load_model, read_checkpoint
from robo_player.model.evaluate import model_nll

out, device = Path(sys.argv[1]), sys.argv[2]
test = [p.tokens for p in corpus.by_split(corpus.load_corpus("music21:bach,palestrina",
                                                             cache_dir="cache"))["test"]]
rows = {}
for name in ("lstm_feat_3x512.pt", "tf_feat_6x512.pt", "../../models/performance.pt"):
    path = (out / name).resolve() if not name.startswith("..") else Path("models/performance.pt")
    if not path.is_file():
        rows[name] = {"error": "missing"}
        continue
    model, cfg, meta = load_model(path, device=device)
    t0 = time.time()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        nll = model_nll(model, test)
    rows[path.name] = {"test_nll_per_note": round(nll.per_note, 4),
                       "test_nll_per_event": round(nll.per_event, 4),
                       "valid_nll_per_note": meta.get("valid_nll_per_note"),
                       "epochs": meta.get("epochs"), "train_seconds": meta.get("train_seconds"),
                       "tokens_seen": meta.get("tokens_seen"), "eval_s": round(time.time() - t0, 1)}
    if path.parent == out.resolve():  # half the size for the trip back
        blob = read_checkpoint(path)
        blob["state_dict"] = {k: v.half() if v.is_floating_point() else v
                              for k, v in blob["state_dict"].items()}
        torch.save(blob, out / (path.stem + ".f16.pt"))
        path.unlink()
        path.with_name(path.name + ".ckpt").unlink(missing_ok=True)  # optimizer state: too big
(out / "results.json").write_text(json.dumps(rows, indent=1))
print(f"{'model':28s} {'test nats/note':>15s} {'nats/event':>11s} {'epochs':>7s} {'tokens':>12s}")
for k, r in rows.items():
    print(f"{k:28s} {r.get('test_nll_per_note', '-'):>15} {r.get('test_nll_per_event', '-'):>11} "
          f"{r.get('epochs', '-')!s:>7} {r.get('tokens_seen', '-')!s:>12}")
EOF
