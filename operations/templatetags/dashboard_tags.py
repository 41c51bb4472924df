"""Short durations for the dashboard: "45 s", "3 min", "2 h 05 min", "3 d 4 h"."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def short_duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = max(0, round(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago, in the dashboard's short durations ("3 min ago"), beside the time itself: the time is written
    as on every page ("2026-12-05 05:21 UTC"); Django's timesince said "3 hours, 2 minutes" in a form of its own."""
    if value is None:
        return "-"
    return f"{short_duration(timezone.now() - value)} ago"
