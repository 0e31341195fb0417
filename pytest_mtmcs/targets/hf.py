"""`hf:PATH`: a local (or hub) causal language model answering through its chat template.

Text-only: `supports_images` is False, so the engine skips multimodal dialogues or sends the
caption instead; any image parts that still arrive are ignored (only `Message.text` is used).

Batching. The engine fires many `respond` calls at once from its event loop. Each call renders
and tokenizes its prompt on the loop, then hands a `GenerationRequest` to the target's
`batching.MicroBatcher`, which cuts batches of up to `options.batch_size` requests with equal
`GenParams` (similar prompt lengths first), and this module left-pads each batch and runs a
single `generate` on the batcher's worker thread, so the event loop stays free while the CPU
works. Calls arriving during a batch form the next one. `batch_sizes` records every `generate`.
Failures follow the batcher's one error policy: a failing batch is retried one prompt at a
time, so a prompt the model cannot take fails only its own call, with a `TargetError`.

Decoding. Temperature 0 is greedy. Otherwise each prompt samples (plain temperature sampling,
full vocabulary) from its own `torch.Generator` seeded by sha256 of the rendered prompt, so a
reply depends on the prompt alone, not on which other prompts shared its batch or on run order.
Other generation settings in the folder's generation_config.json (e.g. repetition_penalty) apply
as the model's authors set them; its do_sample/temperature never override ours.
`Reply.latency_s` is the wall time of the `generate` call that answered (queueing excluded).
Runs on CUDA when torch sees a GPU (untested here), else on the CPU; weights load as float32.

torch and transformers are imported inside functions only; `pytest_mtmcs` never imports them
at import time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.errors import GuardrailUnavailable, SpecError, TargetError
from pytest_mtmcs.targets.base import Target, TargetOptions
from pytest_mtmcs.targets.batching import MicroBatcher
from pytest_mtmcs.targets.quiet import quiet_loading

DECODING_VERSION = 1
"""Bump when the decoding procedure changes outputs (it is part of `identity()`)."""

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""What a hub id (`owner/name`) looks like; a spec that exists on disk is a folder regardless."""
FOLDER_CONTENTS = ("a model folder must contain config.json, the weights (*.safetensors or "
                   "pytorch_model*.bin) and a tokenizer (tokenizer.json or tokenizer_config.json) "
                   "with a chat template, as written by save_pretrained()")


def require_transformers() -> None:
    """Raise GuardrailUnavailable (with the install line) unless torch and transformers import."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise GuardrailUnavailable("the hf: target", "hf", exc.name or "transformers") from exc


def configure_threads() -> int:
    """Lower torch's intra-op threads under pytest-xdist, never raise them; returns the count.

    An explicit OMP_NUM_THREADS / MKL_NUM_THREADS (or an earlier torch.set_num_threads) wins.
    Under xdist every worker would otherwise use all cores and they would oversubscribe the CPU,
    so each gets cores // workers (at least 1).
    """
    import torch

    current = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return current
    if os.environ.get("PYTEST_XDIST_WORKER"):
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0) or (os.cpu_count() or 1)
        share = max(1, (os.cpu_count() or 1) // workers)
        if share < current:
            torch.set_num_threads(share)
    return torch.get_num_threads()


def check_model_folder(path: Path) -> None:
    """Raise SpecError unless `path` looks like a save_pretrained() causal-LM folder."""
    if not path.exists():
        raise SpecError(f"hf: model folder {path} does not exist; {FOLDER_CONTENTS}")
    if not path.is_dir():
        raise SpecError(f"hf: {path} is a file, not a folder; {FOLDER_CONTENTS}")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(any(path.glob(p)) for p in _WEIGHT_PATTERNS):
        missing.append("weights")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files")
    if missing:
        raise SpecError(f"hf: model folder {path} lacks {', '.join(missing)}; {FOLDER_CONTENTS}")


def _folder_fingerprint(path: Path) -> str:
    """Cheap content fingerprint: config/tokenizer/template bytes, weight names, sizes, mtimes."""
    h = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir() if p.is_file()):
        f = path / name
        if f.suffix in (".json", ".jinja", ".model", ".txt") and f.stat().st_size < 50_000_000:
            h.update(name.encode() + b"\0" + f.read_bytes())
        else:
            st = f.stat()
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prompt_seed(prompt: str) -> int:
    """The sampling seed of a rendered prompt (63 bits of its sha256)."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class GenerationRequest:
    """One rendered prompt waiting for its `generate` batch."""

    ids: list[int]
    """Its token ids, unpadded (batches are also cut by their length)."""
    prompt: str
    """The rendered prompt text (sampling seeds derive from it)."""
    params: GenParams
    """Decoding settings; only requests with equal params share a batch."""


class HFCausalLMTarget(Target):
    """A transformers causal LM with a chat template; batched, text-only, CPU or GPU."""

    supports_images = False

    def __init__(self, model: Any, tokenizer: Any, *, source: str, options: TargetOptions,
                 fingerprint: str = "", dtype: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        """The resolved model path (or hub id) the weights came from."""
        self.options = options
        self.batch_size = max(1, options.batch_size)
        self.identity_source: str | None = None
        """When set, names the weights in `identity()` in place of path and fingerprint
        (built-in models whose cache folder may live anywhere)."""
        self.conversion_s: float | None = None
        """Seconds spent converting the weights when this target was built (None: no conversion)."""
        self._fingerprint = fingerprint
        self.dtype = dtype or str(getattr(model, "dtype", "")).removeprefix("torch.")
        """The weights' dtype name (e.g. float32); part of `identity()`."""
        self.tokenizer_lock = threading.Lock()
        """Held around every tokenizer use: Rust tokenizers raise "Already borrowed" when two
        threads use one at once (the loop renders while the worker thread decodes)."""
        self.batcher: MicroBatcher[GenerationRequest, Reply] = MicroBatcher(
            self.generate_batch, max_size=self.batch_size, key=self.batch_key,
            length=lambda request: len(request.ids), thread_name="mtmcs-hf",
            label=lambda: f"{self.spec} ({self.source}): generate")
        """Cuts `respond` calls into `generate` batches on one worker thread."""
        tokenizer.padding_side = "left"
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = tokenizer.eos_token_id
        self.stop_ids = self._stop_ids()

    # -- identity -------------------------------------------------------------------------------

    def identity(self) -> str:
        import transformers

        weights = ({"weights": self.identity_source} if self.identity_source is not None
                   else {"source": self.source, "fingerprint": self._fingerprint})
        return json.dumps({
            "kind": "hf-causal-lm", **weights,
            "dtype": self.dtype, "device": str(getattr(self.model, "device", "cpu")).split(":")[0],
            "transformers": transformers.__version__,
            "decoding": DECODING_VERSION, "stop_ids": self.stop_ids,
        }, sort_keys=True)

    @property
    def batch_sizes(self) -> list[int]:
        """Size of every `generate` call made so far, in order (tests and benchmarks read it)."""
        return self.batcher.batch_sizes

    def describe(self) -> str:
        return f"{self.spec} ({self.source}, {self.dtype}, batch {self.batch_size})"

    def _stop_ids(self) -> list[int]:
        ids: set[int] = set()
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(int(v) for v in value)
        return sorted(ids)

    # -- prompts --------------------------------------------------------------------------------

    def render_prompt(self, conversation: Conversation) -> str:
        """The exact prompt text the model sees: the chat template with a generation prompt."""
        messages = [{"role": m.role, "content": m.text} for m in conversation]
        with self.tokenizer_lock:
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True))

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt (no special tokens added: the template has them)."""
        with self.tokenizer_lock:
            return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    # -- async front end ------------------------------------------------------------------------

    def build_request(self, conversation: Conversation, params: GenParams) -> GenerationRequest:
        """Render and tokenize on the caller's loop; TargetError when the template refuses."""
        try:
            prompt = self.render_prompt(conversation)
            ids = self.encode(prompt)
        except Exception as exc:  # a template that rejects this conversation (e.g. role order)
            raise TargetError(f"{self.spec}: cannot render the conversation with the model's "
                              f"chat template: {type(exc).__name__}: {exc}") from exc
        return GenerationRequest(ids, prompt, params)

    def batch_key(self, request: GenerationRequest) -> object:
        """Requests with equal keys may share a `generate` call: here, equal params."""
        return request.params

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        return await self.batcher.call(self.build_request(conversation, params))

    async def respond_many(self, conversations: Sequence[Conversation],
                           params: GenParams) -> list[Reply]:
        """All conversations at once, so they share batches."""
        return list(await asyncio.gather(*(self.respond(c, params) for c in conversations)))

    # -- generation (worker thread) -------------------------------------------------------------

    def generate_batch(self, batch: list[GenerationRequest]) -> list[Reply]:
        """One left-padded `generate` for the batch: a reply per request, in order (blocking:
        the batcher runs it on its worker thread)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        params = batch[0].params
        width = max(len(r.ids) for r in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, r in enumerate(batch):
            if r.ids:
                input_ids[row, width - len(r.ids):] = torch.tensor(r.ids, dtype=torch.long)
                attention[row, width - len(r.ids):] = 1
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max(1, params.max_tokens), do_sample=False, num_beams=1,
            eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        processors = LogitsProcessorList()
        if params.temperature > 0:
            # Greedy over a one-hot produced by per-row seeded sampling: see row_sampler.
            seed = "" if params.seed is None else f"\x00seed={params.seed}"
            processors.append(row_sampler(params.temperature,
                                           [prompt_seed(r.prompt + seed) for r in batch]))
        device = getattr(self.model, "device", None)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids.to(device),
                                      attention_mask=attention.to(device),
                                      generation_config=config, logits_processor=processors)
        elapsed = time.perf_counter() - start
        new = out[:, width:].tolist()
        stops = set(self.stop_ids)
        replies = []
        for r, tokens in zip(batch, new, strict=True):
            n = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
            with self.tokenizer_lock:
                text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
            replies.append(Reply(text=text.strip(), prompt_tokens=len(r.ids), completion_tokens=n,
                                 latency_s=elapsed))
        return replies

    async def aclose(self) -> None:
        """Fail calls still waiting, stop the worker thread after the batch in flight."""
        await self.batcher.aclose()


def row_sampler(temperature: float, seeds: list[int]) -> Any:
    """A logits processor that samples each row with its own generator and returns a one-hot.

    HF's own sampling draws the whole batch from one global RNG, which would make a reply depend
    on its batch-mates. Here row i draws from `Generator(seeds[i])`, and greedy decoding then
    picks exactly the sampled token.
    """
    import torch
    from transformers import LogitsProcessor

    class _RowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(s) for s in seeds]

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            probs = torch.softmax(scores.float().cpu() / temperature, dim=-1)
            picks = torch.stack([torch.multinomial(probs[i], 1, generator=g)
                                 for i, g in enumerate(self.generators)])
            onehot = torch.full_like(scores, float("-inf"))
            return onehot.scatter_(1, picks.to(scores.device), 0.0)

    return _RowSampler()


def load(source: str, options: TargetOptions, *, dtype: str = "float32") -> HFCausalLMTarget:
    """Load a causal LM and its tokenizer from a local folder or hub id into a target."""
    require_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    configure_threads()
    source, is_local, fingerprint, offline = resolve_source(source)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(source, **offline)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **offline)
    except Exception as exc:  # OSError, ValueError, hub errors, shape mismatches: all mean "bad spec"
        where = (f"model folder {source}" if is_local
                 else f"{source!r} (neither a local folder nor a loadable hub id)")
        raise SpecError(f"hf: cannot load {where}: {exc}; {FOLDER_CONTENTS}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise SpecError(f"hf: {source} has no chat template (tokenizer_config.json 'chat_template' "
                        f"or chat_template.jinja); {FOLDER_CONTENTS}")
    model.eval()  # type: ignore[no-untyped-call]
    if torch.cuda.is_available():  # numerics differ from CPU: the device is part of identity()
        model.to("cuda")  # type: ignore[arg-type]
    return HFCausalLMTarget(model, tokenizer, source=source, options=options,
                            fingerprint=fingerprint, dtype=dtype)


def resolve_source(source: str) -> tuple[str, bool, str, dict[str, bool]]:
    """(source, is it a local folder, the folder's fingerprint, from_pretrained's offline
    kwargs) of a model spec: a local folder is checked, resolved and never goes online."""
    local = Path(source).expanduser()
    is_local = local.exists() or not HUB_ID.match(source)
    fingerprint = ""
    if is_local:
        check_model_folder(local)
        local = local.resolve()
        source = str(local)
        fingerprint = _folder_fingerprint(local)
    return source, is_local, fingerprint, ({"local_files_only": True} if is_local else {})
