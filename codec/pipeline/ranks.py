"""This process's place in a multi-process ``audiotok tokenize`` run, and the token store all ranks share.

Under ``accelerate launch`` / ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK set) every rank scans the same
sorted input list and takes files ``rank, rank + world, ...`` (`RankContext.share`). Rank 0 creates the
store (`open_or_create_store`), the others wait for it (a gloo barrier when the launcher describes a
group, else `wait_for_meta`); each rank then appends as its own writer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codec.store import StoreError, StoreMeta, TokenStore


class TokenizeUsageError(ValueError):
    """The run cannot start (store of another codec, bad option); the CLI prints it as a usage error."""


@dataclass
class RankContext:
    """This process's place in a multi-process run, from the launcher's environment variables."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @staticmethod
    def from_env() -> RankContext:
        env = os.environ
        ctx = RankContext(
            int(env.get("RANK", 0) or 0),
            int(env.get("WORLD_SIZE", 1) or 1),
            int(env.get("LOCAL_RANK", 0) or 0),
        )
        if not 0 <= ctx.rank < ctx.world_size:
            raise TokenizeUsageError(
                f"RANK={ctx.rank} is outside WORLD_SIZE={ctx.world_size}; check the launcher."
            )
        return ctx

    @property
    def writer(self) -> str:
        return f"r{self.rank}"

    def share(self, n: int) -> range:
        """Indexes of this rank's inputs among ``n`` sorted ones (round robin: lengths stay balanced)."""
        return range(self.rank, n, self.world_size)

    def init_process_group(self) -> bool:
        """Join the launcher's gloo group when one is described (MASTER_ADDR set); True if joined."""
        import torch.distributed as dist

        if self.world_size == 1 or not dist.is_available() or "MASTER_ADDR" not in os.environ:
            return False
        if not dist.is_initialized():
            from datetime import timedelta

            dist.init_process_group("gloo", timeout=timedelta(hours=6))
            self.owns_group = True
        return True

    def close(self) -> None:
        """Leave the process group if `init_process_group` made it."""
        if getattr(self, "owns_group", False):
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def wait_for_meta(path: Path, timeout_s: float = 600.0) -> None:
    """Ranks > 0 without a process group: poll until rank 0 has created the store."""
    deadline = time.monotonic() + timeout_s
    while not (path / "meta.json").is_file():
        if time.monotonic() > deadline:
            raise TokenizeUsageError(f"{path}: rank 0 did not create the store within {timeout_s:.0f} s.")
        time.sleep(0.1)


def open_or_create_store(
    path: str | os.PathLike, codec: Any, num_codebooks: int, codec_spec: str | None, writer: str = "r0"
) -> TokenStore:
    """Open the store at ``path`` for appending as ``writer``, creating it for ``codec`` if absent.

    Raises `TokenizeUsageError` if it holds another codec's codes or another K, or is not a store.
    """
    path = Path(path)
    try:
        if not (path / "meta.json").exists():
            if codec_spec and os.path.exists(codec_spec):
                codec_spec = os.path.abspath(codec_spec)  # so decode finds it from any working directory
            meta = StoreMeta(
                codec_id=codec.codec_id,
                sample_rate=int(codec.sample_rate),
                frame_rate=codec.frame_rate,
                num_codebooks=num_codebooks,
                codebook_size=int(codec.codebook_size),
                codec=codec_spec or "default",
            )
            return TokenStore.create(path, meta, writer=writer)
        store = TokenStore.open(path, mode="a", writer=writer)
    except StoreError as e:
        raise TokenizeUsageError(str(e)) from None
    meta = store.meta
    if meta.codec_id != codec.codec_id or meta.num_codebooks != num_codebooks:
        store.close()
        raise TokenizeUsageError(
            f"{path} holds codes of codec {meta.codec_id} with K={meta.num_codebooks}, not "
            f"{codec.codec_id} with K={num_codebooks}; pass the same --codec and --num-codebooks "
            "or choose a new store."
        )
    return store
