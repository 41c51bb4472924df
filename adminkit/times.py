"""Dates and times in the one format of every admin page, message and error: "2026-12-05 05:21 UTC".

The format is the admin's DATETIME_FORMAT (syncadmin/formats/en/formats.py), in the current time zone, named. Python
code that builds text (list columns, schedule states, error messages written by the engine) calls `admin_time`;
templates use `|date:"DATETIME_FORMAT"`. Each place formatting a time its own way ("05:21", "2026-12-05 05:21:07 UTC",
"3 hours ago") made a page seem to say another time than the next.
"""

from __future__ import annotations

import datetime

from django.utils import timezone
from django.utils.formats import date_format


def admin_time(value: datetime.datetime | None) -> str:
    """The date, time and zone of `value` as the admin writes them; "" for None."""
    if value is None:
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return date_format(timezone.localtime(value), "DATETIME_FORMAT")
