"""The structural before/after diff: nested objects, lists, type changes, unicode, rendering."""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from auditlog.diff import (
    Change,
    Line,
    change_kind,
    changes_frame,
    describe,
    diff,
    highlighted,
    lines_html,
    summary,
)

POLICY: dict[str, Any] = {
    "name": "mfa-required",
    "enabled": True,
    "conditions": {
        "users": {"include": ["all", "admins"], "exclude": ["break-glass"]},
        "locations": ["EU", "US"],
    },
    "grant": {"mfa": True},
    "version": 3,
}


def test_identical_states_have_no_changes() -> None:
    assert diff(POLICY, json.loads(json.dumps(POLICY))) == []


def test_changed_nested_value_is_named_by_its_dotted_path() -> None:
    after = {**POLICY, "grant": {"mfa": False}, "version": 4}
    assert diff(POLICY, after) == [
        Change("grant.mfa", "changed", True, False),
        Change("version", "changed", 3, 4),
    ]


def test_added_and_removed_keys_at_any_depth() -> None:
    after = json.loads(json.dumps(POLICY))
    del after["conditions"]["users"]["exclude"]
    after["conditions"]["users"]["guests"] = {"allowed": False}
    after["owner"] = "secops"
    assert diff(POLICY, after) == [
        Change("conditions.users.exclude", "removed", ["break-glass"], None),
        Change("conditions.users.guests", "added", None, {"allowed": False}),
        Change("owner", "added", None, "secops"),
    ]


def test_appended_list_element_is_one_addition_at_its_index() -> None:
    after = json.loads(json.dumps(POLICY))
    after["conditions"]["locations"].append("LATAM")
    assert diff(POLICY, after) == [Change("conditions.locations[2]", "added", None, "LATAM")]


def test_inserting_at_the_front_of_a_list_does_not_shift_every_element() -> None:
    before = {"include": ["a", "b", "c"]}
    after = {"include": ["z", "a", "b", "c"]}
    assert diff(before, after) == [Change("include[0]", "added", None, "z")]


def test_removed_list_element_is_named_by_its_before_index() -> None:
    before = {"include": ["all", "admins", "guests"]}
    after = {"include": ["all", "guests"]}
    assert diff(before, after) == [Change("include[1]", "removed", "admins", None)]


def test_replaced_list_element_is_a_change() -> None:
    assert diff({"r": ["low", "high"]}, {"r": ["low", "medium"]}) == [
        Change("r[1]", "changed", "high", "medium")
    ]


def test_field_changed_inside_an_object_in_a_list_is_one_change() -> None:
    before = {"rules": [{"id": 1, "action": "allow"}, {"id": 2, "action": "deny"}]}
    after = {"rules": [{"id": 1, "action": "allow"}, {"id": 2, "action": "audit"}]}
    assert diff(before, after) == [Change("rules[1].action", "changed", "deny", "audit")]


def test_list_of_lists() -> None:
    assert diff({"m": [[1, 2], [3]]}, {"m": [[1, 2], [3, 4]]}) == [
        Change("m[1][1]", "added", None, 4)
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [(1, "1"), ("true", True), (True, 1), (None, {}), ({"a": 1}, [1]), ([], {}), (0, None)],
)
def test_json_type_change_is_type_changed(old: Any, new: Any) -> None:
    assert diff({"v": old}, {"v": new}) == [Change("v", "type_changed", old, new)]


def test_numbers_compare_by_value() -> None:
    assert diff({"n": 1}, {"n": 1.0}) == []
    assert diff({"n": 1}, {"n": 1.5}) == [Change("n", "changed", 1, 1.5)]


def test_unicode_keys_and_values() -> None:
    before = {"größe": "klein", "名前": "ポリシー", "emoji": "🙂"}
    after = {"größe": "groß", "名前": "ポリシー", "emoji": "🙃", "zoë": "Zoë"}
    assert diff(before, after) == [
        Change("größe", "changed", "klein", "groß"),
        Change("emoji", "changed", "🙂", "🙃"),
        Change("zoë", "added", None, "Zoë"),
    ]


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a.b", 'x["a.b"]'),
        ("with space", 'x["with space"]'),
        ("", 'x[""]'),
        ('q"uote', 'x["q\\"uote"]'),
        ("[0]", 'x["[0]"]'),
        ("1st", 'x["1st"]'),
        ("risk-level", "x.risk-level"),
    ],
)
def test_keys_that_are_not_plain_names_are_quoted_in_paths(key: str, path: str) -> None:
    assert diff({"x": {key: 1}}, {"x": {key: 2}})[0].path == path


def test_creation_and_deletion_are_whole_state_changes() -> None:
    assert diff(None, POLICY) == [Change("", "added", None, POLICY)]
    assert diff(POLICY, None) == [Change("", "removed", POLICY, None)]
    assert diff(None, None) == []
    assert [change_kind(None, POLICY), change_kind(POLICY, None)] == ["created", "deleted"]
    assert [change_kind(POLICY, POLICY), change_kind(None, None)] == ["updated", "none"]


def test_summary_counts_kinds_and_names_the_first_paths() -> None:
    after = {**POLICY, "enabled": False, "version": 4, "grant": {"mfa": True, "device": True}}
    after["conditions"] = {**POLICY["conditions"], "locations": ["EU", "US", "LATAM"]}
    assert summary(diff(POLICY, after)) == (
        "2 changed, 2 added: enabled, conditions.locations[2], grant.device +1 more"
    )


@pytest.mark.parametrize(
    ("before", "after", "text"),
    [
        (None, POLICY, "created"),
        (POLICY, None, "deleted"),
        (POLICY, POLICY, "no changes"),
        (None, None, "no state recorded"),
        ({"a": 1}, {"a": "1"}, "1 type changed: a"),
    ],
)
def test_describe_names_creation_deletion_and_absence(before: Any, after: Any, text: str) -> None:
    assert describe(before, after) == text


def test_changes_frame_shows_values_as_json_and_absent_values_as_null() -> None:
    changes = [
        Change("a", "added", None, {"x": "Zoë"}),
        Change("b", "removed", [1], None),
        Change("c", "type_changed", None, 1),
    ]
    expected = pl.DataFrame(
        {
            "path": ["a", "b", "c"],
            "kind": ["added", "removed", "type_changed"],
            "old": [None, "[1]", "null"],
            "new": ['{"x": "Zoë"}', None, "1"],
        }
    )
    assert_frame_equal(changes_frame(changes), expected)


def test_changes_frame_of_no_changes_is_empty_with_columns() -> None:
    assert changes_frame([]).columns == ["path", "kind", "old", "new"]


def test_highlighted_marks_changed_lines_on_each_side() -> None:
    before = {"enabled": True, "locations": ["EU"], "old": {"a": 1}}
    after = {"enabled": False, "locations": ["EU", "US"], "new": 1}
    left, right = highlighted(before, after)

    def marked(lines: list[Any]) -> list[tuple[str, str | None]]:
        return [(ln.text.strip(), ln.kind) for ln in lines if ln.kind]

    assert marked(left) == [
        ('"enabled": true,', "changed"),
        ('"old": {', "removed"),
        ('"a": 1', "removed"),
        ("}", "removed"),
    ]
    assert marked(right) == [
        ('"enabled": false,', "changed"),
        ('"US"', "added"),
        ('"new": 1', "added"),
    ]
    assert json.loads("\n".join(ln.text for ln in left)) == before
    assert json.loads("\n".join(ln.text for ln in right)) == after


def test_highlighted_uses_before_indexes_on_the_before_side() -> None:
    before = {"l": ["a", "b", {"k": 1}]}
    after = {"l": ["b", {"k": 2}]}
    assert diff(before, after) == [
        Change("l[0]", "removed", "a", None),
        Change("l[1].k", "changed", 1, 2),
    ]
    left, right = highlighted(before, after)
    assert {ln.path for ln in left if ln.kind} == {"l[0]", "l[2].k"}
    assert {ln.path for ln in right if ln.kind} == {"l[1].k"}


def test_highlighted_creation_has_an_empty_before_and_all_after_added() -> None:
    left, right = highlighted(None, {"a": [1]})
    assert left == []
    assert {ln.kind for ln in right} == {"added"}


def test_lines_html_escapes_text_and_colours_changes() -> None:
    html = lines_html([Line('"x": "<script>alert(1)</script>"', "added"), Line("}")])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'class="diff-added"' in html
    assert html.startswith("<pre")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
states = st.dictionaries(st.text(max_size=4), json_values, max_size=5)


@given(states, states)
def test_diff_is_empty_exactly_when_states_are_equal(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    same = json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True)
    assert (diff(before, after) == []) == same


@given(states, states)
def test_every_changed_line_is_marked_and_rendering_is_json(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    left, right = highlighted(before, after)
    assert json.loads("\n".join(ln.text for ln in left)) == before
    assert json.loads("\n".join(ln.text for ln in right)) == after
    changes = diff(before, after)
    assert any(ln.kind for ln in left + right) == bool(changes)


_TOKEN = re.compile(r'\.?([^\W\d][\w-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _resolve(state: Any, path: str) -> Any:
    """Follow a diff path (test oracle for the path syntax)."""
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        assert m, f"unparseable path {path!r} at {pos}"
        plain, index, quoted = m.groups()
        state = state[int(index)] if index is not None else state[plain or json.loads(quoted)]
        pos = m.end()
    return state


def test_a_key_ending_in_a_newline_is_quoted_in_the_path() -> None:
    (change,) = diff({}, {"A\n": None})
    assert change.path == '["A\\n"]'


@given(states, states)
def test_every_path_names_the_value_it_reports(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    for ch in diff(before, after):
        if ch.kind == "removed":
            assert _resolve(before, ch.path) == ch.old
        else:
            assert _resolve(after, ch.path) == ch.new
