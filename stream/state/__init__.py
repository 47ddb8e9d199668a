"""What a partition remembers, and how it survives a restart.

* :mod:`~stream.state.visit`: a visit's state and a waiting event;
* :mod:`~stream.state.partition`: all of a partition's, and what changed since its last delta;
* :mod:`~stream.state.changelog` and :mod:`~stream.state.keys`: the ``ecm.state`` documents;
* :mod:`~stream.state.checkpoint`: checkpoints, so a rebuild reads from the last one;
* :mod:`~stream.state.store`: ``memory://`` and ``rocksdb://``.

A partition is rebuilt from its store and the topics by the worker
(:mod:`stream.worker.recovery`).
"""
