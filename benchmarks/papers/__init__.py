"""The paper reproductions run by ``benchmarks/reproduce.py``: one module per paper, each
with ``SCALES`` (``smoke``, ``reduced``, ``full``) and ``run(scale, out, workers) -> rows``
(the table rows of `common.table`)."""
