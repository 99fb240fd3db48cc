"""The accumulator type through which executors report where they got a model.

Its own small module: executors unpickle it by reference, so it must import nothing heavy."""

from __future__ import annotations

from pyspark.accumulators import AccumulatorParam


class EventsParam(AccumulatorParam):
    """A list accumulator: executors add ``[(host, zoo_home, model, how)]``."""

    def zero(self, value):
        return []

    def addInPlace(self, value1, value2):  # noqa: N802 - pyspark's name
        value1.extend(value2)
        return value1
