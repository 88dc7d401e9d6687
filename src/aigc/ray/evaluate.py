"""Text evaluation spread over Ray: one Ray task per shard of the test set, one merged report.

    report, nodes = evaluate_on_ray(bundle_dir, test_frame, label_params, settings, shards, ...)

Needs a connected Ray (`aigc.ray.cluster.connect`). The shards' Ray nodes, in shard order,
are the evaluation run's tag EVALUATION_NODES_TAG.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from aigc.text.generator import TextGenerator

EVALUATION_NODES_TAG = "aigc.ray_evaluation_node_ids"  # the evaluation shards', in shard order


def evaluate_on_ray(
    bundle_dir: Path,
    test_frame,
    label_params,
    settings,
    shards: int,
    unigram_bits_per_character: float | None,
    classifier=None,
    on_progress: Callable[[str], None] | None = None,
):
    """Evaluate the bundle on `test_frame`, one Ray task per shard; merged as one report.

    Documents, continuation documents and label-control labels are dealt round-robin to
    the shards; every sample's seed derives from its document or label, so the report is the
    same for any number of shards. `on_progress` hears a sentence as each shard finishes.
    Returns the report and the Ray node id each shard ran on, in shard order."""
    import ray

    from aigc.text.evaluate import continuation_ids, control_labels, merge_shards, summarize

    generator = TextGenerator.load(bundle_dir)
    wanted = continuation_ids(test_frame, settings.continuation_documents)
    labels = control_labels(generator, label_params)
    shards = max(1, min(shards, len(test_frame)))
    frame = test_frame[["id", "text", "label"]].reset_index(drop=True)
    # SPREAD: on a cluster, the shards go to different nodes rather than queue on one
    evaluate_shard = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_evaluate_shard)
    bundle = str(bundle_dir)
    futures = [
        evaluate_shard.remote(
            bundle,
            frame.iloc[index::shards].reset_index(drop=True),
            label_params,
            settings,
            wanted,
            labels[index::shards],
            classifier,
        )
        for index in range(shards)
    ]
    started, finished, pending = time.perf_counter(), {}, list(futures)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        shard, _ = finished[ready[0]] = ray.get(ready[0])
        if on_progress is not None:
            on_progress(
                f"evaluation shard {len(finished)}/{shards} done after "
                f"{time.perf_counter() - started:.0f}s: {len(shard.documents)} documents scored, "
                f"{len(shard.continuations)} continued, {len(shard.label_control)} samples "
                "classified for label control"
            )
    merged = merge_shards(finished[future][0] for future in futures)  # in shard order
    nodes = [finished[future][1] for future in futures]
    return summarize(merged, unigram_bits_per_character=unigram_bits_per_character), nodes


def _evaluate_shard(bundle_dir, documents, label_params, settings, wanted, labels, classifier):
    from aigc.text.evaluate import evaluate_shard

    torch.set_num_threads(1)
    import ray

    generator = TextGenerator.load(bundle_dir)
    shard = evaluate_shard(
        generator,
        documents,
        label_params,
        settings,
        continuation_ids=wanted,
        labels=labels,
        classifier=classifier,
    )
    return shard, ray.get_runtime_context().get_node_id()
