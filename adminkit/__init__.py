"""Generic admin helpers that know no model of syncadmin: they import only Django and django-filter.

An app (for its template) so that `adminkit/filterset_filter.html` is found; it has no models.
"""
