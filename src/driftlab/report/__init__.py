"""Reports: a self-contained ``report.html`` per experiment and ``compare.html`` across runs."""

from driftlab.report.html import build_report, compare_rows, write_compare, write_report

__all__ = ["build_report", "compare_rows", "write_compare", "write_report"]
