"""Decoding and preprocessing images in native OpenCV, exactly as a registry's ``preprocess`` says.

Decoding (:func:`decode`) always yields 8-bit BGR, 3 channels: grayscale is replicated, the alpha
of RGBA/BGRA is dropped, 16-bit images are scaled to 8 bits, CMYK JPEGs are converted by libjpeg.
Images larger than ``max_pixels`` are refused from their header, before any pixel is decoded.

:class:`Preprocessor` then applies, in this order: color order, resize (``shorter_side``: the
shorter side becomes ``size`` and the longer ``int(size * long / short)``, as torchvision does;
``exact``: to [height, width]), center crop (offsets rounded as torchvision does),
``x * scale``, ``- mean``, ``/ std`` per channel, and the model's layout (NCHW or NHWC). The
arithmetic is one fused multiply-add per pixel into the caller's preallocated batch buffer.
With ``preprocess=None`` the image is resized exactly to the model's input and fed as 0..255 RGB.

Resampling: ``bilinear``, ``bicubic`` and ``lanczos`` mean what they meant when the published
models were trained (torchvision and timm on Pillow): the filter widens with the downscale factor,
so every source pixel counts (antialiasing). OpenCV's ``INTER_LINEAR`` samples 2x2 neighbours
however far it shrinks, which aliases: on the shared photos its pixels were 0.034 (normalised)
off torchvision's, and the int8 MobileNet's logits down to cosine 0.90 (benchmarks/RESULTS.md).
These filters therefore run in Pillow's resampler (C, 8-bit fixed point, GIL released), whose pixels
equal torchvision's; ``nearest`` and ``area`` keep OpenCV's (``area`` is already a box filter).
:data:`RESAMPLER` names the choice in every feature column's provenance, so features made by the
older resampler are never mixed with these.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import numpy as np

from zoo.errors import ImageError

DEFAULT_MAX_PIXELS = 64_000_000
# cv2.INTER_*; "opencv-bilinear" is cv2.resize's default INTER_LINEAR, what detectors' authors feed their models
_INTERPOLATION = {"nearest": 0, "bilinear": 1, "bicubic": 2, "area": 3, "lanczos": 4, "opencv-bilinear": 1}
_ANTIALIASED = {"bilinear": 2, "bicubic": 3, "lanczos": 1}  # PIL.Image.Resampling: BILINEAR, BICUBIC, LANCZOS
# Part of the provenance identity (zoo.lineage): bump when resampling changes the pixels it makes.
RESAMPLER = "pillow-antialias/1"
_OPENCV_MODES = {0: 1, 16: 3, 24: 4}  # Spark image struct mode (CV_8UC1/3/4) -> channels


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF or BMP header; None for other or unreadable formats."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                length = struct.unpack(">H", data[i + 2:i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5:i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        return None
    return None


_REDUCED = {2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def check_encoded(data: bytes | memoryview | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple:
    """((width, height) from the header or None, is JPEG) of encoded bytes every decoder may take;
    :class:`ImageError` for null, empty, truncated JPEGs and images above ``max_pixels``."""
    if data is None:
        raise ImageError("the image is null")
    if len(data) == 0:
        raise ImageError("the image is empty (0 bytes)")
    size = header_size(bytes(data[:65536]))
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(f"the image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, above maxPixels {max_pixels:,}")
    jpeg = bytes(data[:2]) == b"\xff\xd8"
    if jpeg and b"\xff\xd9" not in bytes(data[-65536:]):
        # libjpeg decodes a truncated file with a grey bottom and only a warning; refuse it instead
        raise ImageError(f"the JPEG is truncated ({len(data):,} bytes, no end-of-image marker)")
    return size, jpeg


def decode(data: bytes | memoryview | None, max_pixels: int = DEFAULT_MAX_PIXELS,
           reduction: "Callable[[int, int], int] | None" = None) -> np.ndarray:
    """8-bit BGR HxWx3 pixels of an encoded image; :class:`ImageError` saying why not.

    ``reduction(width, height)`` may return 2, 4 or 8 for a JPEG: libjpeg then decodes straight
    to that fraction of the size (scaled IDCT), about twice as fast at 2 and faster beyond, with
    slightly different pixels than decoding fully and resizing (``fastDecode``).
    """
    import cv2

    size, jpeg = check_encoded(data, max_pixels)
    buf = np.frombuffer(data, np.uint8)
    factor = reduction(*size) if reduction is not None and size is not None and jpeg else 1
    img = cv2.imdecode(buf, getattr(cv2, _REDUCED[factor]) if factor in _REDUCED else cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"the {len(data):,} bytes are not an image OpenCV can decode (or the file is truncated)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"the image is {img.shape[1]}x{img.shape[0]} pixels, above maxPixels {max_pixels:,}")
    return img


def from_struct(height: int, width: int, channels: int, mode: int, data: bytes) -> np.ndarray:
    """8-bit BGR pixels of a row of Spark's image source (``image.height``, ``.width``, ...)."""
    import cv2

    if data is None or not height or not width:
        raise ImageError("the image struct is null or empty")
    if _OPENCV_MODES.get(mode) != channels:
        raise ImageError(f"image struct mode {mode} with {channels} channels is not 8-bit 1/3/4-channel")
    if len(data) != height * width * channels:
        raise ImageError(f"image struct holds {len(data)} bytes, expected {height}x{width}x{channels}")
    img = np.frombuffer(data, np.uint8).reshape(height, width, channels)
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


def _resample(img: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Pillow's antialiased resampling of uint8 HxWxC ``img`` to ``size`` (width, height). The whole
    image, then the crop: resampling only the crop window (Pillow's ``box``) is 25% cheaper but rounds
    a few pixels one level off, and the int8 MobileNet in ../shared turns that into three other
    top-1 answers out of 100; whole-image resampling equals torchvision's pixels exactly."""
    from PIL import Image

    gray = img.shape[2] == 1
    out = np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, 0] if gray else img)).resize(size, resample))
    return out[:, :, None] if gray else out


class Preprocessor:
    """Turns BGR pixels into one model input row, per a registry ``preprocess`` and ``input``."""

    def __init__(self, preprocess: dict[str, Any] | None, model_input: dict[str, Any]):
        shape = list(model_input.get("shape") or [])
        self.layout = model_input.get("layout", "NCHW")
        self.dtype = np.dtype(model_input.get("dtype", "float32"))
        spatial = (shape[2], shape[3]) if self.layout == "NCHW" and len(shape) == 4 else (
            (shape[1], shape[2]) if len(shape) == 4 else (None, None))
        p = preprocess or {
            "color_order": "RGB", "resize": {"mode": "exact", "size": [spatial[0] or 224, spatial[1] or 224]},
            "crop": None, "scale": 1.0, "mean": [0.0], "std": [1.0],
        }
        self.spec = p
        self.color = p.get("color_order", "RGB")
        resize = p.get("resize") or {"mode": "exact", "size": [spatial[0] or 224, spatial[1] or 224]}
        self.resize_mode = resize["mode"]
        self.resize_size = resize["size"]
        self.pad = int(round(resize.get("pad", 0)))  # letterbox
        self.centered = resize.get("align", "top_left") == "center"
        self.pad_multiple = int(resize.get("pad_multiple", 1))  # a variable size, padded up (Faster R-CNN: 32)
        interpolation = resize.get("interpolation", "bilinear")
        self.interpolation = _INTERPOLATION[interpolation]
        self.antialias_filter = _ANTIALIASED.get(interpolation)
        crop = p.get("crop")
        self.crop = _pair(crop["size"]) if crop else None
        self.height, self.width = self.crop or _pair(self.resize_size)
        channels = 1 if self.color == "GRAY" else 3
        self.channels = channels
        scale = float(p.get("scale", 1.0))
        mean = np.resize(np.asarray(p.get("mean", [0.0]), np.float32), channels)
        std = np.resize(np.asarray(p.get("std", [1.0]), np.float32), channels)
        self._mul = (scale / std).astype(np.float32)  # x * scale / std - mean / std: one multiply-add
        self._add = (-mean / std).astype(np.float32)
        self._identity = bool((self._mul == 1).all() and (self._add == 0).all())

    @property
    def row_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width) if self.layout == "NCHW" else (self.height, self.width, self.channels)

    def reduction(self, width: int, height: int) -> int:
        """The largest JPEG decode reduction (8, 4, 2, else 1) that keeps every side the resize
        needs at least as large as the resize target, so reduced decoding never upsamples."""
        if self.resize_mode == "shorter_side":  # both sides >= size is the shorter side >= size
            size = int(self.resize_size if isinstance(self.resize_size, int) else self.resize_size[0])
            need_h = need_w = size
        else:
            need_h, need_w = _pair(self.resize_size)
        for f in (8, 4, 2):
            if -(-width // f) >= need_w and -(-height // f) >= need_h:
                return f
        return 1

    def _letterboxed(self, h: int, w: int) -> tuple[float, int, int, int, int]:
        """(ratio, resized height, width, top, left) of an ``h`` x ``w`` image letterboxed into the input:
        the ratio and the truncated sizes of the YOLOX and YOLOv3 reference code."""
        ratio = min(self.height / h, self.width / w)
        nh, nw = max(1, int(h * ratio)), max(1, int(w * ratio))
        top, left = ((self.height - nh) // 2, (self.width - nw) // 2) if self.centered else (0, 0)
        return ratio, nh, nw, top, left

    @property
    def variable(self) -> bool:
        """Each image keeps its own size (shorter side resized, no crop): one input per image, no batch."""
        return self.resize_mode == "shorter_side" and self.crop is None

    def box_transform(self, h: int, w: int) -> tuple[float, float, float, float]:
        """(sx, sy, ox, oy): a box in model-input pixels maps to ``((x - ox) * sx, (y - oy) * sy)`` in the
        original ``h`` x ``w`` image. For plain (``exact``) and letterboxed resizes; a crop loses the
        mapping, so detectors are refused one when their recipe is read (zoo.runtime.detection)."""
        if self.resize_mode == "letterbox":
            ratio, _, _, top, left = self._letterboxed(h, w)
            return 1.0 / ratio, 1.0 / ratio, float(left), float(top)
        if self.variable:  # the scale of the shorter side, as Faster R-CNN's reference divides by it
            shorter = min(h, w) / float(self.resize_size if isinstance(self.resize_size, int) else self.resize_size[0])
            return shorter, shorter, 0.0, 0.0
        return w / self.width, h / self.height, 0.0, 0.0

    def geometry(self, img: np.ndarray) -> np.ndarray:
        """Color order, resize and crop: uint8 HxWxC ready for the arithmetic."""
        import cv2

        if self.color == "RGB":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif self.color == "GRAY":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
        h, w = img.shape[:2]
        if self.resize_mode == "letterbox":
            _, nh, nw, top, left = self._letterboxed(h, w)
            canvas = np.full((self.height, self.width, img.shape[2]), self.pad, dtype=np.uint8)
            canvas[top:top + nh, left:left + nw] = self._resized(img, nw, nh)
            return canvas
        if self.resize_mode == "shorter_side":
            size = int(self.resize_size if isinstance(self.resize_size, int) else self.resize_size[0])
            if w <= h:
                nw, nh = size, int(size * h / w)
            else:
                nw, nh = int(size * w / h), size
        else:
            nh, nw = _pair(self.resize_size)
        top, left, ch, cw = 0, 0, nh, nw
        if self.crop:
            ch, cw = self.crop
            if ch > nh or cw > nw:
                raise ImageError(f"cannot center-crop {ch}x{cw} from the resized {nh}x{nw} image")
            top, left = int(round((nh - ch) / 2.0)), int(round((nw - cw) / 2.0))
        return self._resized(img, nw, nh)[top:top + ch, left:left + cw]

    def _resized(self, img: np.ndarray, nw: int, nh: int) -> np.ndarray:
        import cv2

        if img.shape[:2] == (nh, nw):
            return img
        if self.antialias_filter is not None:
            img = _resample(img, (nw, nh), self.antialias_filter)
        else:
            img = cv2.resize(img, (nw, nh), interpolation=self.interpolation)
        return img[:, :, None] if img.ndim == 2 else img

    def __call__(self, img: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """Write the preprocessed image into ``out`` (one row of the batch buffer, model layout). For a
        :attr:`variable` size (``out`` None) a new array of the image's own size, padded up to
        ``pad_multiple`` with zeros (the mean's value, as the authors pad after subtracting it)."""
        pixels = self.geometry(img)
        if out is None:
            h, w = pixels.shape[:2]
            m = self.pad_multiple
            ph, pw = -(-h // m) * m, -(-w // m) * m
            full = np.zeros((self.channels, ph, pw) if self.layout == "NCHW" else (ph, pw, self.channels), self.dtype)
            self._arithmetic(pixels, full[:, :h, :w] if self.layout == "NCHW" else full[:h, :w])
            return full
        self._arithmetic(pixels, out)
        return out

    def _arithmetic(self, pixels: np.ndarray, out: np.ndarray) -> None:
        if self._identity:  # raw 0-255 pixels (a uint8 input, as the TF Object Detection API's): a copy
            out[...] = pixels.transpose(2, 0, 1) if self.layout == "NCHW" else pixels
        elif self.layout == "NCHW":
            for c in range(self.channels):  # strided reads, contiguous writes, no temporaries
                np.multiply(pixels[:, :, c], self._mul[c], out=out[c], casting="unsafe")
                np.add(out[c], self._add[c], out=out[c], casting="unsafe")
        else:
            np.multiply(pixels, self._mul, out=out, casting="unsafe")
            np.add(out, self._add, out=out, casting="unsafe")
