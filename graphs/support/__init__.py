"""The customer-support operations example: tools over a business database, four specialists."""

from graphs.support.db import SupportDB
from graphs.support.governance import POLICY_DIR, TENANTS_FILE, support_guard
from graphs.support.model import parse_ticket, support_model
from graphs.support.reviewer import scripted_review
from graphs.support.tools import REFUND_RED_ZONE, make_support_tools
from graphs.support.workflow import (
    SUPPORT_WORKFLOW,
    build_support_graph,
    format_ticket,
    support_builder,
)

__all__ = [
    "POLICY_DIR",
    "REFUND_RED_ZONE",
    "SUPPORT_WORKFLOW",
    "TENANTS_FILE",
    "SupportDB",
    "build_support_graph",
    "format_ticket",
    "make_support_tools",
    "parse_ticket",
    "scripted_review",
    "support_builder",
    "support_guard",
    "support_model",
]
