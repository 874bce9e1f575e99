"""Benchmarks of svhn_sweep: ``bench.py`` prints the table, each module beside it measures one thing.

A package, so that the driver imports its parts by one name (``benchmarks.table``) however it is started
(``python benchmarks/bench.py``, ``runpy.run_path``); ``pruning.py`` is a separate benchmark of its own.
"""
