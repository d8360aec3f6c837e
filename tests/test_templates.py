"""PromptTemplate / Verbalizer: rendering, conventions, truncation, validation and persistence.

Uses the real SmolLM2 tokenizer so label-word tokenisation, chat markers and token counts are the
ones a user actually gets.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from pbft_widgets.errors import DataError, TemplateError
from pbft_widgets.templates import PromptTemplate, RenderedExample, Verbalizer

SENTIMENT = Verbalizer({"pos": ["positive", "good"], "neg": "negative"})
ROW = {"text": "A moving, funny film.", "label": "pos"}


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def demos(labels: str) -> list[dict]:
    """Demonstrations d0, d1, ... labelled by the characters of ``labels`` ('p' or 'n')."""
    return [{"text": f"d{i}", "label": "pos" if c == "p" else "neg"} for i, c in enumerate(labels)]


def shown_demos(prompt: str) -> list[str]:
    """The demonstration inputs in the order they appear in a rendered prompt."""
    return [line.removeprefix("Review: ") for line in prompt.splitlines() if line.startswith("Review: d")]


# ----------------------------------------------------------------------------- styles
def test_prefix_without_tokenizer_has_no_eos_and_no_counts():
    template = PromptTemplate(instruction="Summarise.", output_indicator="Summary:", target_field="summary")
    example = template.render({"text": "Long text here.", "summary": "Short."})
    assert example == RenderedExample("Summarise.\n\nLong text here.\nSummary:", " Short.")
    assert example.prompt_tokens is None and example.truncated_tokens == 0


def test_prefix_with_tokenizer_appends_eos_and_counts_tokens(smol_tokenizer):
    template = PromptTemplate(instruction="Summarise.", output_indicator="Summary:", target_field="summary")
    example = template.render({"text": "Long text here.", "summary": "Short."}, smol_tokenizer)
    assert example.completion == " Short.<|im_end|>"
    assert example.prompt_tokens == len(smol_tokenizer(example.prompt)["input_ids"])
    assert example.completion_tokens == n_tokens(smol_tokenizer, " Short.") + 1


def test_cloze_completion_is_the_single_token_label_word(smol_tokenizer):
    template = PromptTemplate(input_template="Review: {text}", style="cloze", verbalizer=SENTIMENT)
    example = template.render(ROW, smol_tokenizer)
    assert example.prompt == "Review: A moving, funny film.\nAnswer:"
    assert example.completion == " positive<|im_end|>"
    assert example.completion_tokens == 2  # " positive" is one token, then eos


def test_cloze_accepts_integer_labels(smol_tokenizer):
    template = PromptTemplate(style="cloze", verbalizer=Verbalizer({0: "negative", 1: "positive"}))
    assert template.render({"text": "ok", "label": 1}, smol_tokenizer).completion == " positive<|im_end|>"


def test_multi_token_label_word_is_trained_whole_when_allowed(smol_tokenizer):
    nli = Verbalizer({"entailment": "entailment", "contradiction": "contradiction"}, allow_multi_token=True)
    template = PromptTemplate(input_template="{premise} / {hypothesis}", style="cloze", verbalizer=nli)
    row = {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": "entailment"}
    example = template.render(row, smol_tokenizer)
    assert template.fields == ["premise", "hypothesis"]
    assert example.prompt == "A dog runs. / An animal moves.\nAnswer:"
    assert example.completion == " entailment<|im_end|>"
    assert example.completion_tokens == 3


def test_chat_style_wraps_the_prompt_in_the_chat_template(smol_tokenizer):
    template = PromptTemplate(instruction="Classify the review.", style="chat", verbalizer=SENTIMENT)
    example = template.render(ROW, smol_tokenizer)
    user_turn = "<|im_start|>user\nClassify the review.\n\nA moving, funny film.\nAnswer:<|im_end|>"
    assert user_turn in example.prompt
    assert example.prompt.endswith("<|im_start|>assistant\n")
    assert example.completion == "positive<|im_end|>"  # no leading space after the assistant marker
    assert example.prompt_tokens == n_tokens(smol_tokenizer, example.prompt)


def test_context_placeholders_are_fields_and_render_per_row():
    template = PromptTemplate(context="Source: {source}", input_template="Q: {question}", target_field="a")
    assert template.fields == ["source", "question"]
    prompt = template.render({"source": "manual", "question": "Why?", "a": "Because."}).prompt
    assert prompt == "Source: manual\n\nQ: Why?\nAnswer:"


def test_render_prompt_is_for_inference_and_needs_no_target(smol_tokenizer):
    template = PromptTemplate(style="cloze", verbalizer=SENTIMENT)
    example = template.render({"text": "hi"}, smol_tokenizer, with_completion=False)
    assert example.completion == "" and example.completion_tokens == 0
    assert template.render_prompt({"text": "hi"}, smol_tokenizer) == "hi\nAnswer:"


def test_to_dataset_has_trl_prompt_completion_columns(smol_tokenizer):
    template = PromptTemplate(style="cloze", verbalizer=SENTIMENT)
    rows = [ROW, {"text": "Dull.", "label": "neg"}]
    dataset = template.to_dataset(rows, smol_tokenizer)
    assert dataset.column_names == ["prompt", "completion"]
    assert dataset["completion"] == [" positive<|im_end|>", " negative<|im_end|>"]
    assert template.to_pairs(rows) == [
        {"prompt": "A moving, funny film.\nAnswer:", "completion": " positive"},
        {"prompt": "Dull.\nAnswer:", "completion": " negative"},
    ]


def test_trl_masks_exactly_the_completion_tokens(smol_tokenizer, tiny_causal_lm, tmp_path):
    from trl import SFTConfig, SFTTrainer

    template = PromptTemplate(instruction="Sentiment?", style="cloze", verbalizer=SENTIMENT)
    dataset = template.to_dataset([ROW], smol_tokenizer)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], max_length=None)
    trainer = SFTTrainer(
        model=tiny_causal_lm, args=args, train_dataset=dataset, processing_class=smol_tokenizer
    )
    tokenized = trainer.train_dataset[0]
    expected = template.render(ROW, smol_tokenizer)
    trained = [token for token, label in zip(tokenized["input_ids"], tokenized["labels"]) if label != -100]
    assert smol_tokenizer.decode(trained) == expected.completion == " positive<|im_end|>"
    assert len(tokenized["input_ids"]) == expected.prompt_tokens + expected.completion_tokens


# ----------------------------------------------------------------------- demonstrations
def test_demonstrations_use_the_same_format_before_the_query():
    template = PromptTemplate(
        instruction="Sentiment?", input_template="Review: {text}", style="cloze", verbalizer=SENTIMENT,
        demonstrations=demos("pn"), separator="\n---\n",
    )
    prompt = template.render(ROW).prompt
    assert prompt == (
        "Sentiment?\n---\nReview: d0\nAnswer: positive\n---\nReview: d1\nAnswer: negative"
        "\n---\nReview: A moving, funny film.\nAnswer:"
    )


def test_demonstrations_exclude_the_query_row():
    template = PromptTemplate(
        input_template="Review: {text}", verbalizer=SENTIMENT, demonstrations=demos("pnp")
    )
    prompt = template.render({"text": "d1", "label": "neg"}).prompt
    assert shown_demos(prompt) == ["d0", "d2", "d1"]  # d1 appears once: as the query, last
    assert prompt.endswith("Review: d1\nAnswer:")


def test_given_order_takes_the_first_k():
    template = PromptTemplate(input_template="Review: {text}", demonstrations=demos("pnpnp"), k_shot=3)
    assert shown_demos(template.render(ROW).prompt) == ["d0", "d1", "d2"]


def test_random_order_is_seeded_and_deterministic():
    def order(seed: int) -> list[str]:
        template = PromptTemplate(
            input_template="Review: {text}", demonstrations=demos("pnpnpnpn"), k_shot=4,
            demonstration_order="random", seed=seed,
        )
        return shown_demos(template.render(ROW).prompt)

    assert order(0) == order(0)
    assert len(set(order(0))) == 4
    assert len({tuple(order(seed)) for seed in range(5)}) > 1  # the seed really matters


def test_label_balanced_order_alternates_labels_even_when_data_is_skewed():
    template = PromptTemplate(
        input_template="Review: {text}", verbalizer=SENTIMENT, demonstrations=demos("ppppppnn"), k_shot=4,
        demonstration_order="label-balanced", seed=3,
    )
    prompt = template.render(ROW).prompt
    answers = [line for line in prompt.splitlines() if line.startswith("Answer: ")]
    assert answers == ["Answer: positive", "Answer: negative"] * 2
    assert shown_demos(prompt) == shown_demos(template.with_changes().render(ROW).prompt)


def test_demonstrations_that_fill_the_context_window_are_refused(smol_tokenizer):
    long_demos = [{"text": "word " * 40, "label": "pos"}, {"text": "word " * 40, "label": "neg"}]
    template = PromptTemplate(verbalizer=SENTIMENT, demonstrations=long_demos, max_length=60)
    with pytest.raises(TemplateError):
        template.validate(smol_tokenizer)
    with pytest.raises(TemplateError):
        template.render(ROW, smol_tokenizer)
    template.with_changes(k_shot=0).validate(smol_tokenizer)  # the suggested fix works


# -------------------------------------------------------------------------- truncation
def test_long_input_is_truncated_and_the_cut_counted(smol_tokenizer):
    text = "word " * 50
    template = PromptTemplate(
        instruction="Summarise.", output_indicator="Summary:", target_field="s", max_length=24
    )
    example = template.render({"text": text, "s": "short"}, smol_tokenizer)
    assert example.prompt.startswith("Summarise.\n\n") and example.prompt.endswith("\nSummary:")
    assert example.completion == " short<|im_end|>"
    assert example.prompt_tokens + example.completion_tokens <= 24
    kept = example.prompt.removeprefix("Summarise.\n\n").removesuffix("\nSummary:")
    assert text.startswith(kept)
    assert example.truncated_tokens == n_tokens(smol_tokenizer, text) - n_tokens(smol_tokenizer, kept) > 0


def test_truncation_cuts_the_longest_field_first(smol_tokenizer):
    template = PromptTemplate(input_template="{premise} / {hypothesis}", target_field="y", max_length=30)
    row = {"premise": "long " * 40, "hypothesis": "A short claim.", "y": "yes"}
    example = template.render(row, smol_tokenizer)
    assert example.prompt.endswith(" / A short claim.\nAnswer:")
    assert example.truncated_tokens > 0 and example.prompt_tokens + example.completion_tokens <= 30


def test_model_max_length_is_used_only_when_sensible(smol_tokenizer):
    template = PromptTemplate(target_field="s")
    row = {"text": "word " * 60, "s": "ok"}
    assert template.render(row, smol_tokenizer).truncated_tokens == 0  # SmolLM2 declares no real limit
    short = copy.deepcopy(smol_tokenizer)
    short.model_max_length = 20
    example = template.render(row, short)
    assert example.truncated_tokens > 0 and example.prompt_tokens + example.completion_tokens <= 20


def test_token_report_summarises_and_warns_with_the_cut(smol_tokenizer):
    template = PromptTemplate(target_field="s", max_length=20)
    rows = [{"text": "word " * 50, "s": "a"}, {"text": "hi", "s": "b"}]
    with pytest.warns(UserWarning, match="input tokens were cut from 1 of 2 rows") as record:
        report = template.token_report(rows, smol_tokenizer)
    cut = template.render(rows[0], smol_tokenizer).truncated_tokens
    assert report["truncated_tokens"] == cut > 30 and f"{cut} input tokens" in str(record[0].message)
    assert report["rows"] == 2 and report["truncated_rows"] == 1 and report["max_length"] == 20
    short = template.render(rows[1], smol_tokenizer)
    assert report["total_tokens_max"] <= 20
    mean = (report["prompt_tokens_max"] + short.prompt_tokens) / 2
    assert report["prompt_tokens_mean"] == pytest.approx(mean)


# -------------------------------------------------------------------------- validation


def test_validate_checks_a_sample_row_and_label_words(smol_tokenizer):
    template = PromptTemplate(input_template="Q: {question}", style="cloze", verbalizer=SENTIMENT)
    template.validate(smol_tokenizer, sample_row={"question": "ok?", "label": "neg"})
    with pytest.raises(DataError):
        template.validate(smol_tokenizer, sample_row=ROW)
    bad = template.with_changes(verbalizer=Verbalizer({"pos": "wonderfulness", "neg": "bad"}))
    with pytest.raises(TemplateError):
        bad.validate(smol_tokenizer)


# ------------------------------------------------------------------ reading answers back
def test_label_for_text_is_case_and_space_insensitive_and_takes_the_first_word():
    assert SENTIMENT.label_for_text("  POSITIVE.") == "pos"
    assert SENTIMENT.label_for_text("It was negative, not good") == "neg"
    assert SENTIMENT.label_for_text("quite\n good") == "pos"  # synonyms count
    assert SENTIMENT.label_for_text("goodness knows") is None  # whole words only
    assert SENTIMENT.label_for_text("") is None
    assert PromptTemplate(style="cloze", verbalizer=SENTIMENT).label_for_text(" negative<|im_end|>") == "neg"
    assert PromptTemplate().label_for_text("positive") is None


# ------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("name", ["template.json", "template.yaml", "template.yml"])
def test_round_trip_keeps_every_setting(tmp_path, name):
    template = PromptTemplate(
        instruction="Classify.", context="Domain: {domain}", input_template="Review: {text}",
        output_indicator="Label:", style="cloze",
        verbalizer=Verbalizer({"pos": ["positive", "good"], 0: "negative"}),
        demonstrations=[{"domain": "film", "text": "Great", "label": "pos"}], k_shot=1,
        demonstration_order="label-balanced", seed=7, separator="\n", max_length=128,
    )
    path = template.save(tmp_path / name)
    assert PromptTemplate.load(path) == template
    assert PromptTemplate.load(path).render({"domain": "x", "text": "y", "label": 0}) == template.render(
        {"domain": "x", "text": "y", "label": 0}
    )
    data = json.loads(path.read_text()) if name.endswith("json") else yaml.safe_load(path.read_text())
    assert data["version"] == 1 and data["style"] == "cloze"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_with_changes_returns_a_new_template_and_leaves_the_original():
    template = PromptTemplate(instruction="A")
    changed = template.with_changes(instruction="B", input_template="{question}")
    assert (template.instruction, template.fields) == ("A", ["text"])
    assert (changed.instruction, changed.fields) == ("B", ["question"])
    with pytest.raises(AttributeError):
        template.instruction = "C"
