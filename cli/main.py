"""The `aigc` command line: the outermost layer (cli → flows → tasks → src/aigc).

    aigc data collect|clean|label|version   one data stage (clean and label are what DVC runs)
    aigc data refresh    the data flow in Prefect: collect → clean → label → version, text
                         then images
    aigc data status     the current data version, its counts, and the earlier versions
    aigc data checkout   restore a data version from the DVC cache or remote
    aigc data commit     git-commit exactly the files that name the data versions
    (`--modality image` points collect, clean, label, version, status and checkout at the
    image data: data/image/, the DVC stages image_clean and image_label, image.* params)
    aigc train           the train stage on the current data version (Ray), then evaluate
    aigc evaluate        the evaluate stage: a logged model on the test split
    aigc promote         the promote stage: the gate decides on the current challenger
    aigc generate        sample text, or a grid of images, from a logged model
    aigc export MODEL_URI OUT_DIR   a text model as a Hugging Face folder (transformers)
    aigc run             the whole pipeline (change-aware), with a promotion decision
    aigc schedule        serve `aigc run` as a Prefect deployment on a cron schedule
    aigc registry show|history|promote|rollback   versions, decisions, manual overrides
    aigc reproduce NAME/VERSION   rebuild a model from its data version, compare the metrics
    aigc params          print the effective configuration (params.yaml + --set + defaults)
    aigc stack up|status|down   real servers on 127.0.0.1: PostgreSQL, S3, MLflow, Prefect

Every command takes `--params FILE` and repeatable `--set section.key=value`; none writes
params.yaml. `aigc --profile stack COMMAND` (or `--profile FILE`) runs it against servers: the
profile's variables are exported and its params overlay is layered under the --set overrides.
Errors that a user can fix (`aigc.errors.UserError`) are printed as one message naming the
input and the fix, exit code 2.
"""

# Importing a verb module registers its commands on `app`; the order is the order of `aigc
# --help`.
from cli import data, models, run, registry, params, stack  # noqa: F401, I001
from cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
