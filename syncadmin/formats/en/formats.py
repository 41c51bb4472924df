"""Dates and times as the admin shows them: ISO order and the time zone, the way the job pages write them.

Django's English formats ("Dec. 5, 2026, 5:21 a.m.") name no zone, so a list said one time and a job page
("2026-12-05 05:21:00 UTC") seemed to say another. Settings' DATETIME_FORMAT would not do: a locale's own formats
win over it, this module wins over the locale's (FORMAT_MODULE_PATH).
"""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
