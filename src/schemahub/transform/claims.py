"""Which products one transform process takes: scale-out over several processes or hosts.

A transform run works in *rounds*. Each round leases the products it will transform
(``transform/<exchange>/<symbol>``), skipping those another process holds, until its
planned ids reach ``round_ids``; it commits them in one Delta commit and gives the
leases back, then plans again. A small incremental run is one round (one commit); a
backfill of many symbols is several, and processes started side by side take disjoint
products as they go. Leases are for sharing the work: what keeps a product from being
committed twice is the table itself - each commit carries the product's cursor as a
Delta transaction id, and two commits of one product conflict (the loser plans again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from schemahub.transform.plan import ProductPlan

ROUND_IDS = 200_000_000
"""Trade ids per round (about 15 GB of CSV): a backfill commits, and shares out, in slices."""

Product = tuple[str, str]


def planned_ids(plan: ProductPlan) -> int:
    return sum(key.last_id - key.first_id + 1 for key in plan.files)


@dataclass
class Claims:
    take: Callable[[str, str], bool]
    """Lease a product; False when another process holds it."""
    give_back: Callable[[str, str], None]
    round_ids: int = ROUND_IDS
    held: set[Product] = field(default_factory=set)
    done: set[Product] = field(default_factory=set)
    """Products this run committed (a later round does not take them again)."""
    skipped: set[Product] = field(default_factory=set)
    """Products another process was transforming when this one asked."""
    more: bool = False
    """The last ``choose`` left products out (the round was full, or another process held
    them): plan another round after this one."""

    @classmethod
    def everything(cls) -> Claims:
        """No sharing: every product, one round (dry runs, rebuilds, library use without leases)."""
        return cls(lambda *_: True, lambda *_: None, round_ids=0)

    def choose(self, plans: list[ProductPlan]) -> list[ProductPlan]:
        chosen, ids = [], 0
        self.more = False
        for plan in plans:
            product = (plan.exchange, plan.symbol)
            if product in self.done:
                continue
            full = self.round_ids > 0 and ids >= self.round_ids
            if product not in self.held:
                if full:
                    self.more = True  # the next round (or another process) takes it
                    continue
                if not self.take(*product):
                    self.skipped.add(product)
                    self.more = True
                    continue
                self.held.add(product)
                self.skipped.discard(product)
            chosen.append(plan)
            ids += planned_ids(plan)
        return chosen

    def end_round(self) -> None:
        for product in sorted(self.held):
            self.give_back(*product)
        self.done |= self.held
        self.held.clear()
