"""Training: the plain-PyTorch loop (`loop.train_loop`) that the Ray runner will wrap.

Nothing in this package imports Ray; the runner that does lives beside it and passes hooks.
"""
