from django.apps import AppConfig


class SyncadminConfig(AppConfig):
    name = "syncadmin"
    verbose_name = "syncadmin"

    def ready(self):
        from django.db.backends.signals import connection_created

        from syncadmin.db import widen_sqlite_batches

        connection_created.connect(widen_sqlite_batches)
