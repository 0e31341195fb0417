"""Llama Guard's images as model inputs: decoding image bytes, and Llama 4's tiling and image
token layout (Llama Guard 3 Vision's images go through transformers' MllamaProcessor instead).

Llama 4 image preprocessing is done here with PIL and torch, because transformers' own
Llama4ImageProcessor needs torchvision. It follows the released processor's recipe: the image is
resized without distortion (upscaling at most to one tile) onto the smallest canvas of up to
`max_patches` square tiles of the vision config's `image_size` that fits it best, padded
bottom-right, scaled to [-1, 1] (mean = std = 0.5) and cut into tiles row by row; an image
needing more than one tile gets a final global tile (the whole image squeezed into one tile).
Its placeholder becomes `<|image_start|>`, per tile row the tiles' `<|patch|>` runs separated by
`<|tile_x_separator|>` and closed by `<|tile_y_separator|>` (multi-tile images only), then
`<|image|>` and the global (or only) tile's patches, then `<|image_end|>`. Each tile contributes
(image_size / patch_size)^2 / round(1 / pixel_shuffle_ratio^2) `<|patch|>` tokens, which the model
replaces by the projected vision features. Differences from the released processor: bilinear
resizing by PIL rather than torchvision, and normalisation in float32 rather than bfloat16.
`max_patches` comes from the checkpoint's preprocessor_config.json (16 when absent, the
processor's default).

Runs on the classifier's worker thread; numpy, torch and PIL are imported inside functions only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

IMAGE_TOKEN = "<|image|>"
"""The placeholder the guard prompt carries for each image (Mllama and Llama 4 alike)."""
LLAMA4_TOKENS = {"start": "<|image_start|>", "end": "<|image_end|>", "patch": "<|patch|>",
                 "x": "<|tile_x_separator|>", "y": "<|tile_y_separator|>"}
"""The special tokens of Llama 4's image layout (besides `IMAGE_TOKEN`)."""


def llama4_canvas(height: int, width: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """(tile rows, tile columns) of the canvas the released Llama 4 processor picks for an image."""
    shapes = sorted({(r, n // r) for n in range(1, max(1, max_tiles) + 1)
                     for r in range(1, n + 1) if n % r == 0})
    scales = [min(r * tile / height, c * tile / width) for r, c in shapes]
    up = [s for s in scales if s >= 1]
    best = min(up) if up else max(scales)
    return min((s for s, sc in zip(shapes, scales, strict=True) if sc == best),
               key=lambda s: s[0] * s[1])


def llama4_tiles(image: Any, tile: int, max_tiles: int) -> tuple[Any, tuple[int, int]]:
    """A PIL image -> (float tensor [tiles, 3, tile, tile] in [-1, 1], (rows, columns))."""
    import numpy as np
    import torch
    from PIL import Image

    width, height = image.size
    rows, cols = llama4_canvas(height, width, tile, max_tiles)
    # Never upscale beyond one tile; keep the aspect ratio inside the (capped) canvas.
    cap_h = min(max(height, tile), rows * tile)
    cap_w = min(max(width, tile), cols * tile)
    if cap_w / width < cap_h / height:
        new_w, new_h = cap_w, min(math.floor(height * cap_w / width), cap_h)
    else:
        new_h, new_w = cap_h, min(math.floor(width * cap_h / height), cap_w)

    def to_tensor(img: Any) -> Any:  # HWC uint8 -> CHW float in 0..255
        return torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)

    resized = to_tensor(image.resize((max(new_w, 1), max(new_h, 1)), Image.Resampling.BILINEAR))
    canvas = torch.zeros(3, rows * tile, cols * tile)
    canvas[:, :resized.shape[1], :resized.shape[2]] = resized
    tiles = (canvas.view(3, rows, tile, cols, tile).permute(1, 3, 0, 2, 4)
             .reshape(rows * cols, 3, tile, tile))
    if rows * cols > 1:
        whole = to_tensor(image.resize((tile, tile), Image.Resampling.BILINEAR))
        tiles = torch.cat([tiles, whole.unsqueeze(0)])
    return (tiles / 255.0 - 0.5) / 0.5, (rows, cols)


def llama4_image_text(rows: int, cols: int, per_tile: int) -> str:
    """The token string that replaces one image placeholder (see the module docstring)."""
    patches = LLAMA4_TOKENS["patch"] * per_tile
    parts = [LLAMA4_TOKENS["start"]]
    if rows * cols > 1:
        for _ in range(rows):
            parts.append(LLAMA4_TOKENS["x"].join([patches] * cols))
            parts.append(LLAMA4_TOKENS["y"])
    parts += [IMAGE_TOKEN, patches, LLAMA4_TOKENS["end"]]
    return "".join(parts)


def open_image(data: bytes) -> Any:
    """Encoded image bytes as an RGB PIL image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def expand_llama4_images(text: str, images: Sequence[bytes],
                         tiling: tuple[int, int, int]) -> tuple[str, list[Any]]:
    """Llama 4: (`text` with each image placeholder replaced by its token layout, the images'
    tiles); `tiling` is (tile size, max tiles, patch tokens per tile)."""
    tile, max_tiles, per_tile = tiling
    pieces = text.split(IMAGE_TOKEN)
    if len(pieces) != len(images) + 1:
        raise ValueError(f"prompt has {len(pieces) - 1} image placeholders for {len(images)} images")
    out, tiles = pieces[0], []
    for data, rest in zip(images, pieces[1:], strict=True):
        pixels, (rows, cols) = llama4_tiles(open_image(data), tile, max_tiles)
        tiles.append(pixels)
        out += llama4_image_text(rows, cols, per_tile) + rest
    return out, tiles
