//! Import a Hugging Face `config.json` into a [`ModelArch`].

use std::path::Path;

use serde_json::Value;

use super::model::{MlpKind, ModelArch, NormKind};
use super::moe::Moe;
use crate::error::{Error, Result};

/// Architectures (`model_type`) cardplan knows how to cost. `llama4` and `gemma3` are the
/// multimodal configs, read from their `text_config` (the vision encoder is not costed).
pub const SUPPORTED: [&str; 15] = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "phi",
    "phi3",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "gpt_oss",
    "llama4",
    "llama4_text",
];

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

    /// A required positive integer field under either of two names (configs disagree).
    fn either(&self, a: &str, b: &str) -> Result<u32> {
        match self.opt(a)? {
            Some(x) => Ok(x),
            None => self.get(b),
        }
    }

    /// An optional list of layer indexes (absent or null: empty).
    fn layer_list(&self, field: &str) -> Result<Vec<u32>> {
        let bad = || {
            Error::file(
                self.origin,
                format!("field `{field}` must be a list of layer indexes"),
            )
        };
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(xs)) => xs
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|x| u32::try_from(x).ok())
                        .ok_or_else(bad)
                })
                .collect(),
            Some(_) => Err(bad()),
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
#[derive(Clone, Copy)]
struct Family {
    mlp: MlpKind,
    norm: NormKind,
    norms_per_layer: u32,
    qkv_bias: bool,
    dense_bias: bool,
    tied_default: bool,
    qk_norm: bool,
    /// gpt-oss: bias on the attention output and one sink logit per head.
    o_bias_and_sinks: bool,
}

fn family(model_type: &str, c: &Config<'_>) -> Family {
    let attention_bias = c.flag("attention_bias", false);
    let base = Family {
        mlp: MlpKind::GatedSilu,
        norm: NormKind::Rms,
        norms_per_layer: 2,
        qkv_bias: attention_bias,
        dense_bias: false,
        tied_default: false,
        qk_norm: false,
        o_bias_and_sinks: false,
    };
    match model_type {
        "qwen2" | "qwen2_moe" => Family {
            qkv_bias: true,
            ..base
        },
        "qwen3" | "qwen3_moe" => Family {
            qk_norm: true,
            ..base
        },
        "phi" => Family {
            mlp: MlpKind::Gelu,
            norm: NormKind::Layer,
            norms_per_layer: 1,
            qkv_bias: true,
            dense_bias: true,
            ..base
        },
        "gemma2" | "gemma3" | "gemma3_text" => Family {
            mlp: MlpKind::GatedGelu,
            norms_per_layer: 4,
            tied_default: true,
            qk_norm: model_type != "gemma2",
            ..base
        },
        "gpt_oss" => Family {
            qkv_bias: attention_bias,
            o_bias_and_sinks: true,
            ..base
        },
        // llama, mistral, phi3, mixtral, llama4 (its q/k norm has no weights)
        _ => base,
    }
}

/// The `moe:` block a MoE config implies (`None` for a dense architecture).
fn moe_block(model_type: &str, c: &Config<'_>) -> Result<Option<Moe>> {
    let base = |experts, top_k, expert_intermediate| Moe {
        experts,
        top_k,
        expert_intermediate,
        shared_experts: 0,
        shared_intermediate: 0,
        shared_gate: false,
        expert_bias: false,
        router_bias: false,
        step: 1,
        dense_layers: Vec::new(),
        expert_weight_bits: None,
        expert_format: None,
    };
    let moe = match model_type {
        "mixtral" => base(
            c.get("num_local_experts")?,
            c.get("num_experts_per_tok")?,
            c.get("intermediate_size")?,
        ),
        "qwen2_moe" | "qwen3_moe" => {
            let shared = c.opt("shared_expert_intermediate_size")?;
            Moe {
                shared_experts: u32::from(shared.is_some()),
                shared_intermediate: shared.unwrap_or(0),
                shared_gate: shared.is_some(),
                step: c.opt("decoder_sparse_step")?.unwrap_or(1),
                dense_layers: c.layer_list("mlp_only_layers")?,
                ..base(
                    c.get("num_experts")?,
                    c.get("num_experts_per_tok")?,
                    c.get("moe_intermediate_size")?,
                )
            }
        }
        "gpt_oss" => {
            let quant =
                c.v.get("quantization_config")
                    .and_then(|q| q.get("quant_method"));
            let mxfp4 = quant.and_then(Value::as_str) == Some("mxfp4");
            Moe {
                expert_bias: true,
                router_bias: true,
                expert_format: mxfp4.then_some(super::moe::ExpertFormat::Mxfp4),
                ..base(
                    c.get("num_local_experts")?,
                    c.either("num_experts_per_tok", "experts_per_token")?,
                    c.get("intermediate_size")?,
                )
            }
        }
        "llama4" | "llama4_text" => {
            let expert = c.get("intermediate_size")?;
            Moe {
                shared_experts: 1,
                shared_intermediate: expert,
                step: c.opt("interleave_moe_layer_step")?.unwrap_or(1),
                ..base(
                    c.get("num_local_experts")?,
                    c.get("num_experts_per_tok")?,
                    expert,
                )
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(moe))
}

/// Width of the dense MLP (Llama 4 names it apart from the experts' `intermediate_size`).
fn dense_intermediate(model_type: &str, c: &Config<'_>) -> Result<u32> {
    match model_type {
        "llama4" | "llama4_text" => c.get("intermediate_size_mlp"),
        _ => c.get("intermediate_size"),
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
    let top = parse_json(text, origin)?;
    let model_type = top
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
    let model_type = model_type.to_string();
    let name = checkpoint_name(&top, origin);
    // multimodal configs keep the decoder's numbers under `text_config`
    let v = match model_type.as_str() {
        "llama4" | "gemma3" => match top.get("text_config") {
            Some(t @ Value::Object(_)) => t.clone(),
            _ => {
                return Err(Error::file(
                    origin,
                    format!("missing object `text_config` ({model_type} keeps the decoder there)"),
                ));
            }
        },
        _ => top,
    };
    let c = Config { v, origin };
    let m = arch(&model_type, &c, name)?;
    m.validate(&origin.display().to_string())
        .map_err(Error::BadInput)?;
    Ok(m)
}

/// The checkpoint's own name where the config carries it (`_name_or_path`, e.g.
/// "meta-llama/Llama-3.1-8B" → "Llama-3.1-8B"), else the folder it sits in.
fn checkpoint_name(top: &Value, origin: &Path) -> String {
    let own_name = top
        .get("_name_or_path")
        .and_then(Value::as_str)
        .and_then(|n| n.trim_end_matches('/').rsplit('/').next())
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    own_name
        .or_else(|| {
            origin
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().to_string())
        })
        .unwrap_or_else(|| "imported".to_string())
}

/// The architecture from the decoder's config fields.
fn arch(model_type: &str, c: &Config<'_>, name: String) -> Result<ModelArch> {
    let f = family(model_type, c);
    let hidden = c.get("hidden_size")?;
    let heads = c.get("num_attention_heads")?;
    let kv_heads = c.opt("num_key_value_heads")?.unwrap_or(heads);
    let head_dim = c.head_dim(hidden, heads)?;
    Ok(ModelArch {
        key: name,
        source: format!("imported from {}", c.origin.display()),
        layers: c.get("num_hidden_layers")?,
        hidden,
        intermediate: dense_intermediate(model_type, c)?,
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
        qk_norm: f.qk_norm,
        o_bias: f.o_bias_and_sinks,
        attention_sinks: f.o_bias_and_sinks,
        moe: moe_block(model_type, c)?,
        published_params: None,
        published_unmodeled_params: 0,
        published_active_params: None,
        published_active_excludes_embedding: false,
    })
}
