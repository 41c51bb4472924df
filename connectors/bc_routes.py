"""Business Central API routes: the standard API v2.0 and the routes of custom API pages extensions publish.

A mapping names a custom API page's entity set with its route, `{publisher}/{group}/{version}/{entitySet}`
(`contoso/projects/v1.0/projects`), and the client sends its requests to `.../api/{publisher}/{group}/{version}/...`
(Microsoft Learn, "Developing a custom API").
"""

from __future__ import annotations

import re

from connectors.types import ConnectorError, ErrorKind

STANDARD_ROUTE = "v2.0"
# `{publisher}/{group}/{version}` as Business Central requires it for API pages: version `beta` or `vX.Y`.
CUSTOM_ROUTE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+/(?:beta|v\d+\.\d+)$")


def split_route(entity_set: str) -> tuple[str, str]:
    """`customers` -> ("v2.0", "customers"); `contoso/projects/v1.0/projects` -> ("contoso/projects/v1.0",
    "projects")."""
    route, _, name = entity_set.rpartition("/")
    if not route:
        return STANDARD_ROUTE, name
    if not CUSTOM_ROUTE.match(route):
        raise ConnectorError(
            ErrorKind.VALIDATION,
            f"{entity_set!r} is not an entity set: name a standard one (customers) or a custom API page's as "
            "publisher/group/version/entitySet (contoso/projects/v1.0/projects).",
        )
    return route, name
