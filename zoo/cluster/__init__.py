"""sparkzoo on a cluster: what crosses from the driver to the executors, and what comes back.

- :mod:`zoo.cluster.forwarding`: the ``ZOO_*`` settings the driver forwards with each job, so
  ``export ZOO_MIRRORS=...`` on the driver reaches executors (a node's own environment wins);
- :mod:`zoo.cluster.delivery`: whether a model must travel with the job (``shipModel="auto"``),
  and the one-task-per-executor probe that finds out what the node caches already hold;
- :mod:`zoo.cluster.watching`: executor-side ``ZooError``s raised again on the driver as the same
  class, task failures, retries and lost executors in one line each, and where each node got
  its model;
- :mod:`zoo.cluster.env_archive`: a relocatable environment archive for ``--archives``
  (``zoo cluster-env``).
"""

from __future__ import annotations

from zoo.cluster.forwarding import FORWARDED, forwarded_env
from zoo.cluster.watching import Watch, executor_error, watch

__all__ = ["FORWARDED", "Watch", "executor_error", "forwarded_env", "watch"]
