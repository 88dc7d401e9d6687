"""The pipeline's stages, one module each for every modality, named as their Prefect task, DVC
stage and CLI verb.

    collect   sources -> a raw snapshot (raw/, `dvc add`)                 CollectedSnapshot
    clean     raw -> clean records + quarantine (DVC `clean`, `image_clean`) CleanedDataset
    label     clean -> labeled train/validation/test (DVC `label`, …)     LabeledDataset
    version   labeled -> a data version on the DVC remote                 Dataset
    train     dataset -> a trained model in an MLflow run (Ray)           TrainedModel
    evaluate  model + dataset -> figures and per-document scores          Evaluation
    register  trained + evaluated -> a registry version, alias challenger ModelVersion
    promote   challenger vs champion on the same data -> decision applied Decision

Each module is the stage's edge: it takes the Modality (or a Dataset, which names it), reads
the inputs, calls the modality's core (aigc.text, aigc.image) or a shared one (aigc.train,
aigc.registry), writes the outputs, and returns a small frozen reference to them, never a
DataFrame.
"""
