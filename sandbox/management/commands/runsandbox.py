"""Serve the emulated Business Central and Dataverse alone (no admin), e.g. for a demo on another port."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.core.servers.basehttp import WSGIServer, run
from django.core.wsgi import get_wsgi_application


class Command(BaseCommand):
    help = "Serve only the sandbox (/sandbox/bc, /sandbox/dataverse, /sandbox/oauth) on 127.0.0.1:PORT."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, **options):
        settings.ROOT_URLCONF = "sandbox.standalone_urls"
        host, port = options["host"], options["port"]
        self.stdout.write(f"Sandbox on http://{host}:{port}/sandbox/ (bc, dataverse, oauth). Ctrl-C to stop.")
        run(host, port, get_wsgi_application(), threading=True, server_cls=WSGIServer)
