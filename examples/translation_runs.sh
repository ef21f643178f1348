#!/usr/bin/env bash
# The runs behind the README's translation results, one after another (each run trains for at most
# an hour on the 2-core CPU; run them on an otherwise idle machine). RUNS names the output folder.
#   bash examples/translation_runs.sh
set -euo pipefail
R=${RUNS:-runs}
pf() { python -m polyformer.cli.main "$@"; }

# baselines: no translation at all, and SmolLM2-135M-Instruct prompted zero-shot (greedy)
pf evaluate --task translate --baseline copy --data bible-en-es --out "$R/copy-en-es"
pf evaluate --task translate --baseline copy --data bible-en-es --direction es-en --out "$R/copy-es-en"
time pf evaluate --task translate --model SmolLM2-135M-Instruct --data bible-en-es --num-beams 1 \
    --max-new-tokens 160 --batch-size 16 --out "$R/smollm2-zero-shot-en-es"

# the encoder-decoder from scratch, both directions
time pf finetune --config examples/translate_bible_en_es.yaml --out "$R/bible-en-es"
time pf evaluate --task translate --model "$R/bible-en-es" --data bible-en-es --out "$R/bible-en-es/test"
time pf finetune --config examples/translate_bible_es_en.yaml --out "$R/bible-es-en"
time pf evaluate --task translate --model "$R/bible-es-en" --data bible-en-es --direction es-en --out "$R/bible-es-en/test"

# the decoder from scratch: same width, parameters, tokenizer and training pairs
time pf finetune --config examples/translate_bible_decoder_en_es.yaml --tokenizer "$R/bible-en-es/model" \
    --out "$R/bible-decoder-en-es"
time pf evaluate --task translate --model "$R/bible-decoder-en-es" --data bible-en-es --out "$R/bible-decoder-en-es/test"

# SmolLM2-135M-Instruct fine-tuned through its chat template
time pf finetune --config examples/translate_smollm2_bible_en_es.yaml --out "$R/smollm2-bible-en-es"
time pf evaluate --task translate --model "$R/smollm2-bible-en-es" --data bible-en-es --num-beams 1 \
    --max-new-tokens 160 --batch-size 16 --out "$R/smollm2-bible-en-es/test"

for run in bible-en-es bible-es-en bible-decoder-en-es smollm2-bible-en-es; do pf plot "$R/$run"; done
