"""Gather an agent's named inputs (HTTP, feeds, commands, files) before its prompt renders.

Every expected failure becomes an :class:`InputError` naming the input and the reason, raised
from one place (:func:`gather_one`); helpers raise the private ``_Failure`` with the reason only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from core.agents.inputs.base import InputError, _all_or_first_error, _Failure
from core.agents.inputs.commands import _run_command
from core.agents.inputs.files import _read_file
from core.agents.inputs.http import _fetch, _fetch_many
from core.config.agents import InputConfig


async def gather_inputs(
    inputs: Mapping[str, InputConfig], *, session: aiohttp.ClientSession, base_dir: Path
) -> dict[str, Any]:
    """Gather every input concurrently and return ``{name: value}``.

    The first input to fail raises its :class:`InputError`; the others are cancelled (their
    subprocesses killed) before it propagates.
    """
    names = list(inputs)
    values = await _all_or_first_error(
        [gather_one(n, inputs[n], session=session, base_dir=base_dir) for n in names]
    )
    return dict(zip(names, values, strict=True))


async def gather_one(
    name: str, cfg: InputConfig, *, session: aiohttp.ClientSession, base_dir: Path
) -> Any:
    """Gather one input: the parsed feed / JSON / text of a URL, a list of those for a list of
    URLs, a command's stdout, or a file's text (parsed if ``.json``). Raises :class:`InputError`.
    """
    try:
        if cfg.http is not None:
            if isinstance(cfg.http, str):
                value, _ = await _fetch(cfg.http, cfg, session)
                return value
            return await _fetch_many(cfg.http, cfg, session)
        if cfg.command is not None:
            return await _run_command(cfg.command, cfg, base_dir)
        assert cfg.file is not None  # InputConfig guarantees exactly one kind
        return await _read_file(cfg.file, cfg, base_dir)
    except _Failure as e:
        raise InputError(name, e.reason) from None
