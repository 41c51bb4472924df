"""Routes of the emulated services. Filled in by the sandbox package (see sandbox/README.md)."""

urlpatterns = []
