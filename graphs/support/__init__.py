"""The customer-support operations example: tools over a business database, four specialists."""

from graphs.support.db import SupportDB
from graphs.support.model import parse_ticket, support_model
from graphs.support.reviewer import scripted_review
from graphs.support.tools import REFUND_AUTO_LIMIT, make_support_tools
from graphs.support.workflow import SUPPORT_WORKFLOW, build_support_graph, format_ticket

__all__ = [
    "REFUND_AUTO_LIMIT",
    "SUPPORT_WORKFLOW",
    "SupportDB",
    "build_support_graph",
    "format_ticket",
    "make_support_tools",
    "parse_ticket",
    "scripted_review",
    "support_model",
]
