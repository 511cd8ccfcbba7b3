"""`async with` for the long-lived objects of both sides (transports, agents,
the escrow's services): entering starts the object, leaving closes it, whatever
ended the block."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Resource"]


class Resource:
    """A mixin: `async with obj:` awaits `obj.start()`, then `obj.close()` on
    the way out. `start` does nothing unless the class has something to start."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
