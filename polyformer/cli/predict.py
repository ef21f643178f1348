"""`polyformer predict`: run a model on texts and print one JSON line per input.

Inputs: `--input FILE|-` — `.txt` (one text per line), `.jsonl` / `.csv` records (fields `text`,
`text_a`/`text_b`, `question`/`context`, `tokens`, `id`), or stdin (`-`: a line per text, or a
JSON object per line). Without `--task` the model's own task runs (`polyformer.tasks.inference`:
a classifier classifies, a token classifier tags, an MLM fills masks). Outputs per task:

- classify / pair: `label`, `score` (its probability), `scores` (every label's), `truncated`;
  regression pairs: `score`;
- ner: `entities` — `{entity, text, start, end, score}` with character offsets into the text;
- qa: `answer`, `start`, `end` (characters of the context), `score`;
- fill-mask: `masks` — the top-k tokens for each [MASK] with their probabilities;
- translate: `translation_text` (beam search, `--num-beams`); lm: `generated_text`; both echo
  `source` (and `id`) and say whether the input was `truncated` to fit the context.
"""

from __future__ import annotations

from typing import Optional

import typer

from polyformer.cli import task_options as shared
from polyformer.cli.options import grouped


def predict(
    task: Optional[str] = typer.Option(None, "--task", help="classify | ner | pair | qa | fill-mask | translate | lm "
                                       "(default: the model's own task, from its head)"),
    model: str = shared.MODEL,
    input_: str = typer.Option(..., "--input", help="A .txt / .jsonl / .csv file, or - for stdin."),
    inference: shared.Inference = shared.Inference(),
    top_k: int = typer.Option(5, "--top-k", help="fill-mask: tokens per mask."),
    prompting: shared.Prompting = shared.Prompting(),
    data: Optional[str] = typer.Option(None, "--data", help="--prompt: labelled data whose train split gives the labels and demonstrations."),
    texts: shared.TextColumns = shared.TextColumns(),
    decoding: shared.Decoding = shared.Decoding(),
) -> None:
    """Predict labels / entities / answer spans / masked tokens / translations for each input, as JSON lines."""
    from polyformer.tasks import recipe
    from polyformer.tasks.datasets import read_inputs

    options = shared.task_options(inference, texts, decoding=decoding, prompting=prompting)
    inputs = read_inputs(input_)
    if prompting.prompt:
        rows = _prompted(model, inputs, options, data, prompting.settings(task))
    else:
        rows = recipe.predict_located(task, model, inputs, options, top_k=top_k)
    for row in rows:
        shared.echo_json(row)


def _prompted(model: str, inputs, options, data: Optional[str], settings):
    from polyformer.tasks.classify import CLASSIFY
    from polyformer.tasks.prompting import prompted_classifier

    classifier = prompted_classifier(model, data, options, settings)
    return classifier.predict([CLASSIFY.parse_input(item, where, options) for where, item in inputs], options.batch_size)


def register(app: typer.Typer) -> None:
    app.command("predict")(grouped(predict))
