"""The table mapping list's tools, as a browser lays them out: one row under the title, none over another."""

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]


def overlap(a, b):
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@pytest.mark.parametrize("width", [1400, 1000])
def test_the_mapping_list_tools_sit_in_line_under_the_title_without_overlapping_it_or_each_other(
    page, live_connections, width
):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/admin/mappings/tablemapping/")
    page.shot(f"mapping-list-tools-{width}")

    title = page.locator("#content h1").bounding_box()
    tools = page.locator("#content-main > ul.object-tools > li")
    names = [text.strip().lower() for text in tools.all_inner_texts()]
    assert names == [
        "full synchronization review",
        "synchronize all modified records",
        "export",
        "import",
        "use default synchronization settings",
        "add table mapping",
    ]
    # The visible pill of each tool: the link, or the button of the one tool that posts.
    boxes = [tools.nth(i).locator("a, button").first.bounding_box() for i in range(tools.count())]
    for box in boxes:
        assert box["y"] >= title["y"] + title["height"], "a tool overlaps the page title"
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not overlap(a, b), "two tools overlap"
    # In line: tools of one row share their top and their height (the posting button is no taller or higher).
    first_row = [box for box in boxes if abs(box["y"] - boxes[0]["y"]) < box["height"] / 2]
    assert len(first_row) >= 3
    assert {round(box["y"]) for box in first_row} == {round(boxes[0]["y"])}
    assert max(box["height"] for box in boxes) - min(box["height"] for box in boxes) < 1
    # And the list starts below them.
    toolbar = page.locator("#changelist").bounding_box()
    assert toolbar["y"] >= max(box["y"] + box["height"] for box in boxes)
