"""Unit tests of the clean stage core (aigc.text.clean) on small hand-made frames."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from aigc.config import (
    CleanParams,
    LengthRule,
    NearDuplicateRule,
    NormalizeRule,
    Rule,
    StripMarkupRule,
)
from aigc.data.records import (
    QUARANTINE_COLUMNS,
    RAW_COLUMNS,
    AccountingError,
    SchemaError,
    check_accounting,
    text_id,
)
from aigc.text.clean import (
    clean_records,
    minhash_signatures,
)
from aigc.text.clean_report import write_length_histogram

COLLECTED_AT = "2026-01-01T00:00:00Z"


def prose(seed: int, words: int = 60) -> str:
    """Deterministic English-looking text; different seeds share almost no 5-word shingles."""
    generator = random.Random(seed)
    vocabulary = [
        "".join(generator.choice("etaoinshrdlucmfw") for _ in range(generator.randint(2, 9)))
        for _ in range(400)
    ]
    return " ".join(generator.choice(vocabulary) for _ in range(words)) + "."


def raw_frame(*rows: str | dict) -> pd.DataFrame:
    """Raw records from texts or dicts of column overrides; uri doc0, doc1, ... by position."""
    records = []
    for index, row in enumerate(rows):
        row = {"text": row} if isinstance(row, str) else row
        record = {
            "text": row["text"],
            "source": "test",
            "source_type": "folder",
            "uri": f"file://doc{index}",
            "collected_at": COLLECTED_AT,
            "meta": "{}",
            "flags": "",
        }
        record.update(row)
        record.setdefault("id", text_id(record["text"]))
        records.append(record)
    return pd.DataFrame(records, columns=RAW_COLUMNS)


def only(**rules: object) -> CleanParams:
    """Params with every rule off except the ones given (as Rule objects or True)."""
    off = {name: {"enabled": False} for name in CleanParams.model_fields}
    for name, rule in rules.items():
        off[name] = rule.model_dump() if isinstance(rule, Rule) else {}
    return CleanParams.model_validate(off)


def cleaned(text: str, params: CleanParams) -> str:
    result = clean_records(raw_frame(text), params)
    assert len(result.records) == 1, result.quarantine[["rule", "detail"]]
    return result.records["text"].iloc[0]


def quarantined(result, uri: str) -> pd.Series:
    rows = result.quarantine[result.quarantine["uri"] == uri]
    assert len(rows) == 1, f"{uri} is not quarantined: {result.quarantine[['uri', 'rule']]}"
    return rows.iloc[0]


# --- flagged ---------------------------------------------------------------------------


def test_flagged_records_with_a_hard_flag_are_quarantined_with_the_flag_as_detail() -> None:
    raw = raw_frame(
        {"text": prose(1), "flags": "binary"},
        {"text": prose(2), "flags": "invalid_utf8,malformed_json"},
        prose(3),
    )
    result = clean_records(raw, CleanParams())
    assert quarantined(result, "file://doc0")["rule"] == "flagged"
    assert quarantined(result, "file://doc0")["detail"] == "binary"
    assert quarantined(result, "file://doc1")["detail"] == "invalid_utf8,malformed_json"
    assert sorted(result.records["uri"]) == ["file://doc2"]


def test_invalid_utf8_is_quarantined_even_when_the_text_looks_fine() -> None:
    # One replaced byte in 400 characters passes the garbled rule's printable ratio, but the
    # U+FFFD must not reach the training text.
    text = prose(5, words=80) + " caf\ufffd au lait"
    result = clean_records(
        raw_frame({"text": text, "flags": "invalid_utf8"}, prose(6)), CleanParams()
    )
    row = quarantined(result, "file://doc0")
    assert (row["rule"], row["detail"], row["text"]) == ("flagged", "invalid_utf8", text)
    assert list(result.records["uri"]) == ["file://doc1"]
    assert len(result.records) + len(result.quarantine) == 2
    assert result.report["quarantined_by_rule"]["flagged"] == 1


# --- normalize -------------------------------------------------------------------------


def test_normalize_folds_whitespace_but_keeps_indentation() -> None:
    text = (
        "  Title\r\nCafe\u0301  has\t\tcoffee.   \r\n\r\n\r\n\r\n    def f():\n        return  1\n"
    )
    assert cleaned(text, only(normalize=True)) == (
        "Title\nCaf\u00e9 has coffee.\n\n    def f():\n        return 1"
    )


def test_normalize_nfkc_and_no_inner_folding_by_params() -> None:
    rule = NormalizeRule(unicode_form="NFKC", fold_whitespace=False)
    assert cleaned("\ufb01ne  and\u00a0 dandy  \n\n\n\nend", only(normalize=rule)) == (
        "fine  and  dandy\n\nend"
    )
    assert cleaned("\ufb01ne", only(normalize=True)) == "\ufb01ne"  # NFC keeps the ligature


# --- strip_markup ----------------------------------------------------------------------


def test_rest_roles_and_literals_become_their_text() -> None:
    text = (
        "Use :func:`open` or :class:`~a.b.Reader` with :meth:`read <io.Reader.read>`, "
        ":py:data:`!sys.path`, ``x = 1``, `default role` and `the docs <https://x.org>`_."
    )
    assert cleaned(text, only(strip_markup=True)) == (
        "Use open or Reader with read, sys.path, x = 1, default role and the docs."
    )


def test_rest_directive_lines_go_and_their_indented_content_stays() -> None:
    text = (
        "Intro.\n\n.. versionadded:: 3.2\n   The flag.\n\n.. note::\n\n   Be careful.\n\n"
        ".. seealso:: The tutorial.\n\n.. deprecated:: 3.4\n   Use g instead."
    )
    assert cleaned(text, only(strip_markup=True)) == (
        "Intro.\n\n   The flag.\n\n   Be careful.\n\nThe tutorial.\n\n   Use g instead."
    )


def test_doctest_prompts_go_and_the_code_stays_indented() -> None:
    text = (
        "Example:\n\n    >>> def f(x):\n    ...     return x\n    ...\n    >>> f(2)\n    2\n\n"
        "An abstract method body:\n\n    def g(self):\n        ..."
    )
    assert cleaned(text, only(normalize=True, strip_markup=True)) == (
        "Example:\n\n    def f(x):\n        return x\n\n    f(2)\n    2\n\n"
        "An abstract method body:\n\n    def g(self):\n        ..."
    )


def test_heading_underlines_are_removed() -> None:
    text = "The title\n*********\n\nSection\n=======\n\nBody text.\n\nParameters\n----------\nx"
    assert cleaned(text, only(strip_markup=True)) == (
        "The title\n\nSection\n\nBody text.\n\nParameters\nx"
    )


@pytest.mark.parametrize(
    ("switch", "text"),
    [
        ("rest_roles", "Call :func:`open` and ``x``."),
        ("rest_directives", "Text.\n\n.. versionadded:: 3.2"),
        ("doctest_prompts", ">>> print(1)\n1"),
        ("heading_underlines", "Title\n====="),
    ],
)
def test_each_markup_group_can_be_switched_off(switch: str, text: str) -> None:
    rule = StripMarkupRule(**{switch: False})
    assert cleaned(text, only(strip_markup=rule)) == text
    assert cleaned(text, only(strip_markup=True)) != text


# --- garbled ---------------------------------------------------------------------------


def test_invalid_utf8_text_full_of_replacement_characters_is_garbled() -> None:
    undecodable = (b"Header: " + bytes(range(128, 256)) * 3).decode("utf-8", errors="replace")
    result = clean_records(raw_frame(undecodable, prose(1)), CleanParams())
    row = quarantined(result, "file://doc0")
    assert row["rule"] == "garbled"
    assert row["detail"].startswith("printable_ratio: ")
    assert row["text"] == undecodable  # the original text is kept
    assert list(result.records["uri"]) == ["file://doc1"]


def test_text_with_too_few_letters_is_garbled_with_the_ratio_in_detail() -> None:
    numbers = " ".join(str(number) for number in range(1000, 1100))
    row = quarantined(clean_records(raw_frame(numbers), CleanParams()), "file://doc0")
    assert row["rule"] == "garbled"
    assert row["detail"] == "letter_ratio: 0.0 < 0.4"


# --- length ----------------------------------------------------------------------------


def test_too_short_and_too_long_texts_are_quarantined_by_length() -> None:
    huge = "word " * 1_000_000  # one 5 MB line
    result = clean_records(raw_frame("Too short.", huge, prose(1)), CleanParams())
    assert quarantined(result, "file://doc0")["detail"] == "too_short: 10 < 64"
    long_row = quarantined(result, "file://doc1")
    assert long_row["rule"] == "length"
    assert long_row["detail"] == "too_long: 4999999 > 20000"  # measured after strip
    assert len(long_row["text"]) == 5_000_000
    assert list(result.records["uri"]) == ["file://doc2"]
    assert result.report["length_quarantined"] == {"too_short": 1, "too_long": 1}


# --- duplicates ------------------------------------------------------------------------


def test_identical_texts_keep_the_earliest_and_point_the_rest_at_it() -> None:
    text = prose(1)
    raw = raw_frame(
        {"text": text, "collected_at": "2026-02-01T00:00:00Z"},
        {"text": text, "collected_at": "2026-01-01T00:00:00Z"},
        prose(2),
    )
    result = clean_records(raw, CleanParams())
    row = quarantined(result, "file://doc0")
    assert (row["rule"], row["duplicate_of"]) == ("exact_duplicate", "file://doc1")
    assert sorted(result.records["uri"]) == ["file://doc1", "file://doc2"]


def test_texts_equal_after_cleaning_are_exact_duplicates() -> None:
    text = prose(1)
    marked_up = f"Title\n=====\n\n{text}".replace(" ", "  ", 3)
    raw = raw_frame(f"Title\n\n{text}", {"text": marked_up, "id": "0" * 16})
    row = quarantined(clean_records(raw, CleanParams()), "file://doc1")
    assert (row["rule"], row["duplicate_of"]) == ("exact_duplicate", "file://doc0")
    assert row["text"] == marked_up


def test_a_repeated_collection_id_is_quarantined_so_clean_ids_are_unique() -> None:
    raw = raw_frame({"text": prose(1), "id": "a" * 16}, {"text": prose(2), "id": "a" * 16})
    result = clean_records(raw, CleanParams())
    row = quarantined(result, "file://doc1")
    assert (row["rule"], row["duplicate_of"]) == ("duplicate_id", "file://doc0")
    assert result.records["id"].is_unique


def test_near_identical_paragraphs_keep_one() -> None:
    words = prose(1, words=200).split()
    edited = " ".join([*words[:100], "changed", *words[101:]])
    raw = raw_frame(" ".join(words), edited, prose(2, words=200))
    result = clean_records(raw, CleanParams())
    row = quarantined(result, "file://doc1")
    assert (row["rule"], row["duplicate_of"]) == ("near_duplicate", "file://doc0")
    assert row["detail"].startswith("estimated_jaccard: 0.9")
    assert sorted(result.records["uri"]) == ["file://doc0", "file://doc2"]


def test_minhash_estimates_the_jaccard_similarity_of_shingles() -> None:
    words = prose(1, words=300).split()
    texts = pd.Series([" ".join(words[:200]), " ".join(words[50:250]), prose(2, words=200)])
    signatures = minhash_signatures(texts, num_perm=256, shingle_words=5, seed=1)
    exact = 146 / 246  # 196 shingles each, 146 shared
    assert abs((signatures[0] == signatures[1]).mean() - exact) < 0.08
    assert (signatures[0] == signatures[2]).mean() < 0.05


# --- switches, accounting, schema, determinism, report ---------------------------------


@pytest.mark.parametrize(
    ("rule", "texts"),
    [
        ("flagged", [{"text": prose(1), "flags": "binary"}]),
        ("garbled", ["\ufffd" * 100]),
        ("length", ["short"]),
        ("exact_duplicate", [prose(1), {"text": prose(1), "id": "b" * 16}]),
        ("near_duplicate", [prose(1, 200), prose(1, 200).replace(" ", " x ", 1)]),
    ],
)
def test_a_disabled_rule_quarantines_nothing(rule: str, texts: list) -> None:
    raw = raw_frame(*texts)
    assert clean_records(raw, CleanParams()).report["quarantined_by_rule"][rule] == 1
    off = {rule: {"enabled": False}}
    if rule == "exact_duplicate":  # identical texts are also near duplicates (Jaccard 1.0)
        off["near_duplicate"] = {"enabled": False}
    result = clean_records(raw, CleanParams(**off))
    assert len(result.quarantine) == 0
    assert len(result.records) == len(raw)


def mixed_frame() -> pd.DataFrame:
    base = prose(7, words=200)
    return raw_frame(
        prose(1),
        {"text": prose(2), "flags": "not_text"},
        "tiny",
        "\x00\x01\x02" * 40,
        prose(1),
        base,
        base.replace(" ", " y ", 1),
        ":class:`~x.Y` is documented here.\n\n>>> Y()\n" + prose(3),
        {"text": prose(4), "id": text_id(prose(1))},
    )


def test_raw_equals_clean_plus_quarantined_on_a_mixed_frame() -> None:
    raw = mixed_frame()
    result = clean_records(raw, CleanParams())
    assert len(result.records) + len(result.quarantine) == len(raw)
    assert set(result.records["uri"]).isdisjoint(result.quarantine["uri"])
    assert set(result.records["uri"]) | set(result.quarantine["uri"]) == set(raw["uri"])
    assert result.report["quarantined_by_rule"] == {
        "flagged": 1,
        "garbled": 1,
        "length": 1,
        "exact_duplicate": 1,
        "duplicate_id": 1,
        "near_duplicate": 1,
    }
    assert list(result.records.columns) == RAW_COLUMNS
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS
    merged = result.quarantine.merge(raw, on="uri", suffixes=("", "_raw"))
    assert (merged["text"] == merged["text_raw"]).all()  # quarantine keeps raw text
    kept = result.records.merge(raw, on="uri", suffixes=("", "_raw"))
    assert (kept["id"] == kept["id_raw"]).all() and kept["id"].is_unique


def test_check_accounting_names_lost_and_double_counted_records() -> None:
    raw = mixed_frame()
    result = clean_records(raw, CleanParams())
    with pytest.raises(AccountingError, match="lost uris"):
        check_accounting(raw, result.records.iloc[1:], result.quarantine)
    with pytest.raises(AccountingError, match="both clean and quarantined"):
        check_accounting(raw, result.records, pd.concat([result.quarantine, result.records]))


def test_a_missing_column_raises_schema_error_naming_it() -> None:
    with pytest.raises(SchemaError, match="flags"):
        clean_records(raw_frame(prose(1)).drop(columns=["flags"]), CleanParams())


def test_two_runs_and_a_shuffled_input_give_identical_outputs() -> None:
    raw = mixed_frame()
    first = clean_records(raw, CleanParams())
    for again in (raw, raw.sample(frac=1, random_state=3)):
        second = clean_records(again, CleanParams())
        pd.testing.assert_frame_equal(first.records, second.records)
        pd.testing.assert_frame_equal(first.quarantine, second.quarantine)
        assert json.dumps(first.report) == json.dumps(second.report)


def test_report_counts_characters_lengths_and_params() -> None:
    raw = raw_frame(prose(1), prose(2, words=100), "tiny")
    report = clean_records(raw, CleanParams(length=LengthRule(min_chars=10))).report
    lengths = sorted(len(text) for text in raw["text"][:2])
    assert report["input_records"] == 3 and report["output_records"] == 2
    assert report["chars_in"] == raw["text"].str.len().sum()
    assert report["chars_out"] == sum(lengths)
    assert report["clean_length"]["min"] == lengths[0]
    assert report["clean_length"]["max"] == lengths[1]
    assert report["clean_length"]["median"] == np.median(lengths)
    assert report["params"]["length"]["min_chars"] == 10
    assert report["params"]["near_duplicate"] == NearDuplicateRule().model_dump()


def test_length_histogram_is_a_byte_identical_png(tmp_path) -> None:
    result = clean_records(mixed_frame(), CleanParams())
    first = write_length_histogram(result.records, result.report, tmp_path / "a.png").read_bytes()
    second = write_length_histogram(result.records, result.report, tmp_path / "b.png")
    second = second.read_bytes()
    assert first.startswith(b"\x89PNG") and first == second
