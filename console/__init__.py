"""Console: the human surface of Bastion (the `bastion` command line)."""

from console.cli import main
from console.runner import Reviewer, RunReport, run_to_end

__all__ = ["Reviewer", "RunReport", "main", "run_to_end"]
