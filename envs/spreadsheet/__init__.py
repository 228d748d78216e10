"""Spreadsheet environment (``recoverygym/Spreadsheet-v0``): edit a workbook with live formulas as a user asks.

State: a workbook (sheets of values and formulas, evaluated by our own engine, which agrees with LibreOffice; see
docs/spreadsheet-formulas.md) plus the clean truth of its data table, which a coworker's concurrent edit changes.
Any episode's workbook can be saved with ``envs.spreadsheet.xlsx.to_xlsx``; a user's own pair of ``.xlsx`` files
(start, goal) becomes a task with ``task_from_xlsx``, played through the ordinary API with
``gymnasium.make("recoverygym/Spreadsheet-v0", tasks=[task_from_xlsx("start.xlsx", "goal.xlsx", "request")])``.

Tools (14). Read: ``list_sheets``, ``read_range`` (a compact table with row numbers and column letters; formulas as
``=formula -> value``), ``find``. Write: ``write_values``, ``set_formula``, ``fill`` (down or right, relative
references move), ``clear_range``, ``insert_rows``, ``delete_rows``, ``insert_columns``, ``delete_columns``,
``sort_range`` (several keys, ascending or descending), ``add_sheet``. Finish: ``finish``. Inserting and deleting are
not idempotent (a blind retry after a write timeout inserts or deletes twice); the other writes are.

Tasks (``templates.py``): a data table of 8-16 rows from one of four domains (sales, inventory, timesheet,
expenses), with shuffled columns, and one or more requests. Train (16): ``computed_column``, ``conditional_flag``,
``lookup_column`` (from a second sheet), ``totals_row``, ``fix_ref_error`` (#REF! after a deleted column),
``fix_wrong_range`` (a SUM that misses rows), ``clean_text`` (spaces and case, in place), ``clean_numbers`` (numbers
stored as text), ``dedupe``, ``sort_multi`` (two keys), ``summary_table`` (COUNTIF/SUMIF/AVERAGEIF on a new sheet),
``date_parts`` (dates stored as text), and the combinations ``clean_numbers+totals_row``, ``dedupe+sort_multi``,
``computed_column+totals_row``, ``clean_text+lookup_column``. Held out (4): ``fix_absolute_ref`` (a relative
reference that must be absolute), ``group_share`` (a per-group SUMIF in a ratio), ``clean_categories+summary_table``
and ``dedupe+computed_column+totals_row``.

Checker (``checker.py``): target cells compared by computed value (any equivalent formula passes); where the
request says formulas, the targets must be formulas that still give the right values after the data changes (tested
on a copy); cells outside the request unchanged; no stray cells. Score: fraction of requests met, 0 if anything was
damaged or left behind.

Faults: the core's transient errors, rate limits, write timeouts, stale reads; a coworker's concurrent edit; and
seeded-error starts where an earlier edit went one column right or one row down, or sorted by the wrong column
(``faults.py``). The reference policy reads the table first (where a stale read can hide a seeded mistake, and
after which a coworker's edit can conflict with its first write), then follows the plan (``plan.py``): a diff from
the current state, so it repairs all of these and, re-planned after a conflict, redoes nothing already done.
"""

from .templates import task_from_xlsx

__all__ = ["task_from_xlsx"]
