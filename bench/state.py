"""What durable state costs: the demo stream judged on Azurite against in memory.

The same 30 events (80 targets) run through the pipeline in dry-run twice per
round: once with the ledger, budget, facts cache and backlog in memory, once with
them in Table and Queue storage on Azurite, both against one simulator on
loopback. Each round starts from empty state (new tables, new caches), so every
pass pays the same Defender lookups; the best round of each is kept. The ratio is
what sharing state between instances adds to judging a burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from demo.stream import build_stream
from local_storage import start_azurite
from shared.credentials import StaticTokenProvider
from shared.defender_client import DefenderClient
from shared.pipeline import Message
from shared.playbook import build_pipeline, build_state
from shared.settings import Settings
from simulator import PLAYBOOK_ROLES, demo_tenant, make_token, start_simulator

ROUNDS = 5


def run() -> None:
    """Print the time per pass and per target, and the durable/memory ratio."""
    messages = [
        Message(body=event.body, source=f"event {index}")
        for index, event in enumerate(build_stream(demo_tenant()))
    ]
    azurite = start_azurite()
    simulator = start_simulator(time_scale=20_000)
    try:
        environ = {
            "DEFENDER_API_URL": simulator.base_url,
            "DEFENDER_TOKEN": make_token(PLAYBOOK_ROLES),
            "MIN_ALERT_SEVERITY": "medium",
        }
        memory = _pass(environ, messages)
        durable = _pass(
            {**environ, "AzureWebJobsStorage": azurite.connection_string}, messages
        )
        memory_time, durable_time, targets = _best_of(memory, durable)
    finally:
        simulator.stop()
        azurite.stop()

    print(f"state: {len(messages)} events, {targets} targets per pass, dry-run")
    print(
        f"  in memory         {memory_time * 1e3:8.1f} ms per pass (best of {ROUNDS})"
    )
    print(f"  Azurite           {durable_time * 1e3:8.1f} ms per pass")
    print(f"  per target        {durable_time / targets * 1e3:8.2f} ms on Azurite")
    print(f"  time ratio        {durable_time / memory_time:8.2f}x")


def _pass(environ: dict[str, str], messages: list[Message]) -> Callable[[int], int]:
    """A pass from empty state; returns how many targets it judged."""

    def work(round_number: int) -> int:
        settings = Settings.from_env(
            {**environ, "STATE_TABLE_PREFIX": f"bench{round_number}r"}
        )
        state = build_state(settings)
        client = DefenderClient(
            api_url=environ["DEFENDER_API_URL"],
            tokens=StaticTokenProvider(environ["DEFENDER_TOKEN"]),
            budget=state.budget,
        )
        pipeline = build_pipeline(settings, state=state, client=client)
        outcomes = pipeline.run(messages)
        client.close()
        return sum(1 for outcome in outcomes if outcome.verdict != "rejected")

    return work


def _best_of(
    memory: Callable[[int], int], durable: Callable[[int], int]
) -> tuple[float, float, int]:
    best_memory = best_durable = float("inf")
    targets = 0
    for round_number in range(ROUNDS):
        started = time.perf_counter()
        targets = memory(round_number)
        best_memory = min(best_memory, time.perf_counter() - started)

        started = time.perf_counter()
        durable(round_number)
        best_durable = min(best_durable, time.perf_counter() - started)
    return best_memory, best_durable, targets
