"""Round trips: an adapter saved here and loaded in a fresh Python process answers exactly the same.

All six methods are saved from this process (on a tiny Llama and a tiny Gemma-3), then ONE new
interpreter (no shared memory, no imported state) loads the same base model folder and every adapter
and generates greedily; its answers must equal, token for token, what the in-memory models answered
before saving. Also: the
same seed gives the same loss curve on CPU (tolerance 1e-6 absolute, documented in the error
catalogue), and over-long inputs are cut with a warning instead of crashing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from conftest import every_architecture, spice
from pbft_widgets import load_adapter, load_model, save_adapter
from pbft_widgets import METHODS, apply_method, evaluate, train
from pbft_widgets.generation import generate_texts
from pbft_widgets.templates import PromptTemplate, Verbalizer

PROMPTS = ["Translate to Nahuatl: water", "Summarise: the licence grants a worldwide right to use the code",
           "Hi", "Docstring for def add(a, b): return a + b"]
OPTIONS = {"prompt-tuning": {"num_virtual_tokens": 6}, "prefix-tuning": {"num_virtual_tokens": 6},
           "p-tuning": {"num_virtual_tokens": 6, "encoder_hidden_size": 16}, "lora": {"r": 4},
           "qlora": {"r": 4}, "prompt+lora": {"num_virtual_tokens": 6, "r": 4}}
LOSS_TOLERANCE = 1e-6  # absolute, per logged step, same seed on CPU


pytestmark = pytest.mark.usefixtures("one_thread")

CHILD = textwrap.dedent("""
    import json, sys, warnings
    import torch
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from pbft_widgets import load_adapter, load_model
    from pbft_widgets.generation import generate_texts
    spec = json.loads(sys.argv[1])
    out = {}
    for method, path in spec["adapters"].items():
        base = load_model(spec["base"], quantization="4bit" if method == "qlora" else None)
        setup = load_adapter(base.model, path)
        assert setup.method == method, (setup.method, method)
        out[method] = generate_texts(setup.model, base.tokenizer, spec["prompts"], max_new_tokens=8)
    print(json.dumps(out))
""")


def _nudged(setup, seed: int):
    """Move the fresh adapter away from its initialisation so every method answers differently."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in setup.model.parameters():
            if param.requires_grad and param.is_floating_point():
                param.add_(0.5 * torch.randn_like(param))
    setup.model.eval()
    return setup


@pytest.fixture
def base_folder(tiny_causal_lm, smol_tokenizer, tmp_path):
    folder = tmp_path / "base"
    spice(tiny_causal_lm).save_pretrained(folder)  # a random init answers with one token; this one varies
    smol_tokenizer.save_pretrained(folder)
    return folder


@every_architecture
def test_all_six_methods_answer_the_same_after_a_reload_in_a_fresh_process(base_folder, tmp_path):
    expected, adapters = {}, {}
    for seed, method in enumerate(METHODS):
        base = load_model(base_folder, quantization="4bit" if method == "qlora" else None)
        setup = _nudged(apply_method(base.model, method, tokenizer=base.tokenizer, **OPTIONS[method]), seed)
        expected[method] = generate_texts(setup.model, base.tokenizer, PROMPTS, max_new_tokens=8)
        adapters[method] = str(save_adapter(setup, tmp_path / method))
    assert len({tuple(v) for v in expected.values()}) >= 5, f"methods should answer differently: {expected}"

    spec = json.dumps({"base": str(base_folder), "adapters": adapters, "prompts": PROMPTS})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reloaded = json.loads(done.stdout.strip().splitlines()[-1])
    for method in METHODS:
        assert reloaded[method] == expected[method], method


def _template() -> PromptTemplate:
    return PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))


ROWS = [{"text": "a wonderful, moving film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"},
        {"text": "I loved every minute", "label": "pos"}, {"text": "a waste of an evening", "label": "neg"}] * 2


def test_the_same_seed_gives_the_same_loss_curve(tiny_causal_lm, smol_tokenizer, tmp_path):
    """P-tuning: its MLP encoder is initialised from the seed too (LoRA is covered in test_train)."""
    from transformers import set_seed

    curves = []
    for run in range(2):
        set_seed(11)  # before apply_method: the prompt encoder is initialised randomly there
        setup = apply_method(copy.deepcopy(tiny_causal_lm), "p-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4)
        result = train(setup, ROWS, tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / f"r{run}",
                       max_steps=4, batch_size=4, seed=11, save_final_adapter=False, smoke=False)
        curves.append([loss for _, loss in result.losses()])
    assert len(curves[0]) == 4
    assert curves[0] == pytest.approx(curves[1], abs=LOSS_TOLERANCE, rel=0)


def test_over_long_prompts_are_cut_with_a_warning_not_a_crash(smol_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=smol_tokenizer.pad_token_id, eos_token_id=smol_tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    long_prompt = "the licence grants a worldwide right " * 40
    with pytest.warns(UserWarning, match=r"\d+ tokens were cut from 1 of 2 prompts .*fit 56 tokens") as caught:
        texts = generate_texts(model, smol_tokenizer, [long_prompt, "Hi"], max_new_tokens=8)
    cut = int(str(caught[0].message).split()[0])
    assert cut == len(smol_tokenizer(long_prompt)["input_ids"]) - 56
    assert len(texts) == 2


def test_over_long_texts_for_a_classifier_are_cut_with_a_warning(bert_tokenizer, tiny_bert_config):
    from transformers import BertForSequenceClassification, BertForTokenClassification

    config = copy.deepcopy(tiny_bert_config)
    config.max_position_embeddings = 32
    config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    classifier = BertForSequenceClassification(config).eval()
    rows = [{"text": "word " * 100, "label": "pos"}, {"text": "short", "label": "neg"}]
    with pytest.warns(UserWarning, match="tokens were cut from 1 of 2 texts to fit 32 tokens"):
        result = evaluate(classifier, bert_tokenizer, rows, task_kind="classification")
    assert result.n == 2
    config.id2label, config.label2id = {0: "O", 1: "B-X", 2: "I-X"}, {"O": 0, "B-X": 1, "I-X": 2}
    tagger = BertForTokenClassification(config).eval()
    rows = [{"tokens": ["w"] * 80, "tags": ["O"] * 80}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(tagger, bert_tokenizer, rows, task_kind="ner")
    assert any("tokens were cut from 1 of 1 sentences" in str(w.message) for w in caught)
    assert result.scores["unaligned_words"] == 80 - 30  # 32 positions minus [CLS] and [SEP]


def test_over_long_training_rows_are_cut_with_a_warning(bert_tokenizer, tiny_bert_config, smol_tokenizer, tmp_path):
    """Virtual tokens take positions too: rows are cut to max_position_embeddings minus the prompt."""
    from transformers import BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

    config = copy.deepcopy(tiny_bert_config)
    config.max_position_embeddings = 32
    config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    setup = apply_method(BertForSequenceClassification(config), "prompt-tuning", task="sequence-classification",
                         num_virtual_tokens=4)
    rows = [{"text": "word " * 60, "label": "pos"}, {"text": "short", "label": "neg"}]
    with pytest.warns(UserWarning, match="34 tokens were cut from 1 of 2 train rows to fit max_length=28"):
        train(setup, rows, tokenizer=bert_tokenizer, output_dir=tmp_path / "cls", max_steps=1, batch_size=2,
              save_final_adapter=False, smoke=False)

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64))
    setup = apply_method(llama, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4)
    rows = [{"text": "the licence grants a worldwide right " * 30, "label": "pos"}] + ROWS[1:4]
    with pytest.warns(UserWarning, match=r"input tokens were cut from 1 of 4 rows to fit max_length=60"):
        train(setup, rows, tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / "lm", max_steps=1,
              batch_size=2, save_final_adapter=False, smoke=False)


def test_a_trained_qlora_adapter_reloads_as_trained_onto_a_freshly_prepared_base(base_folder, tmp_path):
    """TRL trains QLoRA adapters in bf16 and apply_method prepares the 4-bit base; a reload does both again.

    The reference is the trained weights put into a fresh apply_method model: the trained model in
    memory itself is not one, since training on CPU leaves its 4-bit layers' block scales slightly
    different from a freshly quantised copy's (a bitsandbytes effect the notebook 03 reports).
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    base = load_model(base_folder, quantization="4bit")
    setup = apply_method(base.model, "qlora", tokenizer=base.tokenizer, r=4)
    train(setup, ROWS, tokenizer=base.tokenizer, template=_template(), output_dir=tmp_path / "run", max_steps=2,
          batch_size=4, learning_rate=0.5, overwrite=True)
    trained = {name: p.dtype for name, p in setup.model.named_parameters() if "lora_" in name}
    assert set(trained.values()) == {torch.bfloat16}
    path = save_adapter(setup, tmp_path / "qlora")

    reference = apply_method(load_model(base_folder, quantization="4bit").model, "qlora", tokenizer=base.tokenizer,
                             r=4).model
    set_peft_model_state_dict(reference, get_peft_model_state_dict(setup.model))
    for name, param in reference.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(torch.bfloat16)
    reference.eval()
    reloaded = load_adapter(load_model(base_folder, quantization="4bit").model, path)
    assert {name: p.dtype for name, p in reloaded.model.named_parameters() if "lora_" in name} == trained
    assert generate_texts(reloaded.model, base.tokenizer, PROMPTS, max_new_tokens=8) == generate_texts(
        reference, base.tokenizer, PROMPTS, max_new_tokens=8)
