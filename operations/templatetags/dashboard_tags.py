"""Short durations for the dashboard: "45 s", "3 min", "2 h 05 min", "3 d 4 h"."""

from datetime import timedelta

from django import template

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
