"""The table mapping page's field grid at 1,366 x 768 in Chromium: every column on the screen and every value whole.

Inputs of a fixed 6em showed about nine characters ("address1_" for address1_freighttermscode), and the grid was
wider than the page, so its right-hand columns (match priority, delete) were past the edge.
"""

import pytest

from mappings.models import TableMapping

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True, databases=["default", "sandbox"]),
]

WIDTH, HEIGHT = 1366, 768

# For each text input and select of the grid: its value, and whether the box shows it whole. An input scrolls its
# text when cut (scrollWidth > clientWidth); a select does not, so its chosen label is measured in its own font
# against the room inside it (its width less the padding and the arrow, about 20 px).
GRID = """() => {
  const group = document.querySelector('#field_mappings-group');
  const table = group.querySelector('table');
  const cut = [];
  for (const input of group.querySelectorAll('tbody tr.form-row:not(.empty-form) input[type=text]')) {
    if (input.offsetParent !== null && input.scrollWidth > input.clientWidth) {
      cut.push(input.name + '=' + input.value + ' (' + input.scrollWidth + ' in ' + input.clientWidth + ')');
    }
  }
  const ruler = document.createElement('span');
  ruler.style.cssText = 'position:absolute;visibility:hidden;white-space:pre';
  document.body.appendChild(ruler);
  for (const select of group.querySelectorAll('tbody tr.form-row:not(.empty-form) select')) {
    if (select.offsetParent === null || select.selectedIndex < 0) continue;
    const style = getComputedStyle(select);
    ruler.style.font = style.font;
    ruler.textContent = select.options[select.selectedIndex].text;
    const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 20;
    if (ruler.getBoundingClientRect().width > room) {
      cut.push(select.name + '=' + ruler.textContent + ' (' + Math.round(ruler.getBoundingClientRect().width) +
        ' in ' + Math.round(room) + ')');
    }
  }
  ruler.remove();
  const values = [...group.querySelectorAll('tbody tr.has_original input[type=text]')].map(i => i.value);
  return {
    cut: cut,
    values: values,
    tableRight: table.getBoundingClientRect().right,
    groupScroll: group.scrollWidth,
    groupWidth: group.clientWidth,
    pageScroll: document.documentElement.scrollWidth,
    window: document.documentElement.clientWidth,
    lastHeader: group.querySelector('thead th:last-child').getBoundingClientRect().right,
  };
}"""


def test_the_field_grid_fits_1366_pixels_with_every_field_name_whole(mapping_page, live_sandbox_connections):
    page = mapping_page
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    mappings = list(TableMapping.objects.order_by("name"))
    assert {m.name for m in mappings} >= {"CUSTOMER", "VENDOR", "CONTACT", "SALESPEOPLE", "CURRENCY"}
    for mapping in mappings:
        page.goto(f"/admin/mappings/tablemapping/{mapping.pk}/change/")
        grid = page.evaluate(GRID)
        assert not grid["cut"], f"{mapping.name}: cut values {grid['cut']}"
        # The grid and its last column (delete) end inside the window; nothing scrolls sideways.
        assert grid["tableRight"] <= grid["window"], (mapping.name, grid)
        assert grid["lastHeader"] <= grid["window"], (mapping.name, grid)
        assert grid["groupScroll"] <= grid["groupWidth"], (mapping.name, grid)
        assert grid["pageScroll"] <= grid["window"], (mapping.name, grid)
        # The inputs measured are the mapping's own rows (the check would pass vacuously on an empty grid).
        assert {f.bc_field for f in mapping.field_mappings.all()} <= set(grid["values"])

    # The longest default names, whole: CUSTOMER's freight terms and state columns.
    customer = TableMapping.objects.filter(name="CUSTOMER").order_by("pk").first()
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    for name in ("address1_freighttermscode", "address1_stateorprovince", "transactioncurrencyid"):
        box = page.locator(f"#field_mappings-group input[value={name}]")
        assert box.evaluate("i => i.scrollWidth <= i.clientWidth && i.title === i.value"), name
    # The lookup select names the mapping whole, by name alone (the company's own mappings only).
    lookup = page.locator("#field_mappings-group select[name$=lookup_mapping]").first
    options = lookup.locator("option").all_inner_texts()
    assert "SALESPEOPLE" in options and "CURRENCY" in options
    assert not [text for text in options if "(" in text], options
