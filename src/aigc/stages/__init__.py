"""The pipeline's stages, one module each, named as their Prefect task, DVC stage and CLI verb.

    collect   sources -> a raw snapshot (data/raw, `dvc add`)            CollectedSnapshot
    clean     raw -> clean records + quarantine (DVC stage `clean`)       CleanedDataset
    label     clean -> labeled train/validation/test (DVC stage `label`)  LabeledDataset
    version   labeled -> a data version on the DVC remote                 Dataset
    train     dataset -> a trained model in an MLflow run (Ray)           TrainedModel
    evaluate  model + dataset -> figures and per-document scores (Ray)    Evaluation
    register  trained + evaluated -> a registry version, alias challenger ModelVersion
    promote   challenger vs champion on the same data -> decision applied Decision

Each module is the stage's edge: it reads the inputs, calls the core function (in
aigc.data, aigc.train, aigc.text.evaluate, aigc.registry) and writes the outputs, and returns a
small frozen reference to them, never a DataFrame.
"""
