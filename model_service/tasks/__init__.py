"""The source document's other Auto classes, as tasks: each a preprocess, a forward and a postprocess.

The task modules (``tokenize``, ``classify``, ``entities``, ``answer``, ``similar``, ``seq2seq``)
run on a loaded model; ``batcher`` batches the requests of one task on one model and ``desk``
routes a request to the model (or the honest fallback) that serves it. Which tasks there are and
how a catalog entry forces one is :mod:`model_service.task_names` (light: no torch); how a
checkpoint's kind is told from its config is :mod:`model_service.checkpoint_kinds`.
"""
