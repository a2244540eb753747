"""The simulated exchanges, derived from the registry: each venue's spec names its simulator,
and the simulator class carries its products and documented limits."""

from __future__ import annotations

from schemahub.simulator.market import ProductSpec
from schemahub.simulator.wire import SimulatedExchange
from schemahub.sources.registry import list_exchanges, spec


def simulated() -> list[str]:
    return list_exchanges()


def simulator_class(exchange: str) -> type[SimulatedExchange]:
    return spec(exchange).simulator_class()


def default_products(exchange: str) -> tuple[ProductSpec, ...]:
    return simulator_class(exchange).default_products


def tradable(products: tuple[ProductSpec, ...]) -> list[ProductSpec]:
    """The products a seed would take (online, trading, not cancel-only)."""
    return [p for p in products if p.status in ("online", "TRADING", "live", "Trading")
            and not p.cancel_only and not p.trading_disabled]
