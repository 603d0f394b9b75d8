#!/bin/bash
# The single scoring run on the blind test split (written by someone else; {"text", "intent"}).
# Base model prompted with ten examples (raw completion) vs the fine-tuned adapter (chat template,
# the training prompt). Prints accuracies only; then copies the split into tests/finetune/ with
# its sha256. Usage: run_blind.sh MODEL.gguf ADAPTER.gguf [TEST.jsonl] [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model=$1
adapter=$2
test=${3:-/work/blind/ft/test.jsonl}
work=${4:-/tmp/ft/blind}
bin=${EDGEWISE:-$here/../../target/release/edgewise}
mkdir -p "$work"
sha=$(sha256sum "$test" | cut -d' ' -f1)
python3 "$here/make_task.py" convert "$test" "$work" >/dev/null
"$bin" finetune --model "$model" --predict "$work/fewshot.jsonl" --raw --max-tokens 6 >"$work/pred_base_fewshot.jsonl" 2>"$work/base.log"
# The adapter may still be training when this starts: wait for it.
while [ ! -f "$adapter" ]; do sleep 10; done
"$bin" finetune --model "$model" --predict "$work/zeroshot.jsonl" --lora "$adapter" --max-tokens 8 >"$work/pred_tuned.jsonl" 2>"$work/tuned.log"
echo "blind test $test sha256 $sha"
echo -n "base model, 10-shot: "; python3 "$here/score.py" "$work/fewshot.jsonl" "$work/pred_base_fewshot.jsonl"
echo -n "fine-tuned adapter:  "; python3 "$here/score.py" "$work/zeroshot.jsonl" "$work/pred_tuned.jsonl"
cp "$test" "$here/blind_test.jsonl"
echo "$sha  blind_test.jsonl" >"$here/blind_test.jsonl.sha256"
