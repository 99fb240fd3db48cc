"""The `streaming` check: a stage that declares `zoo_streaming` gives on a Structured Streaming
query (each example as a parquet file stream into a memory sink) what it gives in batch."""

from __future__ import annotations

import os
import tempfile

from zoo.testing.compare import _essence, _Fail, rows


def check_streaming(kit) -> None:
    import uuid

    if not getattr(kit.cls, "zoo_streaming", False):
        return  # the stage does not claim streaming support
    for example in kit.examples:
        reference = kit._as_given(example)
        if reference[0] != "ok":
            continue  # examples that fail by design are covered by the other checks
        with tempfile.TemporaryDirectory(prefix="zoo-kit-stream-") as tmp:
            source = os.path.join(tmp, "in")
            example.transform_df.write.parquet(source)
            stream = kit.spark.readStream.schema(example.transform_df.schema).parquet(source)
            name = f"zoo_kit_{uuid.uuid4().hex}"
            try:
                writer = kit._apply(example.stage, example, stream).writeStream.format("memory")
                query = writer.queryName(name).option("checkpointLocation", os.path.join(tmp, "checkpoint")).start()
            except Exception as exc:
                raise _Fail(f"the stage cannot transform a streaming DataFrame: {type(exc).__name__}: "
                            f"{_essence(exc)}") from None
            try:
                query.processAllAvailable()
                streamed = ("ok", rows(kit.spark.table(name)))
            except Exception as exc:
                raise _Fail(f"a streaming query over the example failed: {_essence(exc)}") from None
            finally:
                query.stop()
                kit.spark.catalog.dropTempView(name)
        if streamed != reference:
            raise _Fail("a stream of the example gives different rows than the batch transform")
