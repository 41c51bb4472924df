from django.conf import settings
from django.core.management.base import BaseCommand

from syncadmin.management.demo import demo_setup


class Command(BaseCommand):
    help = (
        "Prepare the one-machine demo (idempotent): default mappings, sandbox data, connections to the sandbox "
        "served on 127.0.0.1:PORT, and an admin login whose generated password is printed once."
    )

    def handle(self, *args, **options):
        for line in demo_setup(port=settings.PORT):
            self.stdout.write(line)
