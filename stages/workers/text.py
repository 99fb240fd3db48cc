"""What runs on the executors for ``text_embedder``: tokenise a batch of texts (Rust, ``tokenizers``),
run the encoder through the worker's cached session, pool the token vectors (the body of ``mapInArrow``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from zoo.errors import StageError
from zoo.runtime.arrow import arrow_values
from zoo.runtime.models import ModelSpec, session_for
from zoo.runtime.sessions import RuntimeOptions

POOLINGS = ("mean", "cls", "none")
TOKENIZER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TextJob:
    """What an executor needs to embed one text column (picklable)."""

    spec: ModelSpec
    tokenizer_json: str
    max_length: int
    pooling: str
    normalize: bool
    output: str
    input_col: str
    batch_size: int
    runtime: RuntimeOptions
    stage: str


@lru_cache(maxsize=4)
def load_tokenizer(tokenizer_json: str, max_length: int):
    """A ``tokenizers`` tokenizer from its JSON, truncating to ``max_length`` and padding each batch to its
    longest text (built once per worker)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.enable_truncation(max_length)
    pad = next((t for t in ("[PAD]", "<pad>", "<|padding|>") if tok.token_to_id(t) is not None), None)
    tok.enable_padding(pad_id=tok.token_to_id(pad) if pad else 0, pad_token=pad or "[PAD]")
    return tok


def embed_texts(batches: Iterator, job: TextJob) -> Iterator:
    """mapInArrow body of ``text_embedder``: Arrow batches in, the same with an array<float> column added."""
    import pyarrow as pa

    tok = load_tokenizer(job.tokenizer_json, job.max_length)
    session = None
    for batch in batches:
        texts = [t if t is not None else "" for t in batch.column(batch.schema.get_field_index(job.input_col)).to_pylist()]
        chunks = []
        for start in range(0, len(texts), job.batch_size):
            encoded = tok.encode_batch(texts[start:start + job.batch_size])
            arrays = {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                      "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                      "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64)}
            session = session or session_for(job.spec, job.runtime, on_executor=True)
            feed = {i.name: arrays[i.name] for i in session.get_inputs()}
            out = np.asarray(session.run([job.output], feed)[0], dtype=np.float32)
            chunks.append(_pool(out, arrays["attention_mask"], job))
        matrix = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)  # width is moot for no rows
        names = [*batch.schema.names, "__zoo_embedding"]
        yield pa.RecordBatch.from_arrays([*batch.columns, arrow_values(matrix)], names=names)


def _pool(out: np.ndarray, mask: np.ndarray, job: TextJob) -> np.ndarray:
    if job.pooling == "none" or out.ndim == 2:
        if out.ndim != 2:
            raise StageError(f"{job.stage}: output {job.output!r} has shape {list(out.shape)}; pooling='none' needs "
                             "[batch, hidden]: use pooling='mean' or 'cls'")
        pooled = out
    elif job.pooling == "cls":
        pooled = out[:, 0, :]
    else:
        weights = mask[:, :, None].astype(np.float32)
        pooled = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    if job.normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32, copy=False)
