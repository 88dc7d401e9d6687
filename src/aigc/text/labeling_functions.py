"""Python labeling functions: the place for rules that params.yaml cannot express.

The label stage imports this module, so every function registered here votes. Keyword,
regex and module rules belong in params.yaml (`label.topics`); write a function here when a
rule needs code, e.g.:

    @labeling_function("concurrency")
    def mentions_lock_objects(frame: pd.DataFrame) -> pd.Series:
        return frame["text"].str.contains(r"\\b(?:RLock|Semaphore|Condition)\\b")

A function receives the whole frame (the clean columns plus `module`) and returns one bool
per record: True votes for the topic, False abstains. It is reported as
`python:<function name>` with its coverage and estimated accuracy; it votes only when its
topic is one of params' topics. This file is a dependency of the label stage in dvc.yaml,
so changing it rebuilds the labels.
"""

from __future__ import annotations

import pandas as pd  # noqa: F401  (for the functions defined here)

from aigc.text.topic_rules import labeling_function  # noqa: F401  (the decorator)
