"""modelops benchmarks (issue 9): each one measures a part of the product against a baseline run
side by side in the same invocation, and reports medians over repeats and ratios.

- :mod:`benchmarks.serving`: ``modelops-runtime serve`` vs ``mlflow models serve`` (same model,
  same load generator), and the in-process ``predict`` limit;
- :mod:`benchmarks.drift`: the drift library and the ``modelops-runtime drift`` job vs a plain
  scipy implementation of the same tests;
- :mod:`benchmarks.training`: the training Job vs a bare in-process fit and evaluate;
- :mod:`benchmarks.operator`: the operator in the sandbox vs a minimal kopf operator against the
  same API emulator.

``python -m benchmarks.run [--quick] [--only NAME]`` (``make bench``) runs them and writes
``benchmarks/results/<name>.json`` and ``benchmarks/RESULTS.md``. These are benchmarks, not
tests: nothing here asserts a time; ``tests/benchmarks`` only checks that each one runs on tiny
sizes.
"""
