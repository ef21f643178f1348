"""`polyformer predict`: run a model on texts and print one JSON line per input.

Inputs: `--input FILE|-` — `.txt` (one text per line), `.jsonl` / `.csv` records (fields `text`,
`text_a`/`text_b`, `question`/`context`, `tokens`, `id`), or stdin (`-`: a line per text, or a
JSON object per line). Without `--task` the model's own task runs (`polyformer.tasks.inference`:
a classifier classifies, a token classifier tags, an MLM fills masks). Outputs per task:

- classify / pair: `label`, `score` (its probability), `scores` (every label's), `truncated`;
  regression pairs: `score`;
- ner: `entities` — `{entity, text, start, end, score}` with character offsets into the text;
- qa: `answer`, `start`, `end` (characters of the context), `score`;
- fill-mask: `masks` — the top-k tokens for each [MASK] with their probabilities.
"""

from __future__ import annotations

from typing import Optional

import typer

from polyformer.cli import task_options as shared


def predict(
    task: Optional[str] = typer.Option(None, "--task", help="classify | ner | pair | qa | fill-mask (default: the model's own task, from its head)"),
    model: str = shared.MODEL,
    input_: str = typer.Option(..., "--input", help="A .txt / .jsonl / .csv file, or - for stdin."),
    max_length: Optional[int] = shared.MAX_LENGTH,
    batch_size: int = shared.BATCH_SIZE,
    device: str = shared.DEVICE,
    stride: Optional[int] = shared.STRIDE,
    top_k: int = typer.Option(5, "--top-k", help="fill-mask: tokens per mask."),
    prompt: bool = shared.PROMPT,
    shots: int = shared.SHOTS,
    data: Optional[str] = typer.Option(None, "--data", help="--prompt: labelled data whose train split gives the labels and demonstrations."),
    verbalizer: Optional[list[str]] = shared.VERBALIZER,
    template: Optional[str] = shared.TEMPLATE,
    instruction: Optional[str] = shared.INSTRUCTION,
    calibrate: bool = shared.CALIBRATE,
    seed: int = typer.Option(0, "--seed", help="--prompt: seed of the demonstrations' choice and order."),
    text_column: Optional[str] = shared.TEXT_COLUMN,
    text_a_column: Optional[str] = shared.TEXT_A_COLUMN,
    text_b_column: Optional[str] = shared.TEXT_B_COLUMN,
) -> None:
    """Predict labels / entities / answer spans / masked tokens for each input, as JSON lines."""
    from polyformer.tasks import recipe
    from polyformer.tasks.datasets import read_inputs

    options = recipe.task_options(shared.columns(text_column, text_a_column, text_b_column, None, None),
                                  max_length=max_length, batch_size=batch_size, device=device, stride=stride)
    inputs = read_inputs(input_)
    if prompt:
        shared.prompted_task(task)
        rows = _prompted(model, inputs, options, data=data, shots=shots, verbalizers=shared.verbalizers(verbalizer),
                         template=template, instruction=instruction, seed=seed, calibrate=calibrate)
    else:
        rows = recipe.predict_located(task, model, inputs, options, top_k=top_k)
    for row in rows:
        shared.echo_json(row)


def _prompted(model: str, inputs, options, data: Optional[str], **prompt):
    from polyformer.tasks.classify import CLASSIFY
    from polyformer.tasks.prompting import prompted_classifier

    classifier = prompted_classifier(model, data, options, **prompt)
    return classifier.predict([CLASSIFY.parse_input(item, where, options) for where, item in inputs], options.batch_size)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
