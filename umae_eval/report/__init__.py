"""The one report writer shared by every command."""

from umae_eval.report.outputs import write_outputs
from umae_eval.report.writer import HtmlReport

__all__ = ["HtmlReport", "write_outputs"]
