"""The `hf:PATH` scheme: the text-only or the image-text-to-text target, by the checkpoint.

Kept apart from both target modules so that neither needs the other to build a spec
(`hf_vision` builds on `hf`, never the reverse).
"""

from __future__ import annotations

from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets import hf, hf_vision
from pytest_mtmcs.targets.base import TargetOptions


def from_spec(rest: str, options: TargetOptions) -> hf.HFCausalLMTarget:
    """Factory for `hf:PATH` (a save_pretrained folder; a hub id also works if reachable).

    Image-text-to-text checkpoints get an `hf_vision.HFVisionTarget`, others the text-only
    `hf.HFCausalLMTarget`. `options.device` / `options.dtype` are validated first (SpecError naming
    the allowed values) and honoured by both.
    """
    if not rest.strip():
        raise SpecError(f"hf: needs a model folder, e.g. hf:/path/to/model; {hf.FOLDER_CONTENTS}")
    source = rest.strip()
    device, dtype = hf_vision.placement(options, source)
    if hf_vision.is_image_text_to_text(source):
        return hf_vision.load_vision(source, options)
    target = hf.load(source, options, dtype=dtype)
    target.model.to(device)  # load() picks the GPU whenever there is one; the option decides
    return target
