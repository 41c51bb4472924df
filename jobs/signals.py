"""Signals of the sync services, for the parts of jobs built on top of them.

The services cannot import scheduling (scheduling starts runs through the services), so they announce what happened
and scheduling listens: imports keep pointing one way.
"""

from django.dispatch import Signal

# Sent with `jobs` (a list of SyncJob) once a batch of runs has ended, whatever each run's outcome.
sync_jobs_finished = Signal()
