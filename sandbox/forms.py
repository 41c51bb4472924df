"""The admin page's form for out-of-band edits ("as another user")."""

import json

from django import forms

from sandbox import schema

TABLE_CHOICES = [(f"{t.service}:{t.entity_set}", f"{t.service} / {t.entity_set}") for t in schema.TABLES.values()]


class OutOfBandEditForm(forms.Form):
    table = forms.ChoiceField(choices=TABLE_CHOICES)
    record_id = forms.UUIDField(label="Record id")
    action = forms.ChoiceField(choices=[("edit", "Change the row"), ("delete", "Delete the row")], initial="edit")
    values = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        required=False,
        help_text='Property values as the API names them, as JSON, e.g. {"displayName": "Changed"}.',
    )

    def clean_values(self):
        text = self.cleaned_data["values"].strip()
        if not text:
            return {}
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(values, dict):
            raise forms.ValidationError("Give a JSON object of property names and values.")
        return values

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") == "edit" and not cleaned.get("values"):
            self.add_error("values", "Say which values to change.")
        return cleaned
