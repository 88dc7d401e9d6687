"""Model registry: decide whether a freshly trained challenger replaces the champion.

    from aigc.registry.decide import PromotionPolicy, Scorecard, decide
    decision = decide(challenger, champion, PromotionPolicy())

`decide` is pure (no MLflow, no I/O) and unit-tested on hand-made scorecards; applying a
decision (registering the model version, moving the champion alias) is a separate step.
"""
