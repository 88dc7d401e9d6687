"""aigc.retrain.summary_markdown: a retrain run's outcome as the Markdown the Prefect UI shows."""

from __future__ import annotations

from aigc.retrain import RetrainSummary, summary_markdown


def test_a_decision_shows_status_versions_metrics_side_by_side_and_reasons():
    summary = RetrainSummary(
        status="rejected",
        data_version="0123456789abcdef0123456789abcdef",
        key="k" * 20,
        run_id="r" * 32,
        challenger_version="2",
        champion_version="1",
        challenger_metrics={"test_bits_per_character": 2.61234, "distinct_2": 0.5, "other": 1.0},
        champion_metrics={"test_bits_per_character": 2.4},
        reasons=(
            "test_bits_per_character: 2.612 vs the champion's 2.400, not 1% better",
            "guard distinct_2\nwithin tolerance",
        ),
        seconds=93.4,
    )
    markdown = summary_markdown(summary)
    assert markdown.startswith("# Retrain (text): rejected\n")
    assert "| status | **rejected** |" in markdown
    assert "| data version | `0123456789abcdef0123456789abcdef` |" in markdown
    assert f"| challenger | version 2, run `{'r' * 32}` |" in markdown
    assert "| champion after the run | version 1 |" in markdown
    assert "| test_bits_per_character | 2.612 | 2.4 |" in markdown
    assert "| distinct_2 | 0.5 | - |" in markdown, "a metric the champion lacks shows '-'"
    assert "other" not in markdown, "only the headline metrics"
    assert markdown.index("test_bits_per_character |") < markdown.index("distinct_2 |")
    reasons = markdown.split("## Reasons\n\n")[1].splitlines()
    assert reasons == [
        "- test_bits_per_character: 2.612 vs the champion's 2.400, not 1% better",
        "- guard distinct_2 within tolerance",
    ]


def test_no_change_has_no_champion_column_figures():
    summary = RetrainSummary(
        status="no change",
        data_version="d" * 32,
        key="k",
        run_id="r",
        challenger_version="1",
        champion_version="",
        challenger_metrics={"test_bits_per_character": 2.5},
        reasons=("already decided",),
    )
    markdown = summary_markdown(summary)
    assert "| test_bits_per_character | 2.5 | - |" in markdown
    assert "| champion after the run | version - |" in markdown
    assert markdown.rstrip().endswith("- already decided")
