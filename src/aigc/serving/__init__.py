"""Serving a trained generator: `pyfunc` is the MLflow pyfunc model `aigc.tracking` logs.

Nothing is imported here, so `import aigc.serving` does not pull in MLflow.
"""
