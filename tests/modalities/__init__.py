"""Modalities defined only in the tests: proof that a new one needs no change to the library."""
