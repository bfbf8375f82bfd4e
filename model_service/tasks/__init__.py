"""The source document's other Auto classes, as tasks: each a preprocess, a forward and a postprocess.

``names`` (light: no torch) says which tasks there are, how a catalog entry forces one, and which
setting and checkpoint a missing one needs; ``kinds`` tells a checkpoint's kind from its config;
the task modules (``tokenize``, ``classify``, ``entities``, ``answer``, ``similar``, ``seq2seq``)
run on a loaded model; ``batcher`` batches the requests of one task on one model and ``desk``
routes a request to the model (or the honest fallback) that serves it.

Importing this package stays light: cogs and the config import ``names``.
"""
