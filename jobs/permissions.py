"""Running a sync is its own permission, apart from viewing and editing (jobs.run_sync)."""

RUN_SYNC_PERMISSION = "jobs.run_sync"


class RunSyncPermissionMixin:
    """For ModelAdmins: `has_run_sync_permission`, which admin actions declared with permissions=["run_sync"] use."""

    def has_run_sync_permission(self, request) -> bool:
        return request.user.has_perm(RUN_SYNC_PERMISSION)
