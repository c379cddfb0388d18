"""Benchmarks for jinav3: the model-card way vs jinav3 (and sentence-transformers), same process, same inputs.

Run ``python -m benchmarks.run --help``. Nothing here is imported by the library or by the tests.
"""
