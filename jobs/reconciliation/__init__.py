"""Reconciliation: compare a mapping's two tables with its couplings, and heal what the comparison finds.

`compare.py` counts (pages of ids, `$select` of id and modified-on only, never one request per record); `services.py`
is the one domain function per entry point (admin action, `manage.py reconcile`, RQ task, the daily schedule) and
the bulk actions on the findings.
"""
