"""The label stage core: each LF kind, the label models, overrides and the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aigc.config import ConfigError, LabelParams, TopicRules
from aigc.data.overrides import read_overrides
from aigc.data.records import SchemaError, text_id
from aigc.text.label import (
    LabelingFunctionRegistry,
    build_labeling_functions,
    label_records,
    labeling_frame,
    vote_matrix,
)

NO_OVERRIDES = pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=str)})


def clean_frame(texts: list[str], modules: list[str | None] | None = None) -> pd.DataFrame:
    modules = modules or [None] * len(texts)
    return pd.DataFrame(
        {
            "id": [text_id(f"{index}:{text}") for index, text in enumerate(texts)],
            "text": texts,
            "source": "unit",
            "source_type": "folder",
            "uri": [f"unit://{index}" for index in range(len(texts))],
            "collected_at": "2026-01-01T00:00:00Z",
            "meta": [json.dumps({"module": m} if m else {"path": "x.txt"}) for m in modules],
            "flags": "",
        }
    )


def votes_of(frame: pd.DataFrame, params: LabelParams) -> pd.DataFrame:
    functions, _ = build_labeling_functions(params, LabelingFunctionRegistry())
    return vote_matrix(labeling_frame(frame), functions, list(params.topics))


def label(frame: pd.DataFrame, params: LabelParams, overrides: pd.DataFrame = NO_OVERRIDES):
    return label_records(frame, params, overrides, registry=LabelingFunctionRegistry())


def test_keyword_function_counts_whole_case_insensitive_words_and_phrases() -> None:
    params = LabelParams(
        topics={"net": TopicRules(keywords=("socket", "event loop"), min_keyword_hits=2)}
    )
    frame = clean_frame(
        [
            "A Socket wraps a SOCKET descriptor.",  # two hits, any case
            "sockets and socketpair are other words",  # no whole-word hit
            "just one socket here",  # below min_keyword_hits
            "the event\n   loop reads the socket",  # a phrase across a line break
        ]
    )
    assert votes_of(frame, params)["keyword:net"].tolist() == [0, -1, -1, 0]


def test_regex_function_votes_when_any_pattern_matches() -> None:
    params = LabelParams(
        topics={
            "other_topic": TopicRules(modules=("nothing",)),
            "web": TopicRules(patterns=(r"\bTCP\b", r"(?i)https?://", r"(?<!un)safe\b")),
        }
    )
    frame = clean_frame(
        ["speaks TCP", "see HTTP://example.org", "tcp in lower case", "thread-safe", "unsafe"]
    )
    # Codes are positions in the topics: "web" is 1. The lookbehind runs on Python's re.
    assert votes_of(frame, params)["regex:web"].tolist() == [1, 1, -1, 1, -1]


def test_module_function_matches_the_module_and_its_submodules_only() -> None:
    params = LabelParams(topics={"mail": TopicRules(modules=("email", "mailbox"))})
    frame = clean_frame(["a"] * 5, modules=["email", "email.parser", "emailx", None, "mailbox"])
    assert votes_of(frame, params)["module:mail"].tolist() == [0, 0, -1, -1, 0]


def test_invalid_pattern_is_a_config_error_naming_topic_and_pattern() -> None:
    params = LabelParams(topics={"web": TopicRules(patterns=("fine", "broken("))})
    with pytest.raises(ConfigError, match=r"label\.topics\.web\.patterns\[1\] 'broken\('"):
        build_labeling_functions(params, LabelingFunctionRegistry())


def test_registered_python_function_votes_and_one_for_an_unknown_topic_is_skipped() -> None:
    registry = LabelingFunctionRegistry()

    @registry.labeling_function("concurrency")
    def mentions_locks(frame: pd.DataFrame) -> pd.Series:
        return frame["text"].str.contains(r"\bR?Lock\b")

    @registry.labeling_function("astronomy")
    def mentions_stars(frame: pd.DataFrame) -> pd.Series:
        return frame["text"].str.contains("star")

    params = LabelParams(topics={"concurrency": TopicRules(keywords=("thread",))})
    frame = clean_frame(["take the RLock first", "a star is born"])
    result = label_records(frame, params, NO_OVERRIDES, registry=registry)
    assert result.frame["label"].tolist() == ["concurrency", "other"]
    assert result.frame["labeling_functions"].tolist() == ["python:mentions_locks", ""]
    assert result.report["skipped_functions"] == ["python:mentions_stars"]


def test_registry_refuses_a_second_function_under_the_same_name() -> None:
    registry = LabelingFunctionRegistry()

    @registry.labeling_function("a", name="same")
    def first(frame: pd.DataFrame) -> pd.Series:
        return frame["text"] == ""

    def second(frame: pd.DataFrame) -> pd.Series:
        return frame["text"] != ""

    with pytest.raises(ValueError, match="python:same.*already registered.*first"):
        registry.labeling_function("b", name="same")(second)


def test_python_function_with_the_wrong_shape_is_named_in_the_error() -> None:
    registry = LabelingFunctionRegistry()

    @registry.labeling_function("t")
    def too_short(frame: pd.DataFrame) -> pd.Series:
        return frame["text"].head(1).str.len() > 0

    params = LabelParams(topics={"t": TopicRules(keywords=("x",))})
    with pytest.raises(ValueError, match="python:too_short returned .* for 3 records"):
        label_records(clean_frame(["a", "b", "c"]), params, NO_OVERRIDES, registry=registry)


def conflict_corpus() -> tuple[pd.DataFrame, LabelParams]:
    """keyword:alpha agrees with module:alpha, keyword:beta contradicts it; then they clash."""
    texts = ["an apple"] * 20 + ["a banana"] * 20 + ["apple or banana"] * 10
    modules = ["orchard"] * 40 + [None] * 10
    topics = {  # beta first: a plain vote's tie goes to beta
        "beta": TopicRules(keywords=("banana",), min_keyword_hits=1),
        "alpha": TopicRules(keywords=("apple",), min_keyword_hits=1, modules=("orchard",)),
    }
    return clean_frame(texts, modules), LabelParams(topics=topics)


def test_weighted_model_sides_with_the_more_accurate_function() -> None:
    frame, params = conflict_corpus()
    weighted = label(frame, params)
    majority = label(frame, params.model_copy(update={"label_model": "majority"}))

    clashes = slice(40, 50)
    assert set(majority.frame["label"].iloc[clashes]) == {"beta"}
    assert set(majority.frame["label_confidence"].iloc[clashes]) == {0.5}
    assert set(weighted.frame["label"].iloc[clashes]) == {"alpha"}
    assert set(weighted.frame["labeling_functions"].iloc[clashes]) == {"keyword:alpha"}
    accuracy = {
        name: stats["estimated_accuracy"]
        for name, stats in weighted.report["labeling_functions"].items()
    }
    assert accuracy["keyword:alpha"] > 0.8 > 0.2 > accuracy["keyword:beta"]
    assert weighted.frame["label_confidence"].between(0, 1).all()


def test_uncovered_records_get_the_fallback_with_zero_confidence() -> None:
    params = LabelParams(
        topics={"net": TopicRules(keywords=("socket",), min_keyword_hits=1)},
        fallback_label="misc",
    )
    result = label(clean_frame(["a socket", "nothing relevant"]), params)
    row = result.frame.iloc[1]
    assert (row["label"], row["label_confidence"], row["labeling_functions"]) == ("misc", 0, "")
    assert result.frame.iloc[0]["label"] == "net"


def test_overrides_win_and_unknown_ids_are_reported() -> None:
    params = LabelParams(topics={"net": TopicRules(keywords=("socket",), min_keyword_hits=1)})
    frame = clean_frame(["a socket", "plain words"])
    overrides = pd.DataFrame(
        {
            "id": [frame["id"][0], frame["id"][1], "ffffffffffffffff"],
            "label": ["other", "net", "net"],
        }
    )
    result = label(frame, params, overrides)
    assert result.frame["label"].tolist() == ["other", "net"]
    assert result.frame["label_confidence"].tolist() == [1.0, 1.0]
    assert result.frame["labeling_functions"].tolist() == ["override", "override"]
    assert result.report["overrides"] == {
        "applied": 2,
        "unknown": 1,
        "unknown_ids": ["ffffffffffffffff"],
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"id": ["a", "b"], "label": ["net", " "]}, r"row 2 \(id 'b'"),
        ({"id": ["a"], "label": ["netwroking"]}, r"row 1 \(id 'a'\): label 'netwroking'"),
        ({"id": ["a", "a"], "label": ["net", "other"]}, r"ids \['a'\] are given different"),
    ],
)
def test_bad_override_rows_are_errors_naming_the_row(rows: dict, message: str) -> None:
    params = LabelParams(topics={"net": TopicRules(keywords=("socket",))})
    with pytest.raises(ValueError, match=message):
        label(clean_frame(["a socket"]), params, pd.DataFrame(rows))


def test_report_counts_coverage_overlaps_and_conflicts() -> None:
    params = LabelParams(
        topics={
            "x": TopicRules(keywords=("ex",), min_keyword_hits=1, modules=("xmod",)),
            "y": TopicRules(keywords=("why",), min_keyword_hits=1),
        }
    )
    frame = clean_frame(
        ["ex marks", "ex or why", "why not", "neither"], modules=["xmod", None, None, None]
    )
    result = label(frame, params)
    report = result.report
    assert (report["coverage"], report["overlap"], report["conflict"]) == (0.75, 0.5, 0.25)
    functions = report["labeling_functions"]
    assert [functions["keyword:x"][key] for key in ("coverage", "overlaps", "conflicts")] == [
        0.5,
        0.5,
        0.25,
    ]
    assert [functions["keyword:y"][key] for key in ("coverage", "overlaps", "conflicts")] == [
        0.5,
        0.25,
        0.25,
    ]
    assert [functions["module:x"][key] for key in ("coverage", "overlaps", "conflicts")] == [
        0.25,
        0.25,
        0.0,
    ]
    assert report["label_distribution"]["other"] == {"count": 1, "share": 0.25}
    assert result.frame["labeling_functions"].iloc[0] == "keyword:x,module:x"
    # JSON-ready and deterministic.
    assert json.loads(json.dumps(report)) == report
    again = label(frame, params)
    assert again.report == report
    pd.testing.assert_frame_equal(again.frame, result.frame)


def test_label_records_checks_its_input_schema() -> None:
    frame = clean_frame(["one", "two"])
    frame.loc[1, "id"] = frame.loc[0, "id"]
    with pytest.raises(SchemaError, match="(?s)label: .*column 'id' fails field_uniqueness"):
        label(frame, LabelParams())


def test_read_overrides_accepts_a_missing_or_empty_file(tmp_path) -> None:
    assert read_overrides(tmp_path / "absent.csv").columns.tolist() == ["id", "label"]
    assert read_overrides(tmp_path / "absent.csv").empty
    (tmp_path / "empty.csv").write_text("")
    assert read_overrides(tmp_path / "empty.csv").empty


def test_read_overrides_strips_cells_and_keeps_only_id_and_label(tmp_path) -> None:
    path = tmp_path / "overrides.csv"
    path.write_text("id, label ,note\n 0123456789abcdef , net ,checked by hand\n")
    table = read_overrides(path)
    assert table.to_dict("records") == [{"id": "0123456789abcdef", "label": "net"}]


def test_read_overrides_without_the_header_names_the_file_and_the_fix(tmp_path) -> None:
    path = tmp_path / "overrides.csv"
    path.write_text("0123456789abcdef,net\n")
    with pytest.raises(ValueError, match=rf"{path}.*first line must be the header `id,label`"):
        read_overrides(path)


def test_read_overrides_with_an_empty_label_names_the_row(tmp_path) -> None:
    path = tmp_path / "overrides.csv"
    path.write_text("id,label\naaaa,net\nbbbb,\n")
    with pytest.raises(ValueError, match=rf"{path}: empty id or label in row 2 \(id 'bbbb'"):
        read_overrides(path)


def test_meta_that_is_not_a_json_object_is_an_error_naming_the_records() -> None:
    frame = clean_frame(["a", "b"])
    frame.loc[1, "meta"] = "[1, 2]"
    with pytest.raises(ValueError, match=rf"it is not in 1 \(ids \['{frame['id'][1]}'\]\)"):
        labeling_frame(frame)
