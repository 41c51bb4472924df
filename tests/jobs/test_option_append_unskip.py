"""An option value the run appends to a field mapping is not a person's change of the mapping: it must not un-skip
every skipped record. Found by the post-merge review (h17meta's options x h16merge's skip policy)."""

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from coupling.models import Coupling
from jobs.engine import options
from jobs.engine.sides import sides_for
from jobs.engine.unskip import unskip_fixed
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db


class NoReads:
    def read_by_ids(self, *args, **kwargs):
        return {}


def test_an_option_the_run_appended_does_not_unskip_every_skipped_record():
    mapping = TableMapping.objects.get(name="CUSTOMER")
    field_mapping = mapping.field_mappings.first()
    an_hour_ago = timezone.now() - timedelta(hours=1)
    TableMapping.objects.filter(pk=mapping.pk).update(updated_at=an_hour_ago - timedelta(hours=1))
    coupling = Coupling(table_mapping=mapping, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    coupling.fail("to_dataverse", 1, "Validation failed", may_have_landed=False)
    coupling.skip("validation", an_hour_ago, "")
    coupling.save()
    # What OptionAppender does when a page holds a value the value map lacks (jobs/engine/options.py).
    rule = SimpleNamespace(value_map={}, field_mapping_id=field_mapping.pk)
    options._remember(rule, bc_value="NEW", dataverse_value=100000123, from_dataverse=False)

    _source, target = sides_for(mapping, "to_dataverse")
    unskipped = unskip_fixed(mapping, "to_dataverse", target, NoReads())
    assert unskipped == 0, "a value-map entry added by the engine counts as 'the mapping was changed'"
