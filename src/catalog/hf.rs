//! Import a Hugging Face `config.json` into a [`ModelArch`].

use std::path::Path;

use serde_json::Value;

use super::model::{MlpKind, ModelArch, NormKind};
use crate::error::{Error, Result};

/// Architectures (`model_type`) cardplan knows how to cost.
pub const SUPPORTED: [&str; 6] = ["llama", "mistral", "qwen2", "phi", "phi3", "gemma2"];

/// Read `path` as a Hugging Face `config.json`.
pub fn import(path: &Path) -> Result<ModelArch> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    from_json(&text, path)
}

/// Parse config.json text; `origin` names the file in errors.
pub fn from_json(text: &str, origin: &Path) -> Result<ModelArch> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let reason = full
            .rsplit_once(" at line ")
            .map_or(full.as_str(), |(r, _)| r);
        Error::file_at(
            origin,
            e.line(),
            e.column(),
            format!("invalid JSON: {reason}"),
        )
    })?;
    let model_type = v
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::file(origin, "missing field `model_type`"))?;
    if !SUPPORTED.contains(&model_type) {
        return Err(Error::file(
            origin,
            format!(
                "unsupported architecture '{model_type}' (supported: {})",
                SUPPORTED.join(", ")
            ),
        ));
    }
    let get = |field: &str| -> Result<u32> {
        let value = v
            .get(field)
            .ok_or_else(|| Error::file(origin, format!("missing field `{field}`")))?;
        value
            .as_u64()
            .filter(|&x| x > 0 && x <= u64::from(u32::MAX))
            .map(|x| x as u32)
            .ok_or_else(|| {
                Error::file(
                    origin,
                    format!("field `{field}` must be a positive integer, got {value}"),
                )
            })
    };
    let opt = |field: &str| -> Result<Option<u32>> {
        match v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => get(field).map(Some),
        }
    };
    let flag =
        |field: &str, default: bool| v.get(field).and_then(Value::as_bool).unwrap_or(default);

    let hidden = get("hidden_size")?;
    let heads = get("num_attention_heads")?;
    let kv_heads = opt("num_key_value_heads")?.unwrap_or(heads);
    let head_dim = match opt("head_dim")? {
        Some(d) => d,
        None => {
            if hidden % heads != 0 {
                return Err(Error::file(
                    origin,
                    "hidden_size is not a multiple of num_attention_heads and `head_dim` is missing",
                ));
            }
            hidden / heads
        }
    };
    let (mlp, norm, norms_per_layer, qkv_bias, dense_bias, tied_default) = match model_type {
        "qwen2" => (MlpKind::GatedSilu, NormKind::Rms, 2, true, false, false),
        "phi" => (MlpKind::Gelu, NormKind::Layer, 1, true, true, false),
        "gemma2" => (
            MlpKind::GatedGelu,
            NormKind::Rms,
            4,
            flag("attention_bias", false),
            false,
            true,
        ),
        // llama, mistral, phi3
        _ => (
            MlpKind::GatedSilu,
            NormKind::Rms,
            2,
            flag("attention_bias", false),
            false,
            false,
        ),
    };
    let name = origin
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "imported".to_string());
    let m = ModelArch {
        key: name,
        source: format!("imported from {}", origin.display()),
        layers: get("num_hidden_layers")?,
        hidden,
        intermediate: get("intermediate_size")?,
        heads,
        kv_heads,
        head_dim,
        vocab: get("vocab_size")?,
        tied_embeddings: flag("tie_word_embeddings", tied_default),
        max_context: get("max_position_embeddings")?,
        mlp,
        norm,
        norms_per_layer,
        qkv_bias,
        dense_bias,
        published_params: None,
    };
    m.validate(&origin.display().to_string())
        .map_err(Error::BadInput)?;
    Ok(m)
}
