"""The demo customers (flows/customers-demo.csv) answering identity checks in tests of the shipped
flows, as they answer `voicebot chat --script` for a scenario file with ``customers:``.

The meter reading and the instalment change of flows/energie.yaml need a verified caller, so a test
that walks those paths verifies as a demo customer first: Jan de Vries by customer number and date
of birth. Each service counts failed checks in its own process memory, never in a developer's Redis.
"""

from __future__ import annotations

from pathlib import Path

from voicebot.commands.context import chat_identity
from voicebot.config import load_settings
from voicebot.flow import Flow
from voicebot.identity.service import IdentityService

REPO = Path(__file__).resolve().parent.parent
DEMO_CSV = REPO / "flows" / "customers-demo.csv"

JAN_NUMBER = "100001"
JAN_NAME = "Jan de Vries"
JAN_BIRTH_KEYS = "14031975"                                  # DDMMJJJJ, as keyed
JAN_BIRTH_SPOKEN = "veertien maart negentien vijfenzeventig"
JAN_PHONE = "+31612345678"


def demo_identity(flow: Flow) -> IdentityService:
    """A new identity service for ``flow`` with the demo customers and fresh lockout counters."""
    service = chat_identity(load_settings(REPO / "config.yaml", environ={}), flow, shared=False,
                            customers=str(DEMO_CSV))
    assert service is not None, f"flow {flow.id} has no verify step"
    return service
