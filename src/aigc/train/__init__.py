"""Training: the plain-PyTorch loop (`loop.train_loop`) that the Ray runner wraps.

Nothing in this package imports Ray; the runner that does is `aigc.ray` (its workers pass
the loop hooks).
"""
