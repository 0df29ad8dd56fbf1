"""The enrollment lifecycle mix of the demo and the chaos run (issue #13, §8), sent like a payment provider would.

Of the first confirmations (one per student and course), by default: 10% are refunded in full (a fifth of them
charged back), half of those right after their confirmation (the enrollment still in flight) and half once the
enrollment completed, and half of them are bought again (a new payment) as soon as the refund was accepted; 2%
are refunded in part (the enrollment stays); 2% get a second confirmation once the first completed (a
duplicate); 2% are paid 0.01 instead of the price. An in-flight refund goes out at a random moment of the first
1.5 s after its confirmation: before the purchase exists, during the allocation or the scheduling. `Sent`
records what the webhooks accepted, and its `expected()` is what the invariants check against.
"""
from __future__ import annotations

import argparse
import datetime
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import requests

from purchases.signing import sign

if TYPE_CHECKING:  # the invariants need Django set up; this module is imported before (the options)
    from tools.invariants import Expected

PRICE, CURRENCY, WRONG_AMOUNT, PARTIAL_AMOUNT = "49.00", "EUR", "0.01", "10.00"


@dataclass(frozen=True)
class Shares:
    """How much of each kind is sent, as fractions of the first confirmations (or of the full refunds)."""

    refund: float = 0.10  # refunded in full or charged back
    chargeback: float = 0.2  # of the full refunds: chargebacks
    repurchase: float = 0.5  # of the full refunds: bought again once the refund was accepted
    in_flight: float = 0.5  # of all refunds: sent right after the confirmation rather than after the enrollment
    in_flight_delay: float = 1.5  # seconds: an in-flight refund waits up to this long after its confirmation
    partial: float = 0.02  # refunded in part
    duplicate: float = 0.02  # a second confirmation for the same student and course
    mismatch: float = 0.02  # a wrong amount


def add_share_arguments(parser: argparse.ArgumentParser) -> None:
    """--refund-share, --chargeback-share, ... --in-flight-delay, with the defaults of `Shares`."""
    for f in fields(Shares):
        option = f.name.replace("_", "-") + ("" if f.name == "in_flight_delay" else "-share")
        parser.add_argument(f"--{option}", type=float, default=f.default, metavar="F",
                            dest=f"lifecycle_{f.name}", help=f"default {f.default}")


def shares_from(args: argparse.Namespace) -> Shares:
    return Shares(**{f.name: getattr(args, f"lifecycle_{f.name}") for f in fields(Shares)})


@dataclass(frozen=True)
class Item:
    """One student and course, and what the provider sends for it."""

    student: int
    course: int
    payment: str  # provider_payment_id of its first confirmation
    amount: str = PRICE
    refund: str = ""  # "", "full", "chargeback" or "partial"
    in_flight: bool = False  # the refund right after the confirmation
    delay: float = 0.0  # seconds between the confirmation and its in-flight refund
    repurchase: bool = False
    duplicate: bool = False

    @property
    def later(self) -> bool:
        """Sent once the first enrollment completed: a refund not in flight, a duplicate."""
        return self.duplicate or bool(self.refund and not self.in_flight)


def plan(pairs: Sequence[tuple[int, int]], shares: Shares = Shares(), prefix: str = "demo",
         seed: int = 13) -> list[Item]:
    """The mix for `pairs` (student, course): disjoint random sets per kind, sizes rounded from the shares."""
    rng, n = random.Random(seed), len(pairs)
    sizes = [round(n * s) for s in (shares.refund, shares.partial, shares.duplicate, shares.mismatch)]
    if sum(sizes) > n:
        raise ValueError(f"the shares ask for {sum(sizes)} special payments out of {n}")
    order = rng.sample(range(n), sum(sizes))
    full, partial, dups, wrong = (order[sum(sizes[:k]):sum(sizes[:k + 1])] for k in range(4))

    def pick(among: list[int], share: float) -> set[int]:
        return set(rng.sample(among, round(len(among) * share)))

    chargebacks, again, in_flight = pick(full, shares.chargeback), pick(full, shares.repurchase), \
        pick(full + partial, shares.in_flight)
    refund = {**dict.fromkeys(full, "full"), **dict.fromkeys(chargebacks, "chargeback"),
              **dict.fromkeys(partial, "partial")}
    wrong_amount, duplicate = set(wrong), set(dups)
    return [Item(s, c, f"{prefix}_{i}_{s}", amount=WRONG_AMOUNT if i in wrong_amount else PRICE,
                 refund=refund.get(i, ""), in_flight=i in in_flight, repurchase=i in again, duplicate=i in duplicate,
                 delay=round(rng.uniform(0, shares.in_flight_delay), 2) if i in in_flight else 0.0)
            for i, (s, c) in enumerate(pairs)]


class Provider:
    """Signs and POSTs the provider's webhooks. Like a real provider it retries the same body on 5xx and
    connection errors (a repeat is answered 200) until `deadline` (time.monotonic()), or for `patience` seconds
    per request without one; counts every answer."""

    def __init__(self, url: str, secret: str, deadline: float | None = None, patience: float = 60,
                 retry_every: float = 0.5) -> None:
        self.url, self.secret, self.retry_every = url, secret, retry_every
        self.deadline, self.patience = deadline, patience
        self.answers: Counter[str] = Counter()  # "confirmation 202", "refund 200", ...
        self.retries = self.gave_up = 0
        self._local, self._lock = threading.local(), threading.Lock()

    def _attempt(self, path: str, body: bytes) -> int | None:
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        headers = {"Content-Type": "application/json", **sign(body, self.secret)}
        try:
            return session.post(self.url + path, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException:
            self._local.session = None
            return None

    def post(self, kind: str, path: str, payload: dict) -> bool:
        """True when accepted (200, 202)."""
        body = json.dumps(payload).encode()
        give_up_at = self.deadline if self.deadline is not None else time.monotonic() + self.patience
        while (code := self._attempt(path, body)) is None or code >= 500:
            with self._lock:
                self.retries += 1
                if time.monotonic() > give_up_at:
                    self.gave_up += 1
                    break
            time.sleep(self.retry_every)
        with self._lock:
            self.answers[f"{kind} {code or 'no answer'}"] += 1
        return code in (200, 202)

    def confirm(self, student: int, course: int, payment: str, amount: str = PRICE) -> bool:
        return self.post("confirmation", "/api/payments/confirmations", {
            "provider_payment_id": payment, "student_id": student, "course_id": course, "amount": amount,
            "currency": CURRENCY, "confirmed_at": datetime.datetime.now(datetime.UTC).isoformat()})

    def refund(self, payment: str, amount: str, reason: str) -> bool:
        return self.post("refund", "/api/payments/refunds", {
            "provider_refund_id": f"rf_{payment}", "provider_payment_id": payment, "amount": amount,
            "currency": CURRENCY, "reason": reason, "refunded_at": datetime.datetime.now(datetime.UTC).isoformat()})


@dataclass
class Sent:
    """The provider_payment_ids of what the webhooks accepted, by kind (list.append is atomic: senders share it)."""

    payments: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    chargebacks: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)  # refunds sent right after their confirmation
    repurchased: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def expected(self, dead_letters: int = 0) -> Expected:
        from tools.invariants import Expected

        return Expected(len(self.payments), tuple(self.refunded), tuple(self.repurchased), tuple(self.duplicates),
                        tuple(self.mismatches), tuple(self.partial), dead_letters)

    def mix(self) -> dict[str, int]:
        """The counts of the report."""
        return {"confirmations": len(self.payments), "full_refunds": len(self.refunded),
                "of_them_chargebacks": len(self.chargebacks), "partial_refunds": len(self.partial),
                "refunds_in_flight": len(self.in_flight),
                "refunds_after_completion": len(self.refunded) + len(self.partial) - len(self.in_flight),
                "repurchases": len(self.repurchased), "duplicates": len(self.duplicates),
                "mismatches": len(self.mismatches)}


class Mix:
    """Sends the items in two waves (the second once its targets completed) and records what was accepted."""

    def __init__(self, provider: Provider) -> None:
        self.provider, self.sent = provider, Sent()

    def first(self, item: Item, pace: float = 0.0) -> bool:
        accepted = self.provider.confirm(item.student, item.course, item.payment, item.amount)
        if accepted:
            self.sent.payments.append(item.payment)
            if item.amount != PRICE:
                self.sent.mismatches.append(item.payment)
            if item.refund and item.in_flight:
                time.sleep(item.delay)
                self.refund(item)
        time.sleep(pace)
        return accepted

    def second(self, item: Item) -> None:
        if item.refund and not item.in_flight:
            self.refund(item)
        if item.duplicate and self.provider.confirm(item.student, item.course, f"dup_{item.payment}"):
            self.sent.payments.append(f"dup_{item.payment}")
            self.sent.duplicates.append(f"dup_{item.payment}")

    def refund(self, item: Item) -> None:
        """The refund, and the re-purchase right after it was accepted."""
        amount = PARTIAL_AMOUNT if item.refund == "partial" else PRICE
        reason = "chargeback" if item.refund == "chargeback" else "requested_by_customer"
        if not self.provider.refund(item.payment, amount, reason):
            return
        if item.in_flight:
            self.sent.in_flight.append(item.payment)
        if item.refund == "partial":
            self.sent.partial.append(item.payment)
            return
        self.sent.refunded.append(item.payment)
        if item.refund == "chargeback":
            self.sent.chargebacks.append(item.payment)
        if item.repurchase and self.provider.confirm(item.student, item.course, f"re_{item.payment}"):
            self.sent.payments.append(f"re_{item.payment}")
            self.sent.repurchased.append(f"re_{item.payment}")


def send_mix(provider: Provider, items: Sequence[Item], senders: int, wait: Callable[[list[str]], object],
             pace: float = 0.0) -> Sent:
    """First wave: every confirmation (and the in-flight refunds, and their re-purchases) from `senders` threads,
    each pausing `pace` seconds after each item; then `wait(provider ids)` until the second wave's targets
    completed; then the second wave (refunds after completion and their re-purchases, duplicates)."""
    mix = Mix(provider)
    with ThreadPoolExecutor(senders) as pool:
        accepted = list(pool.map(lambda item: mix.first(item, pace), items))
        later = [item for item, ok in zip(items, accepted) if ok and item.later]
        wait([item.payment for item in later])
        list(pool.map(mix.second, later))
    return mix.sent


# Payments (all, or the given ones) whose active purchase holds an allocation with 7 sessions not cancelled.
ENROLLED_SQL = """
SELECT count(*) FROM payments p JOIN student_course_purchases pu ON pu.payment_id = p.id AND pu.is_active
WHERE (%s::text[] IS NULL OR p.provider_payment_id = ANY(%s::text[])) AND 7 <= (
    SELECT count(*) FROM trainer_allocations a JOIN training_sessions s ON s.allocation_id = a.id
    WHERE a.student_id = pu.student_id AND a.course_id = pu.course_id AND a.status IN ('approved', 'active')
      AND s.status <> 'cancelled')"""


def db_retrying(fn: Callable[[], object], attempts: int = 60):
    """Run a query function, reconnecting while PostgreSQL restarts (chaos)."""
    from django.db import InterfaceError, OperationalError, connection

    for _ in range(attempts):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connection.close()
            time.sleep(0.5)
    return fn()


def enrolled(provider_payment_ids: list[str] | None = None) -> int:
    from django.db import connection

    def count() -> int:
        with connection.cursor() as cur:
            cur.execute(ENROLLED_SQL, [provider_payment_ids, provider_payment_ids])
            return cur.fetchone()[0]

    return db_retrying(count)


def idle() -> bool:
    """Nothing left to do: every outbox row sent, no retry pending, every consumer group caught up."""
    from django.db import connection

    from tools.invariants import total_lag

    def counts() -> tuple[int, int]:
        with connection.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM outbox_pending),"
                        " (SELECT count(*) FROM pending_retries)")
            return cur.fetchone()

    return db_retrying(counts) == (0, 0) and total_lag() == 0


def wait_enrolled(provider_payment_ids: list[str], timeout: float,
                  progress: Callable[[int, int], None] | None = None) -> bool:
    """Poll until every given payment holds its complete enrollment; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done = enrolled(provider_payment_ids)
        if progress is not None:
            progress(done, len(provider_payment_ids))
        if done >= len(provider_payment_ids) or time.monotonic() > deadline:
            return done >= len(provider_payment_ids)
        time.sleep(0.5)
