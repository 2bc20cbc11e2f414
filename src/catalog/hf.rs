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

/// A parsed config.json and the file it came from, for errors that name both.
struct Config<'a> {
    v: Value,
    origin: &'a Path,
}

impl Config<'_> {
    /// A required positive integer field.
    fn get(&self, field: &str) -> Result<u32> {
        let value = self
            .v
            .get(field)
            .ok_or_else(|| Error::file(self.origin, format!("missing field `{field}`")))?;
        value
            .as_u64()
            .filter(|&x| x > 0 && x <= u64::from(u32::MAX))
            .map(|x| x as u32)
            .ok_or_else(|| {
                Error::file(
                    self.origin,
                    format!("field `{field}` must be a positive integer, got {value}"),
                )
            })
    }

    /// An optional positive integer field (absent or null: `None`).
    fn opt(&self, field: &str) -> Result<Option<u32>> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.get(field).map(Some),
        }
    }

    fn flag(&self, field: &str, default: bool) -> bool {
        self.v
            .get(field)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// `head_dim`, or `hidden_size / num_attention_heads` where the config leaves it out.
    fn head_dim(&self, hidden: u32, heads: u32) -> Result<u32> {
        if let Some(d) = self.opt("head_dim")? {
            return Ok(d);
        }
        if hidden % heads != 0 {
            return Err(Error::file(
                self.origin,
                "hidden_size is not a multiple of num_attention_heads and `head_dim` is missing",
            ));
        }
        Ok(hidden / heads)
    }
}

/// What a model family fixes that config.json does not say.
struct Family {
    mlp: MlpKind,
    norm: NormKind,
    norms_per_layer: u32,
    qkv_bias: bool,
    dense_bias: bool,
    tied_default: bool,
}

fn family(model_type: &str, c: &Config<'_>) -> Family {
    let (mlp, norm, norms_per_layer, qkv_bias, dense_bias, tied_default) = match model_type {
        "qwen2" => (MlpKind::GatedSilu, NormKind::Rms, 2, true, false, false),
        "phi" => (MlpKind::Gelu, NormKind::Layer, 1, true, true, false),
        "gemma2" => (
            MlpKind::GatedGelu,
            NormKind::Rms,
            4,
            c.flag("attention_bias", false),
            false,
            true,
        ),
        // llama, mistral, phi3
        _ => (
            MlpKind::GatedSilu,
            NormKind::Rms,
            2,
            c.flag("attention_bias", false),
            false,
            false,
        ),
    };
    Family {
        mlp,
        norm,
        norms_per_layer,
        qkv_bias,
        dense_bias,
        tied_default,
    }
}

fn parse_json(text: &str, origin: &Path) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
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
    })
}

/// Parse config.json text; `origin` names the file in errors.
pub fn from_json(text: &str, origin: &Path) -> Result<ModelArch> {
    let c = Config {
        v: parse_json(text, origin)?,
        origin,
    };
    let model_type =
        c.v.get("model_type")
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
    let f = family(model_type, &c);
    let hidden = c.get("hidden_size")?;
    let heads = c.get("num_attention_heads")?;
    let kv_heads = c.opt("num_key_value_heads")?.unwrap_or(heads);
    let head_dim = c.head_dim(hidden, heads)?;
    // The checkpoint's own name where the config carries it (`_name_or_path`, e.g.
    // "meta-llama/Llama-3.1-8B" → "Llama-3.1-8B"), else the folder it sits in.
    let own_name =
        c.v.get("_name_or_path")
            .and_then(Value::as_str)
            .and_then(|n| n.trim_end_matches('/').rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_string);
    let name = own_name
        .or_else(|| {
            origin
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().to_string())
        })
        .unwrap_or_else(|| "imported".to_string());
    let m = ModelArch {
        key: name,
        source: format!("imported from {}", origin.display()),
        layers: c.get("num_hidden_layers")?,
        hidden,
        intermediate: c.get("intermediate_size")?,
        heads,
        kv_heads,
        head_dim,
        vocab: c.get("vocab_size")?,
        tied_embeddings: c.flag("tie_word_embeddings", f.tied_default),
        max_context: c.get("max_position_embeddings")?,
        mlp: f.mlp,
        norm: f.norm,
        norms_per_layer: f.norms_per_layer,
        qkv_bias: f.qkv_bias,
        dense_bias: f.dense_bias,
        published_params: None,
    };
    m.validate(&origin.display().to_string())
        .map_err(Error::BadInput)?;
    Ok(m)
}
