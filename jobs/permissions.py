"""Who may do what beyond Django's view/add/change/delete per model (README, "Permissions").

- Running a sync is its own permission (`jobs.run_sync`), apart from viewing and editing.
- The RQ dashboard (/admin/rq/) needs django-rq's own permission (`django_rq.admin`, superusers have it): it empties
  queues and deletes or requeues jobs underneath the sync jobs' bookkeeping, so it is for operators only.
"""

from functools import wraps

from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied

RUN_SYNC_PERMISSION = "jobs.run_sync"
RQ_DASHBOARD_PERMISSION = "django_rq.admin"


class RunSyncPermissionMixin:
    """For ModelAdmins: `has_run_sync_permission`, which admin actions declared with permissions=["run_sync"] use."""

    def has_run_sync_permission(self, request) -> bool:
        return request.user.has_perm(RUN_SYNC_PERMISSION)


def rq_dashboard_page(view):
    """A page of the RQ dashboard: the admin's login, then the dashboard permission (403 without it)."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.has_perm(RQ_DASHBOARD_PERMISSION):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return admin.site.admin_view(guarded)


def rq_dashboard_api(view):
    """A monitoring endpoint of the RQ dashboard (stats.json): it answers an API token or a user with the dashboard
    permission; a logged-in user without it is answered as an anonymous caller (django-rq would accept any staff)."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.has_perm(RQ_DASHBOARD_PERMISSION):
            request.user = AnonymousUser()
        return view(request, *args, **kwargs)

    return guarded
