"""The performance model (the ``model`` extra): tokenizer, corpus, networks, training,
constrained generation, expressive rendering and evaluation.

Importing this package never imports torch: :mod:`tokenizer`, :mod:`corpus`,
:mod:`render` and :mod:`cli` are torch-free at import, and the torch modules
(:mod:`networks`, :mod:`train`, :mod:`checkpoint`, :mod:`generate`, :mod:`evaluate`)
are imported only where used.
"""
