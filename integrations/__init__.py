"""Thin adapters from jinav3's Encoder to vector stores and frameworks.

Each module imports its own client or framework, installed through an extra
(``pip install "jinav3[qdrant]"`` ...); importing ``jinav3`` itself never imports any of them.
"""
