"""Report rendering: the report notebooks run into HTML files, mailed, and shown readably.

The numbers the notebooks show are ``tasks.analytics``' (data prep, one module per report); this
package is the rest of a report's life:

- ``notebooks``: which reports exist, their parameters, the check of the ``reports`` settings.
- ``kernel``: the kernel that runs this interpreter, and the lake settings handed to it
  (``open_lake`` is what a notebook calls for its lake).
- ``render``: papermill → nbconvert → ``<data_dir>/reports/<name>-<date>.html``; pruning.
- ``display``: readable tables and key numbers inside a notebook.
- ``mail``: the rendered reports by e-mail through Apprise.
"""

from tasks.analytics import ReportError
from tasks.reports.display import (
    KEY_NUMBERS_MIME,
    TABLE_MAX_ROWS,
    format_cell,
    notebook_key_numbers,
    show_key_numbers,
    show_table,
    table_html,
)
from tasks.reports.kernel import LAKE_ENV, ensure_kernel, open_lake
from tasks.reports.mail import mail_reports
from tasks.reports.notebooks import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    RESERVED_PARAMETERS,
    check_parameters,
    notebook_parameters,
    notebook_path,
    reports_dir,
    reports_settings_problems,
)
from tasks.reports.render import ReportResult, prune_reports, render_reports, run_report, to_html

__all__ = [
    "KEY_NUMBERS_MIME",
    "LAKE_ENV",
    "NOTEBOOKS",
    "NOTEBOOK_DIR",
    "RESERVED_PARAMETERS",
    "TABLE_MAX_ROWS",
    "ReportError",
    "ReportResult",
    "check_parameters",
    "ensure_kernel",
    "format_cell",
    "mail_reports",
    "notebook_key_numbers",
    "notebook_parameters",
    "notebook_path",
    "open_lake",
    "prune_reports",
    "render_reports",
    "reports_dir",
    "reports_settings_problems",
    "run_report",
    "show_key_numbers",
    "show_table",
    "table_html",
    "to_html",
]
