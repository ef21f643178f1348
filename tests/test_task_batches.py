"""The fine-tuning data source: seeded epochs, pure batches, ranks that split the global batch."""

from __future__ import annotations

import torch

from polyformer.tasks.batches import ExampleSource, collate
from polyformer.training.objectives import IGNORE_INDEX


def _features(count: int) -> list[dict]:
    return [{"input_ids": list(range(1, 2 + i % 5)), "labels": i} for i in range(count)]


def test_every_epoch_is_a_seeded_permutation_and_batches_are_pure():
    source = ExampleSource(_features(10), batch_size=4, seed=3, pad_id=0, arch="encoder")
    seen = torch.cat([source.train_batch(step, 0)["labels"] for step in range(5)]).tolist()  # 20 rows = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # each epoch has its own order
    again = ExampleSource(_features(10), batch_size=4, seed=3, pad_id=0, arch="encoder")
    assert torch.equal(again.train_batch(4, 0)["input_ids"], source.train_batch(4, 0)["input_ids"])
    other_seed = ExampleSource(_features(10), batch_size=4, seed=4, pad_id=0, arch="encoder")
    assert other_seed.train_batch(0, 0)["labels"].tolist() != source.train_batch(0, 0)["labels"].tolist()
    assert source.steps_per_epoch() == 3 and list(source.eval_batches()) == []


def test_ranks_and_micro_batches_split_the_stream():
    source = ExampleSource(_features(12), batch_size=4, seed=0, pad_id=0, arch="encoder", micro_batches=2)
    whole = [source.train_batch(0, micro)["labels"].tolist() for micro in range(2)]
    halves = [source.train_batch(0, micro, rank, 2)["labels"].tolist() for micro in range(2) for rank in range(2)]
    assert halves[0] + halves[1] == whole[0] and halves[2] + halves[3] == whole[1]
    assert source.train_batch(1, 0)["labels"].tolist() not in whole  # step 1 starts after step 0's two micro-batches


def test_collate_pads_right_and_feeds_encoder_decoders_both_sides():
    features = [{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1], "labels": [1, -100, 2]},
                {"input_ids": [8], "token_type_ids": [0], "labels": [3]}]
    batch = collate(features, pad_id=9, arch="encoder-decoder")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["labels"].tolist() == [[1, -100, 2], [3, IGNORE_INDEX, IGNORE_INDEX]]
    assert torch.equal(batch["decoder_input_ids"], batch["input_ids"])
    scores = collate([{"input_ids": [1], "labels": 0.5}, {"input_ids": [2], "labels": 1.0}], 0, "decoder")
    assert scores["labels"].dtype == torch.float32 and "decoder_input_ids" not in scores
    spans = collate([{"input_ids": [1, 2], "start_positions": 1, "end_positions": 1}], 0, "encoder")
    assert spans["start_positions"].tolist() == [1] and spans["end_positions"].tolist() == [1]


def test_length_buckets_keep_epochs_whole_and_pad_less():
    features = [{"input_ids": list(range(1, 2 + (7 * i) % 40)), "labels": i} for i in range(64)]
    plain = ExampleSource(features, batch_size=8, seed=1, pad_id=0, arch="encoder")
    bucketed = ExampleSource(features, batch_size=8, seed=1, pad_id=0, arch="encoder", bucket_batches=8)
    batches = [bucketed.train_batch(step, 0) for step in range(8)]  # one epoch
    assert sorted(torch.cat([b["labels"] for b in batches]).tolist()) == list(range(64))
    padding = [sum(int((b["attention_mask"] == 0).sum()) for b in (s.train_batch(k, 0) for k in range(8))) for s in (plain, bucketed)]
    assert padding[1] < padding[0] / 4
    again = ExampleSource(features, batch_size=8, seed=1, pad_id=0, arch="encoder", bucket_batches=8)
    assert torch.equal(again.train_batch(5, 0)["input_ids"], bucketed.train_batch(5, 0)["input_ids"])


def test_eval_features_are_collated_in_order():
    source = ExampleSource(_features(4), batch_size=3, seed=0, pad_id=0, arch="encoder", eval_features=_features(5))
    assert [b["labels"].tolist() for b in source.eval_batches()] == [[0, 1, 2], [3, 4]]
