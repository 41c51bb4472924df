"""Admin form for a Connection: the secret goes in through a password field and never comes back out."""

from django import forms

from connectors.models import Connection
from connectors.secrets import validate_secret_reference


def _url_field(name: str, *, required: bool) -> forms.URLField:
    model_field = Connection._meta.get_field(name)
    return forms.URLField(
        label=model_field.verbose_name.capitalize(),
        max_length=model_field.max_length,
        required=required,
        assume_scheme="https",  # both services are HTTPS only
        help_text=model_field.help_text,
    )


class ConnectionForm(forms.ModelForm):
    environment_url = _url_field("environment_url", required=True)
    token_url = _url_field("token_url", required=False)
    client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        # render_value=False: the page never contains the secret, not even after a failed submit.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave blank to keep the current secret.",
    )

    class Meta:
        model = Connection
        fields = [
            "kind",
            "name",
            "enabled",
            "environment_url",
            "tenant",
            "bc_environment",
            "bc_company_id",
            "client_id",
            "client_secret",
            "client_secret_reference",
            "token_url",
            "scope",
            "page_size",
            "batch_size",
            "timeout_seconds",
            "max_concurrency",
        ]

    def clean_client_secret_reference(self):
        reference = self.cleaned_data.get("client_secret_reference", "").strip()
        if reference:
            try:
                validate_secret_reference(reference)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return reference

    def clean(self):
        cleaned = super().clean()
        has_stored = bool(self.instance.pk and self.instance.client_secret_encrypted)
        if not cleaned.get("client_secret") and not cleaned.get("client_secret_reference") and not has_stored:
            self.add_error("client_secret", "Enter the client secret, or a reference to where it is kept.")
        if cleaned.get("kind") == "business_central" and not cleaned.get("bc_environment"):
            self.add_error("bc_environment", "Business Central connections need the environment name.")
        return cleaned
