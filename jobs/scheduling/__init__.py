"""Scheduled and event-driven synchronization: schedules per mapping, webhook subscriptions, change notifications."""
