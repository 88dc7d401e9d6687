"""aigc: a training pipeline for generative models.

The library behind the Prefect flows and the `aigc` CLI. Plain Python, no Prefect:
each stage is a core function (data in, data out) plus a thin edge that loads and saves.
Nothing here does work at import time.
"""

__version__ = "0.1.0"
