"""The worker process: Faust's app and consumer, the stages that hand batches to the rules,
publishing, read marks, metrics and web pages.

* :mod:`~stream.worker.app`: the Faust app, its agents, timers and partition signals;
* :mod:`~stream.worker.runtime`: the partitions a worker owns, and their batches;
* :mod:`~stream.worker.router`: input messages decoded and routed to work partitions;
* :mod:`~stream.worker.publisher`: what the partitions decide, published in a safe order;
* :mod:`~stream.worker.lane`: each fetch's messages handed over as lists;
* :mod:`~stream.worker.recovery`: a partition rebuilt from its store and the topics;
* :mod:`~stream.worker.watermark`: the read marks the deadlines wait for;
* :mod:`~stream.worker.catchup`: positions processed, committed, and true ends;
* :mod:`~stream.worker.deadletters`: dead letters written once across replays;
* :mod:`~stream.worker.heap`: the garbage collector and C heap;
* :mod:`~stream.worker.faust_patches`: every change to Faust's internals, in one place;
* :mod:`~stream.worker.metrics` and :mod:`~stream.worker.web`: what operators see.
"""
