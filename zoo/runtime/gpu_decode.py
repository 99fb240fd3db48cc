"""JPEG (and PNG, JPEG 2000, TIFF) decoding on the GPU with NVIDIA nvImageCodec, for ``decode``.

``decode="cpu"`` (the default until measured on a GPU) decodes with OpenCV as always. ``"gpu"``
decodes each inner batch with nvImageCodec (``pip install nvidia-nvimgcodec-cu12``) and falls back
to OpenCV, with one log line per worker saying why, where the library or a CUDA device is
missing or the stage runs on the CPU; ``"auto"`` does the same silently. Either way every image
first passes the same header checks as the CPU path (empty, truncated, above ``maxPixels``), and
an image the GPU decoder rejects (CMYK, exotic progressive files, corrupt data) is decoded on the
CPU, so ``handleInvalid`` sees the same outcomes. ``fastDecode`` applies to the CPU path only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.log import get_logger

DECODES = ("auto", "cpu", "gpu")
log = get_logger("gpu_decode")
_WARNED: set[str] = set()


def unavailable_reason(device: str) -> str | None:
    """Why GPU decoding cannot run for a stage on ``device`` here (None: it can)."""
    if device == "cpu":
        return "the stage runs on the CPU (device='cpu')"
    try:
        from nvidia import nvimgcodec  # noqa: F401
    except ImportError:
        return "nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu12)"
    from zoo.runtime.sessions import cuda_available

    if not cuda_available():
        return "no CUDA device"
    return None


class GpuDecoder:
    """Batched decoding to 8-bit BGR HxWx3 numpy arrays (what the CPU path hands the preprocessor)."""

    def __init__(self, max_pixels: int):
        from nvidia import nvimgcodec

        self.max_pixels = max_pixels
        self._decoder = nvimgcodec.Decoder()
        self._params = nvimgcodec.DecodeParams(color_spec=nvimgcodec.ColorSpec.RGB, apply_exif_orientation=True)

    def decode_many(self, items: list[Any]) -> list[np.ndarray | None]:
        """One array per item, None where the CPU path must decode (or report) it."""
        from zoo.errors import ImageError
        from zoo.runtime.imaging import check_encoded

        chosen = []
        for i, data in enumerate(items):
            try:
                check_encoded(data, self.max_pixels)
            except ImageError:
                continue  # the CPU path raises the same error, naming the file
            chosen.append(i)
        out: list[np.ndarray | None] = [None] * len(items)
        if not chosen:
            return out
        try:
            decoded = self._decoder.decode([bytes(items[i]) for i in chosen], params=self._params)
        except Exception as exc:  # a batch the library refuses as a whole: decode it on the CPU
            log.debug("nvImageCodec refused a batch of %d images: %s", len(chosen), exc)
            return out
        for i, image in zip(chosen, decoded):
            if image is None:
                continue
            rgb = np.asarray(image.cpu())
            if rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 \
                    and rgb.shape[0] * rgb.shape[1] <= self.max_pixels:
                out[i] = np.ascontiguousarray(rgb[..., ::-1])
        return out


def decoder_for(mode: str, device: str, stage: str, max_pixels: int) -> GpuDecoder | None:
    """The GPU decoder ``mode`` asks for, or None (decode on the CPU), saying why once per worker."""
    if mode == "cpu":
        return None
    why = unavailable_reason(device)
    if why is None:
        try:
            return GpuDecoder(max_pixels)
        except Exception as exc:  # the library imports but cannot start (driver, CUDA version)
            why = f"nvImageCodec cannot start: {exc}"
    if mode == "gpu" and stage not in _WARNED:
        _WARNED.add(stage)
        log.warning("%s: decode='gpu' falls back to OpenCV on the CPU: %s", stage, why)
    return None
