"""Spreadsheet environment: workbooks with live formulas, tools to edit them, tasks, checker and faults."""
