"""The one report writer shared by every command."""

from umae_eval.report.writer import HtmlReport, write_outputs

__all__ = ["HtmlReport", "write_outputs"]
