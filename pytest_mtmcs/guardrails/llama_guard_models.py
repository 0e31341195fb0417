"""Loading Llama Guard checkpoints and turning rendered guard prompts into model inputs.

Three families, chosen by the checkpoint's `config.json` `model_type`:

- `llama`: Llama Guard 3 (1B, 8B), LlamaForCausalLM. Images: none (text only, images are
  left out).
- `mllama`: Llama Guard 3 Vision (11B), MllamaForConditionalGeneration + MllamaProcessor (PIL
  image processor). Images: one, the conversation's last.
- `llama4`: Llama Guard 4 (12B), Llama4ForConditionalGeneration. Images: all of the
  conversation's images.

Images: Llama Guard 3 Vision's through transformers' MllamaProcessor, Llama 4's tiled by
`llama_guard_images` (no torchvision needed).

Everything here runs on the classifier's single worker thread; nothing is thread-safe on its own.
torch, transformers and PIL are imported inside functions only.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mtmcs.errors import GuardrailUnavailable, SpecError
from pytest_mtmcs.guardrails.llama_guard_images import (
    LLAMA4_TOKENS,
    expand_llama4_images,
    open_image,
)
from pytest_mtmcs.targets.hf import HUB_ID
from pytest_mtmcs.targets.quiet import quiet_loading

SHARED_PREFIX_END = "<BEGIN CONVERSATION>\n\n"
"""Where the part of a guard prompt that depends only on role and policy ends."""

HOW_TO_GET = (
    "pass a local folder written by save_pretrained (config.json, *.safetensors, tokenizer files) "
    "or a hub id. To download one: accept the licence on its hub page (e.g. "
    "https://huggingface.co/meta-llama/Llama-Guard-3-1B), log in with `hf auth login`, then "
    "`hf download meta-llama/Llama-Guard-3-1B --local-dir models/Llama-Guard-3-1B` (older hub "
    "versions: `huggingface-cli download ...`); the other checkpoints are Llama-Guard-3-8B, "
    "Llama-Guard-3-11B-Vision and Llama-Guard-4-12B")


@dataclass(frozen=True)
class Family:
    """What differs between the Llama Guard generations."""

    model_type: str
    label: str
    class_name: str
    header_start: str
    header_end: str
    eot: str
    images: str
    """none (text only), last (the conversation's last image) or all."""

    def model_class(self) -> Any:
        """The transformers model class of this family."""
        import transformers

        return getattr(transformers, self.class_name)

    def load_tokenizer(self, source: str, kwargs: dict[str, Any]) -> Any:
        """The checkpoint's tokenizer, left-padding."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(source, **kwargs)
        tok.padding_side = "left"
        return tok


FAMILIES: dict[str, Family] = {
    "llama": Family("llama", "Llama Guard 3", "LlamaForCausalLM",
                    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "none"),
    "mllama": Family("mllama", "Llama Guard 3 Vision", "MllamaForConditionalGeneration",
                     "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "last"),
    "llama4": Family("llama4", "Llama Guard 4", "Llama4ForConditionalGeneration",
                     "<|header_start|>", "<|header_end|>", "<|eot|>", "all"),
}

def verdict_token_ids(tokenizer: Any) -> tuple[list[int], int]:
    """(token ids of `unsafe`, first token id of `safe`); SpecError when their first tokens
    coincide, since one logit could then not tell the verdicts apart."""
    unsafe = list(tokenizer.encode("unsafe", add_special_tokens=False))
    safe = list(tokenizer.encode("safe", add_special_tokens=False))
    if not unsafe or not safe or unsafe[0] == safe[0]:
        raise SpecError(f"llama-guard: the tokenizer encodes 'unsafe' as {unsafe} and 'safe' as "
                        f"{safe}; their first tokens must differ to score the verdict in one pass")
    return unsafe, safe[0]


class GuardModel:
    """A loaded Llama Guard checkpoint: scores batches in one forward pass, names categories by
    generating after a forced `unsafe`.

    Shared prefix. Every guard prompt of one role and policy starts with the same text, up to and
    including `SHARED_PREFIX_END` (chat header, task line, categories). Llama Guard 3 text and 4
    run that prefix once, keep its key/value cache, and score each batch's remaining tokens
    against a copy of it: rows are laid out as [prefix][left padding][rest], with positions
    continuing after the prefix, so results match an unpadded full pass to float precision.
    Prompts are always tokenized as prefix and rest separately (the split falls before `User:`,
    where Llama 3/4 tokenizers split anyway), in scoring and in generation alike. Llama Guard 3
    Vision puts its image token first, so it has no image-free prefix and runs full prompts.
    """

    def __init__(self, family: Family, model: Any, tokenizer: Any, *, source: str,
                 fingerprint: str, processor: Any = None, tiling: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.family = family
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        """Resolved local folder, or the hub id the weights came from."""
        self.fingerprint = fingerprint
        self.processor = processor
        self.tiling = tiling
        """Llama 4: (tile size, max tiles, patch tokens per tile)."""
        self.unsafe_ids, self.safe_id = verdict_token_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = sorted({int(tokenizer.convert_tokens_to_ids(t))
                                for t in (family.eot, tokenizer.eos_token) if t} - {tokenizer.unk_token_id})
        self.special_strings = sorted((t for t in tokenizer.added_tokens_encoder if t.startswith("<")),
                                      key=len, reverse=True)
        """Added-token spellings that user text must not smuggle into a prompt."""
        self.dtype = str(model.dtype).removeprefix("torch.")
        self.device = str(model.device)
        self.share_prefix = family.model_type != "mllama"
        self._prefixes: dict[str, tuple[list[int], Any]] = {}

    def split(self, prompt: str) -> tuple[str, str]:
        """(shared prefix, rest) of a rendered prompt; ("", prompt) when nothing is shared."""
        at = prompt.find(SHARED_PREFIX_END) if self.share_prefix else -1
        if at < 0:
            return "", prompt
        at += len(SHARED_PREFIX_END)
        return prompt[:at], prompt[at:]

    def batch_key(self, prompt: str, n_images: int) -> object:
        """Requests with equal keys can share a forward pass: same shared prefix and, for
        Mllama, all with or all without an image."""
        return self.split(prompt)[0], self.family.model_type == "mllama" and n_images > 0

    # -- inputs -----------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[str], images: Sequence[Sequence[bytes]], *,
               skip_prefix: bool = False) -> dict[str, Any]:
        """Left-padded model inputs for rendered prompts and their images' encoded bytes;
        `skip_prefix` leaves each prompt's shared prefix out (it comes from the cache)."""
        import torch

        if self.family.model_type == "mllama":
            kwargs: dict[str, Any] = {"add_special_tokens": False, "padding": True, "return_tensors": "pt"}
            if any(images):
                pil = [[open_image(b) for b in imgs] for imgs in images]
                out = dict(self.processor(text=list(prompts), images=pil, **kwargs))
            else:
                out = dict(self.tokenizer(list(prompts), **kwargs))
            out.pop("token_type_ids", None)
            return {k: v.to(self.model.device, self.model.dtype) if v.is_floating_point()
                    else v.to(self.model.device) for k, v in out.items()}
        prefixes, rests, pixels = [], [], []
        for prompt, imgs in zip(prompts, images, strict=True):
            prefix, rest = self.split(prompt)
            if imgs:
                rest, tiles = self._expand_images(rest, imgs)
                pixels += tiles
            prefixes.append(prefix)
            rests.append(rest)
        rows = self.tokenizer(rests, add_special_tokens=False)["input_ids"]
        if not skip_prefix:
            rows = [self._prefix(p)[0] + list(r) for p, r in zip(prefixes, rows, strict=True)]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row):] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if pixels:
            out["pixel_values"] = torch.cat(pixels).to(self.model.dtype)
        return {k: v.to(self.model.device) for k, v in out.items()}

    def _expand_images(self, text: str, images: Sequence[bytes]) -> tuple[str, list[Any]]:
        """Llama 4: replace each image placeholder by its token layout; the images' tiles."""
        if self.family.model_type != "llama4":
            return text, []  # text-only family: images are not part of the check
        return expand_llama4_images(text, images, self.tiling)

    def _prefix(self, prefix: str) -> tuple[list[int], Any]:
        """(token ids, key/value cache for one row) of a shared prefix, computed once."""
        import torch

        hit = self._prefixes.get(prefix)
        if hit is None:
            ids = list(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])
            cache = None
            if ids:
                with torch.inference_mode():
                    out = self.model(input_ids=torch.tensor([ids], device=self.model.device),
                                     use_cache=True)
                cache = out.past_key_values
            if len(self._prefixes) >= 8:  # a few roles x policies; never grows without bound
                self._prefixes.pop(next(iter(self._prefixes)))
            hit = self._prefixes[prefix] = (ids, cache)
        return hit

    # -- running (worker thread) ------------------------------------------------------------------

    def score(self, prompts: Sequence[str], images: Sequence[Sequence[bytes]]) -> list[float]:
        """P(unsafe) per prompt: softmax over the logits of the first tokens of `unsafe` and
        `safe` at the position after the assistant header, one forward pass for the batch."""
        import torch

        prefix = self.split(prompts[0])[0]
        extra: dict[str, Any] = {"use_cache": False}
        if prefix and all(self.split(p)[0] == prefix for p in prompts):
            inputs = self.encode(prompts, images, skip_prefix=True)
            ids, cache = self._prefix(prefix)
            rows, start = inputs["input_ids"].shape[0], len(ids)
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(rows)
            mask = inputs["attention_mask"]
            inputs["attention_mask"] = torch.cat(
                [torch.ones((rows, start), dtype=mask.dtype, device=mask.device), mask], dim=1)
            positions = start + (mask.cumsum(-1) - 1).clamp(min=0)
            extra = {"past_key_values": cache, "use_cache": True}
        else:
            inputs = self.encode(prompts, images)
            positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():  # positions: left padding must not shift RoPE
            out = self.model(**inputs, position_ids=positions, logits_to_keep=1, **extra)
        pair = out.logits[:, -1, [self.unsafe_ids[0], self.safe_id]].float()
        return [float(p) for p in torch.softmax(pair, dim=-1)[:, 0].tolist()]

    def explain(self, prompts: Sequence[str], images: Sequence[Sequence[bytes]],
                max_new_tokens: int) -> list[tuple[str, int]]:
        """(`unsafe` + greedy continuation, generated tokens) per prompt: the answer is forced
        to start with `unsafe` so the continuation names the categories of that verdict."""
        import torch
        from transformers import GenerationConfig

        inputs = self.encode(prompts, images)
        n = len(self.unsafe_ids)
        rows = inputs["input_ids"].shape[0]
        extra = torch.tensor([self.unsafe_ids] * rows, device=self.model.device)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
        if "cross_attention_mask" in inputs:  # the forced tokens see the image like the prompt's end
            cam = inputs["cross_attention_mask"]
            inputs["cross_attention_mask"] = torch.cat([cam, cam[:, -1:].repeat(1, n, 1, 1)], dim=1)
        width = inputs["input_ids"].shape[1]
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max(1, max_new_tokens), do_sample=False, num_beams=1,
            eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=config)
        results = []
        stops = set(self.stop_ids)
        for tokens in out[:, width:].tolist():
            k = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
            text = self.tokenizer.decode(tokens[:k], skip_special_tokens=True)
            results.append(("unsafe" + text, min(len(tokens), k + 1)))
        return results


# -- loading ------------------------------------------------------------------------------------


def _require() -> None:
    try:
        import PIL  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise GuardrailUnavailable("llama-guard", "hf", exc.name or "transformers") from exc


def fingerprint(path: Path) -> str:
    """A cheap content hash of a checkpoint folder: small files' bytes, weights' sizes and mtimes."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        st = f.stat()
        if f.suffix in (".json", ".jinja", ".model", ".txt") and st.st_size < 50_000_000:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        else:
            h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise SpecError(f"llama-guard: unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16")
    return value


def _preprocessor_config(source: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    from transformers.utils.hub import cached_file

    path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                       **kwargs)
    if path is None:
        return {}
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def load_guard_model(source: str, *, device: str = "cpu", dtype: str = "auto") -> GuardModel:
    """Load a Llama Guard checkpoint from a local folder or a hub id onto `device` (cpu, cuda,
    cuda:N or auto) in `dtype` (auto: float32 on the CPU, bfloat16 on a GPU). SpecError with
    download instructions when it cannot be found or read, GuardrailUnavailable without the hf
    extra."""
    _require()
    from transformers import AutoConfig

    local = Path(source).expanduser()
    is_local = local.exists() or not HUB_ID.match(source)
    if is_local:
        if not (local / "config.json").is_file():
            what = "does not exist" if not local.exists() else "has no config.json"
            raise SpecError(f"llama-guard: checkpoint folder {local} {what}; {HOW_TO_GET}")
        source = str(local.resolve())
    kwargs: dict[str, Any] = {"local_files_only": True} if is_local else {}
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except Exception as exc:  # OSError, gated repo, offline: all mean "no usable checkpoint"
        raise SpecError(f"llama-guard: cannot load {source!r}: {exc}; {HOW_TO_GET}") from exc
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise SpecError(f"llama-guard: {source} is a {config.model_type!r} model; expected a Llama "
                        f"Guard checkpoint of type {', '.join(FAMILIES)} (Llama Guard 3, 3 Vision, 4)")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = _resolve_dtype(dtype, device)
    try:
        with quiet_loading():
            tokenizer = family.load_tokenizer(source, kwargs)
            model = family.model_class().from_pretrained(source, dtype=torch_dtype, **kwargs)
        processor, tiling = None, (0, 0, 0)
        if family.model_type == "mllama":
            from transformers import MllamaProcessor
            from transformers.models.mllama.image_processing_pil_mllama import (
                MllamaImageProcessorPil,
            )

            image_processor = MllamaImageProcessorPil.from_pretrained(source, **kwargs)
            processor = MllamaProcessor(  # type: ignore[no-untyped-call]
                image_processor=image_processor, tokenizer=tokenizer)
        elif family.model_type == "llama4":
            vision = config.vision_config
            pre = _preprocessor_config(source, kwargs)
            tile = int(vision.image_size)
            shrink = round(1.0 / vision.pixel_shuffle_ratio ** 2)
            tiling = (tile, int(pre.get("max_patches", 16)),
                      (tile // int(vision.patch_size)) ** 2 // shrink)
            patch = LLAMA4_TOKENS["patch"]
            patch_id = tokenizer.convert_tokens_to_ids(patch)
            if patch_id != config.image_token_index:
                raise SpecError(f"llama-guard: {source}: config image_token_index "
                                f"{config.image_token_index} is not the tokenizer's {patch} "
                                f"({patch_id}); image features would land on the wrong tokens")
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(f"llama-guard: cannot load the {family.label} checkpoint {source}: "
                        f"{type(exc).__name__}: {exc}; {HOW_TO_GET}") from exc
    model.eval()
    if device != "cpu":
        try:
            model.to(device)
        except (RuntimeError, ValueError) as exc:
            raise SpecError(f"llama-guard: cannot place the model on device {device!r}: {exc}") from exc
    missing = [t for t in (family.header_start, family.header_end, family.eot)
               if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        raise SpecError(f"llama-guard: the tokenizer of {source} lacks the {family.label} special "
                        f"tokens {missing}")
    return GuardModel(family, model, tokenizer, source=source,
                      fingerprint=fingerprint(Path(source)) if is_local else source,
                      processor=processor, tiling=tiling)
