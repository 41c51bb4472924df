"""The admin pages of jobs, one module per concern; none registers a model (`syncadmin/admin.py` does, once) and
none imports another's ModelAdmin or mixin.

- `table_mappings`: the sync columns, actions, full-sync review and sync-all of the table mapping list.
- `mapping_coupling`: couple by clicking and match-based coupling, pages of a table mapping; the ambiguous matches'
  link to them.
- `couplings`: the sync actions of the coupling list and the compare-and-resolve page of a coupled pair.
- `errors`: the sync error list and page.
- `sync_jobs`: the sync job list and page with its live progress.
- `schedules`: schedules and webhook subscriptions.
- `links` and `coupled_records`: what several of them share (links to jobs and lists; clients for both systems,
  queuing a records sync, restoring or deleting after a deletion).
"""
