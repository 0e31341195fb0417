"""`hf:PATH` for image-text-to-text checkpoints (Gemma 3, Mllama, LLaVA, Qwen-VL, ...).

`hf_spec.from_spec` builds an `HFVisionTarget` when the config is a vision-language model (it has a
`vision_config`, or `AutoModelForImageTextToText` maps its `model_type`). It subclasses the
text-only `HFCausalLMTarget` and reuses its micro-batcher (`batching.MicroBatcher`, with its
one error policy), stop tokens and per-row seeded sampler; only prompt building, the batch key
and the `generate` call differ.

Prompts. Each message becomes Hugging Face processor parts (`{"type": "image"}`,
`{"type": "text", "text": ...}`) in the order our `Message` holds them, rendered by the
processor's chat template (the tokenizer's if the processor has none). Plain-text conversations
work too, so the target also serves as a judge, NeMo's self-check model or Immune's scorer.
The benchmark's image rides on the LAST user message; images on earlier messages are passed
too, in order, unless the family takes one image per prompt (`max_images`, 1 for `mllama`):
then only the latest `max_images` are kept and earlier image parts dropped (their text stays).

Batching and decoding. Batches hold requests with equal params AND image count, so text-only
and image prompts never share a `generate` call; the processor left-pads and expands image
placeholders. Temperature 0 is greedy; otherwise each row samples from a generator seeded by
its prompt, its images' sha256 and `GenParams.seed`, never by its batch-mates.
`Reply.prompt_tokens` counts the expanded prompt (image tokens included).

Device and dtype (`TargetOptions.device` / `.dtype`): `cpu`, `cuda`, `cuda:N`, `mps` or `auto`
(the first GPU if torch sees one, else the CPU); `float32`, `bfloat16`, `float16` or `auto`
(float32 on the CPU; elsewhere a local checkpoint's own dtype when 16-bit, else float32).
Both are validated before weights load and are part of `identity()`.

Processors. `AutoProcessor` first. When it fails (typically for lack of torchvision, which video
processors and some image processors need) the processor is rebuilt from the folder's
`processor_class`, the PIL variant of its image processor (`<Name>Pil`) and its tokenizer, with
any video sub-processor left out. If that fails too, a SpecError says why both failed.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, ImageRef, Reply, TextPart
from pytest_mtmcs.errors import DataError, SpecError, TargetError
from pytest_mtmcs.targets.base import TargetOptions
from pytest_mtmcs.targets.hf import (
    FOLDER_CONTENTS,
    HUB_ID,
    GenerationRequest,
    HFCausalLMTarget,
    configure_threads,
    prompt_seed,
    require_transformers,
    resolve_source,
    row_sampler,
)
from pytest_mtmcs.targets.quiet import quiet_loading

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Allowed values of `TargetOptions.dtype` for hf: targets."""
DEVICES = "cpu, cuda, cuda:N (e.g. cuda:1), mps, auto"
"""Allowed values of `TargetOptions.device` for hf: targets, for error messages."""
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
SINGLE_IMAGE_MODEL_TYPES = frozenset({"mllama"})
"""Model types trained with one image per prompt: only the last image of a conversation is sent."""
_HALF = ("bfloat16", "float16")


# -- options --------------------------------------------------------------------------------------

def check_options(options: TargetOptions) -> None:
    """Raise SpecError unless `options.device` and `options.dtype` are allowed values (no torch)."""
    if not _DEVICE.match(options.device.strip()):
        raise SpecError(f"hf: unknown device {options.device!r}; allowed: {DEVICES}")
    if options.dtype.strip() not in DTYPES:
        raise SpecError(f"hf: unknown dtype {options.dtype!r}; allowed: {', '.join(DTYPES)}")


def resolve_device(device: str) -> str:
    """The torch device for an allowed `device` value; SpecError when that device is absent."""
    import torch

    device = device.strip()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise SpecError(f"hf: device {device!r} requested but torch sees {count} CUDA "
                            f"device(s); allowed: {DEVICES}")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SpecError(f"hf: device 'mps' requested but torch sees no MPS device; allowed: {DEVICES}")
    return device


def checkpoint_dtype(source: str) -> str | None:
    """The dtype recorded in a local folder's config.json (`dtype` / `torch_dtype`), if any."""
    config = _read_json(Path(source).expanduser() / "config.json")
    for holder in (config, config.get("text_config") or {}):
        value = holder.get("dtype") or holder.get("torch_dtype")
        if isinstance(value, str):
            return value.removeprefix("torch.")
    return None


def placement(options: TargetOptions, source: str) -> tuple[str, str]:
    """(device, dtype) to load `source` with: validated, with `auto` resolved (see the module doc)."""
    check_options(options)
    require_transformers()
    device = resolve_device(options.device)
    dtype = options.dtype.strip()
    if dtype == "auto":
        own = checkpoint_dtype(source)
        dtype = own if device != "cpu" and own in _HALF else "float32"
    return device, dtype


def is_image_text_to_text(source: str) -> bool:
    """True when `source`'s config is a vision-language model that generates text.

    A local folder is judged by its config.json alone; a hub id by `AutoConfig` (which may go
    online, as loading it would). Unreadable or missing configs count as "not a VLM", so the
    causal-LM loader reports the problem in its usual words.
    """
    local = Path(source).expanduser()
    if local.exists() or not HUB_ID.match(source):
        config = _read_json(local / "config.json")
        model_type = config.get("model_type")
    else:
        try:
            from transformers import AutoConfig

            auto = AutoConfig.from_pretrained(source)
        except Exception:
            return False
        config = {"vision_config": getattr(auto, "vision_config", None)}
        model_type = getattr(auto, "model_type", None)
    if config.get("vision_config"):
        return True
    from transformers.models.auto import modeling_auto

    return model_type in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- the target -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VisionRequest(GenerationRequest):
    """A rendered prompt and the images its placeholders stand for."""

    images: list[Any] = field(default_factory=list)
    """Decoded PIL images, in the order their placeholders appear in `prompt`."""
    seed_key: str = ""
    """Prompt plus image digests: what the sampling seed is derived from."""


class HFVisionTarget(HFCausalLMTarget):
    """A transformers image-text-to-text model behind its processor; batched, images or text."""

    supports_images = True

    def __init__(self, model: Any, processor: Any, *, source: str, options: TargetOptions,
                 fingerprint: str = "", dtype: str = "", max_images: int | None = None) -> None:
        super().__init__(model, processor.tokenizer, source=source, options=options,
                         fingerprint=fingerprint, dtype=dtype)
        self.processor = processor
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        self.max_images = max_images if max_images is not None else (
            1 if model_type in SINGLE_IMAGE_MODEL_TYPES else None)
        """Most images sent per prompt (the latest ones); None: all of them."""

    def identity(self) -> str:
        record = json.loads(super().identity())
        record.update(kind="hf-image-text-to-text", max_images=self.max_images)
        return json.dumps(record, sort_keys=True)

    def describe(self) -> str:
        return f"{self.spec} ({self.source}, image-text-to-text, {self.dtype}, batch {self.batch_size})"

    # -- prompts ----------------------------------------------------------------------------------

    def chat_messages(self, conversation: Conversation) -> tuple[list[dict[str, Any]], list[ImageRef]]:
        """Messages in the processor's part format, and the images they carry, in order.

        Images beyond `max_images` are dropped from the earliest messages first.
        """
        total = sum(len(m.images) for m in conversation)
        first_kept = 0 if self.max_images is None else max(0, total - self.max_images)
        seen = 0
        messages: list[dict[str, Any]] = []
        images: list[ImageRef] = []
        for message in conversation:
            content = ((TextPart(text=message.content),) if isinstance(message.content, str)
                       else message.content)
            parts: list[dict[str, Any]] = []
            for part in content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text})
                elif (seen := seen + 1) > first_kept:  # seen: 1-based number of this image
                    parts.append({"type": "image"})
                    images.append(part.image)
            messages.append({"role": message.role, "content": parts})
        return messages, images

    def render_prompt(self, conversation: Conversation) -> str:
        """The exact prompt text (before image placeholders expand), with a generation prompt."""
        return self._render(self.chat_messages(conversation)[0])

    def _render(self, messages: list[dict[str, Any]]) -> str:
        owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        with self.tokenizer_lock:
            return str(owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    # -- async front end --------------------------------------------------------------------------

    def build_request(self, conversation: Conversation, params: GenParams) -> VisionRequest:
        """Render, tokenize and decode the images on the caller's loop; TargetError when the
        template refuses the conversation, DataError when an image cannot be decoded."""
        messages, refs = self.chat_messages(conversation)
        try:
            prompt = self._render(messages)
            ids = self.encode(prompt)  # unexpanded: only orders batches by length
        except Exception as exc:  # a template that rejects this conversation (e.g. role order)
            raise TargetError(f"{self.spec}: cannot render the conversation with the model's "
                              f"chat template: {type(exc).__name__}: {exc}") from exc
        images = [_open_image(ref) for ref in refs]
        seed_key = prompt + "".join(f"\x00image={ref.digest()}" for ref in refs)
        return VisionRequest(ids, prompt, params, images=images, seed_key=seed_key)

    def batch_key(self, request: GenerationRequest) -> object:
        """Equal params AND image count: text-only and image prompts never share a batch."""
        images = request.images if isinstance(request, VisionRequest) else []
        return request.params, len(images)

    # -- generation (worker thread) ---------------------------------------------------------------

    def generate_batch(self, batch: list[GenerationRequest]) -> list[Reply]:
        """One `generate` through the processor (it left-pads and expands image placeholders):
        a reply per request, in order (blocking: runs on the batcher's worker thread)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        requests = [r for r in batch if isinstance(r, VisionRequest)]
        params = requests[0].params
        extra = {"images": [r.images for r in requests]} if requests[0].images else {}
        with self.tokenizer_lock:
            inputs = self.processor(text=[r.prompt for r in requests], padding=True,
                                    add_special_tokens=False, return_tensors="pt", **extra)
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # casts only float tensors
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max(1, params.max_tokens), do_sample=False, num_beams=1,
            eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        processors = LogitsProcessorList()
        if params.temperature > 0:
            seed = "" if params.seed is None else f"\x00seed={params.seed}"
            processors.append(row_sampler(params.temperature,
                                           [prompt_seed(r.seed_key + seed) for r in requests]))
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
        elapsed = time.perf_counter() - start
        width = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        stops = set(self.stop_ids)
        replies = []
        for tokens, n_prompt in zip(out[:, width:].tolist(), prompt_tokens, strict=True):
            n = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
            with self.tokenizer_lock:
                text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
            replies.append(Reply(text=text.strip(), prompt_tokens=int(n_prompt),
                                 completion_tokens=n, latency_s=elapsed))
        return replies


def _open_image(ref: ImageRef) -> Any:
    """Decode an image to RGB with PIL; DataError naming the image when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(ref.load_bytes())) as img:
            return img.convert("RGB")
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot decode the image {ref.describe()}: {exc}; expected PNG, JPEG, "
                        "GIF or WebP bytes") from exc


# -- loading --------------------------------------------------------------------------------------

def load_processor(source: str, **offline: Any) -> Any:
    """`AutoProcessor`, else the image-only PIL rebuild (see the module doc); SpecError if neither."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            source, **offline)
        if getattr(processor, "image_processor", None) is not None:
            return processor
        auto_error: Exception = ValueError(
            f"it found no image processor (got a {type(processor).__name__})")
    except Exception as exc:
        auto_error = exc
    try:
        return pil_processor(source, **offline)
    except Exception as exc:
        raise SpecError(
            f"hf: cannot build the processor of {source}: AutoProcessor failed "
            f"({type(auto_error).__name__}: {auto_error}) and so did the torchvision-free rebuild "
            f"from the PIL image processor ({type(exc).__name__}: {exc}); the folder needs "
            "processor_config.json (or preprocessor_config.json) naming processor_class and "
            "image_processor_type, as written by processor.save_pretrained()") from exc


def pil_processor(source: str, **offline: Any) -> Any:
    """Rebuild `source`'s processor without torchvision: `<ImageProcessor>Pil`, no video part."""
    import transformers
    from transformers import AutoTokenizer

    folder = Path(source).expanduser()
    saved = _read_json(folder / "processor_config.json")
    image_config = saved.get("image_processor") or _read_json(folder / "preprocessor_config.json")
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    proc_name = (saved.get("processor_class") or image_config.get("processor_class")
                 or tokenizer_config.get("processor_class"))
    image_name = str(image_config.get("image_processor_type", "")).removesuffix("Fast")
    if not proc_name or not image_name:
        raise ValueError("no processor_class / image_processor_type recorded in the folder")
    image_cls = getattr(transformers, image_name + "Pil", None) or getattr(transformers, image_name)
    image_processor = image_cls(**{k: v for k, v in image_config.items()
                                   if k not in ("image_processor_type", "processor_class")})
    tokenizer = AutoTokenizer.from_pretrained(source, **offline)
    template_file = folder / "chat_template.jinja"
    template = (template_file.read_text(encoding="utf-8") if template_file.is_file()
                else saved.get("chat_template") or getattr(tokenizer, "chat_template", None))
    extras = {k: v for k, v in saved.items()
              if k != "processor_class" and not k.endswith(("_processor", "tokenizer", "extractor"))}
    processor_cls = without_video_processor(getattr(transformers, proc_name))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer,
                         chat_template=template, **extras)


def without_video_processor(processor_cls: Any) -> Any:
    """A subclass of `processor_cls` whose __init__ has no video sub-processor.

    ProcessorMixin derives its sub-processors from the __init__ signature and type-checks each;
    without torchvision no video processor exists, so the signature must not name one. The
    parent's __init__ still passes `video_processor=None` positionally, which ProcessorMixin
    then ignores (it zips positional sub-processors against the signature's).
    """
    signature = inspect.signature(processor_cls.__init__)
    if not any("video_processor" in name for name in signature.parameters):
        return processor_cls
    kept = [p for name, p in signature.parameters.items() if "video_processor" not in name]

    class ImageOnly(processor_cls):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    ImageOnly.__init__.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_cls.__name__  # saved as processor_class
    return ImageOnly


def load_vision(source: str, options: TargetOptions) -> HFVisionTarget:
    """Load an image-text-to-text model and its processor from a local folder or hub id."""
    device, dtype = placement(options, source)
    import torch
    from transformers import AutoModelForImageTextToText

    configure_threads()
    source, is_local, fingerprint, offline = resolve_source(source)
    processor = load_processor(source, **offline)
    try:
        with quiet_loading():
            model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=getattr(torch, dtype), **offline)
    except Exception as exc:  # OSError, ValueError, shape mismatches: all mean "bad spec"
        where = (f"model folder {source}" if is_local
                 else f"{source!r} (neither a local folder nor a loadable hub id)")
        raise SpecError(f"hf: cannot load the image-text-to-text {where}: {exc}; "
                        f"{FOLDER_CONTENTS}, plus the processor files") from exc
    if not (getattr(processor, "chat_template", None)
            or getattr(processor.tokenizer, "chat_template", None)):
        raise SpecError(f"hf: {source} has no chat template (chat_template.jinja or the "
                        f"processor's/tokenizer's 'chat_template'); {FOLDER_CONTENTS}")
    model.eval()  # type: ignore[no-untyped-call]
    model.to(device)  # type: ignore[arg-type]
    return HFVisionTarget(model, processor, source=source, options=options,
                          fingerprint=fingerprint, dtype=dtype)
