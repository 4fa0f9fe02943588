"""The model registry: parameter counts computed from shapes match the published ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracekit.errors import BadInput
from tracekit.specs.models import MODELS, get_model, known_models

#: published parameter counts (model cards); the registry never uses these in arithmetic
PUBLISHED = {"qwen2.5-7b": 7.62e9, "llama-3.1-8b": 8.03e9, "mistral-7b": 7.25e9}


@pytest.mark.parametrize(("name", "published"), PUBLISHED.items())
def test_param_count_matches_published(name: str, published: float) -> None:
    spec = get_model(name)
    assert abs(spec.param_count() - published) / published < 0.005


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.published_params])
def test_every_published_count(name: str) -> None:
    # model cards quote counts to 0.01 B: 0.49 B may be anything in [0.485, 0.495) B
    spec = MODELS[name]
    tolerance = max(0.005 * spec.published_params, 0.005e9)
    assert abs(spec.param_count() - spec.published_params) <= tolerance


def test_qwen_param_count_by_hand() -> None:
    # embeddings + lm_head + 28 x (q, k, v with bias, o, SwiGLU, 2 norms) + final norm
    h, i, layers, v, kv = 3584, 18944, 28, 152064, 4 * 128
    layer = h * h + 2 * h * kv + (h + 2 * kv) + h * h + 3 * h * i + 2 * h
    assert get_model("qwen2.5-7b").param_count() == 2 * v * h + layers * layer + h


@pytest.mark.parametrize(
    ("name", "layers", "kv_heads", "head_dim"),
    [
        ("qwen2.5-7b", 28, 4, 128),
        ("llama-3.1-8b", 32, 8, 128),
        ("mistral-7b", 32, 8, 128),
    ],
)
def test_kv_bytes_per_token(name: str, layers: int, kv_heads: int, head_dim: int) -> None:
    spec = get_model(name)
    assert spec.kv_bytes_per_token("bf16") == layers * 2 * kv_heads * head_dim * 2
    assert spec.kv_bytes_per_token("fp32") == 2 * spec.kv_bytes_per_token("bf16")


def test_step_bytes_conventions() -> None:
    spec = get_model("qwen2.5-7b")
    allw = spec.step_bytes(2048, convention="all-weights")
    assert allw["total"] == spec.param_count() * 2 + 2048 * spec.kv_bytes_per_token()
    assert 15.2e9 < allw["total"] < 15.5e9  # the study (docs/architecture.md, "Facts"): ≈ 15.35 GB
    exact = spec.step_bytes(2048)
    # one embedding row instead of the table, plus one token's K and V written
    assert exact["weights"] == allw["weights"] - (152064 - 1) * 3584 * 2
    assert exact["kv_write"] == spec.kv_bytes_per_token()


def test_small_family_members_and_tiny() -> None:
    for name in ("qwen2.5-0.5b", "llama-3.2-1b", "tiny"):
        assert name in known_models()
    assert get_model("tiny").param_count() < 1e6


def test_case_and_aliases() -> None:
    assert get_model("Qwen2.5-7B").name == "qwen2.5-7b"
    assert get_model("meta-llama/Llama-3.1-8B-Instruct").name == "llama-3.1-8b"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(BadInput) as err:
        get_model("qwen2.5-7B-typo")
    msg = str(err.value)
    assert "unknown model 'qwen2.5-7B-typo'" in msg
    for name in known_models():
        assert name in msg


def _write_config(path: Path, **over) -> Path:
    cfg = {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 32768,
        **over,
    }
    path.write_text(json.dumps(cfg))
    return path


def test_config_json_path_and_checkpoint_dir(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "config.json")
    by_file, by_dir = get_model(str(cfg)), get_model(str(tmp_path))
    registry = get_model("qwen2.5-7b")
    assert by_file.param_count() == by_dir.param_count() == registry.param_count()
    assert by_file.kv_bytes_per_token() == registry.kv_bytes_per_token()
    assert by_file.qkv_bias  # qwen2 has q/k/v biases by default
    assert by_file.extra["hf_config_path"] == str(cfg.resolve())


def test_config_json_missing_field(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(BadInput, match="lacks a field"):
        get_model(str(cfg))


def test_config_json_not_json(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text("{not json")
    with pytest.raises(BadInput, match="cannot read model config"):
        get_model(str(cfg))


def test_hf_config_builds_with_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    kw = get_model("qwen2.5-7b").hf_config()
    cfg = transformers.AutoConfig.for_model(kw.pop("model_type"), **kw)
    assert (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.vocab_size) == (28, 4, 152064)


@pytest.mark.parametrize("name", ["mistral-7b", "qwen2.5-7b", "llama-3.1-8b"])
def test_hf_config_attends_over_the_whole_context(name: str) -> None:
    """The study's checkpoints use full attention (Mistral-7B v0.3's config.json says
    "sliding_window": null; Qwen2.5-7B's says use_sliding_window: false), and the floor counts the
    whole KV cache. transformers' own MistralConfig defaults to a 4096-token window, so a random-
    weights Mistral built from bare shapes must say otherwise, or ctx >= 4096 reads a capped cache
    (and CUDA Graphs capture fails in the sliding-window cache)."""
    transformers = pytest.importorskip("transformers")
    kw = get_model(name).hf_config()
    cfg = transformers.AutoConfig.for_model(kw.pop("model_type"), **kw)
    assert getattr(cfg, "sliding_window", None) is None or not getattr(cfg, "use_sliding_window", True)
    if name == "mistral-7b":
        assert cfg.sliding_window is None
        assert transformers.AutoConfig.for_model("mistral").sliding_window == 4096  # why it is set
