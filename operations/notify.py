"""Deliver one alert message to one channel: an e-mail through Django's mail settings, or a JSON post to a webhook.

The JSON body is one that both Slack and Microsoft Teams accept from an incoming webhook: `text` is what Slack's
incoming webhooks and Teams' (legacy) connector webhooks show; the MessageCard fields (`@type`, `@context`, `title`,
`summary`) are what a Teams Workflows webhook ("post to a channel when a webhook request is received") renders. The
`syncadmin` object carries the same facts for any other receiver. The body holds the alert's words only: never a
secret, and the channel's URL (which holds the webhook's key) is never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.mail import send_mail

from operations.models import AlertChannel, ChannelKind

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = httpx.Timeout(10.0)


@dataclass(frozen=True)
class AlertMessage:
    state: str  # "firing", "resolved" or "test"
    title: str  # one line, the e-mail's subject
    text: str  # a few lines for people
    facts: dict  # machine-readable: rule, kind, subject, times


class DeliveryFailed(Exception):
    """The channel could not be reached or refused the message; the text says why, without the URL."""


def deliver(channel: AlertChannel, message: AlertMessage) -> None:
    """Send `message` to `channel`, or raise DeliveryFailed."""
    if channel.kind == ChannelKind.EMAIL:
        _send_mail(channel, message)
    else:
        _post_webhook(channel, message)


def _send_mail(channel: AlertChannel, message: AlertMessage) -> None:
    try:
        send_mail(
            subject=message.title,
            message=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=channel.recipients,
        )
    except Exception as exc:  # smtplib and socket errors of many kinds
        raise DeliveryFailed(f"the mail server refused or could not be reached ({type(exc).__name__}: {exc})") from None


def webhook_body(message: AlertMessage) -> dict:
    return {
        "text": f"{message.title}\n{message.text}",
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "title": message.title,
        "summary": message.title,
        "themeColor": {"firing": "D13438", "resolved": "107C10"}.get(message.state, "0078D4"),
        "syncadmin": {"state": message.state, **message.facts},
    }


def _post_webhook(channel: AlertChannel, message: AlertMessage) -> None:
    try:
        # A plain client of its own: alerts never go through the connectors' clients, which carry bearer tokens.
        response = httpx.post(channel.webhook_url, json=webhook_body(message), timeout=WEBHOOK_TIMEOUT)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"the webhook could not be reached ({type(exc).__name__})") from None
    if response.status_code >= 300:
        raise DeliveryFailed(f"the webhook answered HTTP {response.status_code}")
