"""Resolving sync errors: what each error class means (explanations), a coupled pair compared field by field as the
sync sees it (comparison), and the writes that resolve a conflict or retry errors (services)."""
