//! The quantization a Hugging Face checkpoint was saved in, read from its config.json's
//! `quantization_config`, so `--model path/to/config.json` prices the checkpoint as it is stored.
//! Only the layouts cardplan can price exactly are accepted; anything else is an error naming the
//! field, never a silent fp16.

use std::path::Path;

use serde_json::{Map, Value};

use super::quant::{INT4_GROUP, Quant};
use crate::error::{Error, Result};

/// `quant_method` values understood, for the error on any other.
pub const METHODS: [&str; 6] = [
    "fp8",
    "compressed-tensors",
    "awq",
    "gptq",
    "bitsandbytes",
    "mxfp4",
];

/// The scheme a checkpoint's `quantization_config` asks for, and what it said, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointQuant {
    pub quant: Quant,
    /// e.g. "awq, 4 bits, group 128, zero points".
    pub summary: String,
}

/// The checkpoint quantization of `--model ARG` when ARG is a config.json; `None` for catalog
/// keys, YAML files and unquantized checkpoints.
pub fn for_model_arg(arg: &str) -> Result<Option<CheckpointQuant>> {
    if !arg.ends_with(".json") {
        return Ok(None);
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
    from_config(&v, path)
}

/// `quantization_config` of a parsed config.json (`origin` names the file in errors).
pub fn from_config(config: &Value, origin: &Path) -> Result<Option<CheckpointQuant>> {
    let q = match config.get("quantization_config") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => Fields {
            m,
            origin,
            prefix: "quantization_config".into(),
        },
        Some(other) => {
            return Err(Error::file(
                origin,
                format!("field `quantization_config` must be an object, got {other}"),
            ));
        }
    };
    let method = q.str("quant_method")?;
    let (quant, summary) = match method {
        "fp8" => fp8(&q)?,
        "compressed-tensors" => compressed_tensors(&q)?,
        "awq" => int4(&q, Quant::Int4, "awq")?,
        "gptq" => int4(&q, Quant::Int4Gptq, "gptq")?,
        "bitsandbytes" => bitsandbytes(&q)?,
        "mxfp4" => mxfp4(config, &q)?,
        other => {
            return Err(q.bad(
                "quant_method",
                format!(
                    "'{other}' is not supported (supported: {}); pass --quant to price the model \
                     in one of cardplan's schemes instead",
                    METHODS.join(", ")
                ),
            ));
        }
    };
    Ok(Some(CheckpointQuant { quant, summary }))
}

/// `quant_method: mxfp4` (gpt-oss): the routed experts in MXFP4, which the model import
/// records on the model (`moe.expert_format`); every other layer (attention, router,
/// embeddings, LM head: `modules_to_not_convert`) stays in bf16, so the scheme is fp16.
fn mxfp4(config: &Value, q: &Fields<'_>) -> Result<(Quant, String)> {
    let model_type = config.get("model_type").and_then(Value::as_str);
    if model_type != Some("gpt_oss") {
        return Err(q.bad(
            "quant_method",
            format!(
                "'mxfp4' is read for gpt-oss's routed experts only (model_type gpt_oss), not for \
                 model_type {}",
                model_type.unwrap_or("(missing)")
            ),
        ));
    }
    match q.get("modules_to_not_convert") {
        None | Some(Value::Array(_)) => {}
        Some(v) => return Err(q.bad("modules_to_not_convert", format!("must be a list, got {v}"))),
    }
    Ok((
        Quant::Fp16,
        "mxfp4: routed experts in MXFP4 (4-bit e2m1 values, one e8m0 scale per 32: 4.25 bits), \
         attention, router, embeddings and LM head in bf16"
            .into(),
    ))
}

/// One JSON object of the config and its dotted path, for errors that name the exact field.
struct Fields<'a> {
    m: &'a Map<String, Value>,
    origin: &'a Path,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn bad(&self, field: &str, why: impl std::fmt::Display) -> Error {
        Error::file(
            self.origin,
            format!("field `{}.{field}`: {why}", self.prefix),
        )
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.m.get(field).filter(|v| !v.is_null())
    }

    fn str(&self, field: &str) -> Result<&'a str> {
        match self.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.bad(field, format!("must be a string, got {v}"))),
            None => Err(self.bad(field, "missing")),
        }
    }

    fn opt_u64(&self, field: &str) -> Result<Option<u64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(field, format!("must be a non-negative integer, got {v}"))),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(field, format!("must be true or false, got {v}"))),
        }
    }

    fn object(&self, field: &str) -> Result<Option<Fields<'a>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Fields {
                m,
                origin: self.origin,
                prefix: format!("{}.{field}", self.prefix),
            })),
            Some(v) => Err(self.bad(field, format!("must be an object, got {v}"))),
        }
    }

    /// `field` must equal `want` when present.
    fn expect_u64(&self, field: &str, want: u64, why: &str) -> Result<()> {
        match self.opt_u64(field)? {
            Some(v) if v != want => Err(self.bad(field, format!("{v} is not supported ({why})"))),
            _ => Ok(()),
        }
    }
}

/// `quant_method: fp8` (vLLM / transformers FP8): per-tensor e4m3 weights; block-wise scales
/// (`weight_block_size`, DeepSeek-style) are another layout.
fn fp8(q: &Fields<'_>) -> Result<(Quant, String)> {
    if q.get("weight_block_size").is_some() {
        return Err(q.bad(
            "weight_block_size",
            "block-wise FP8 scales are not a cardplan scheme (fp8: per-channel, fp8-tensor: per-tensor)",
        ));
    }
    if let Some(fmt) = q.get("fmt") {
        if fmt.as_str() != Some("e4m3") {
            return Err(q.bad("fmt", format!("{fmt} is not supported (e4m3 only)")));
        }
    }
    let act = match q.get("activation_scheme") {
        None => "dynamic".to_string(),
        Some(Value::String(s)) if s == "static" || s == "dynamic" => s.clone(),
        Some(v) => {
            return Err(q.bad(
                "activation_scheme",
                format!("must be static or dynamic, got {v}"),
            ));
        }
    };
    Ok((
        Quant::Fp8Tensor,
        format!("fp8, e4m3, per-tensor weight scales, {act} activation scales"),
    ))
}

/// compressed-tensors (llm-compressor): one config group, read from its weights and
/// input_activations schemes.
fn compressed_tensors(q: &Fields<'_>) -> Result<(Quant, String)> {
    let groups = q
        .object("config_groups")?
        .ok_or_else(|| q.bad("config_groups", "missing"))?;
    let mut names = groups.m.keys();
    let (Some(name), None) = (names.next(), names.next()) else {
        return Err(q.bad(
            "config_groups",
            format!(
                "{} groups; cardplan prices one scheme for every linear layer (exactly one group)",
                groups.m.len()
            ),
        ));
    };
    let group = groups
        .object(name)?
        .ok_or_else(|| groups.bad(name, "must be an object"))?;
    let w = group
        .object("weights")?
        .ok_or_else(|| group.bad("weights", "missing"))?;
    let acts = group.object("input_activations")?;
    let bits = w
        .opt_u64("num_bits")?
        .ok_or_else(|| w.bad("num_bits", "missing"))?;
    let kind = w.str("type")?;
    match (kind, bits, acts) {
        ("float", 8, Some(a)) => ct_fp8(&w, &a),
        ("float", 8, None) => Err(group.bad(
            "input_activations",
            "missing: weight-only FP8 is not a cardplan scheme (fp8 and fp8-tensor are W8A8)",
        )),
        ("int", 4, None) => ct_int4(&w),
        ("int", 8, Some(a)) => {
            a.expect_u64("num_bits", 8, "W8A8 quantizes activations to 8 bits")?;
            Ok((
                Quant::Int8,
                "compressed-tensors int-quantized, W8A8 int8".into(),
            ))
        }
        ("int", 4, Some(_)) => Err(group.bad(
            "input_activations",
            "W4A8 is not a cardplan scheme (int4 is W4A16: no activation quantization)",
        )),
        ("float", _, _) | ("int", _, _) => Err(w.bad(
            "num_bits",
            format!("{bits} is not supported for type {kind} (float: 8; int: 4 or 8)"),
        )),
        (other, _, _) => Err(w.bad("type", format!("'{other}' is not supported (float or int)"))),
    }
}

/// compressed-tensors FP8 W8A8: per-channel weights are `fp8`, per-tensor ones `fp8-tensor`.
fn ct_fp8(w: &Fields<'_>, a: &Fields<'_>) -> Result<(Quant, String)> {
    a.expect_u64("num_bits", 8, "FP8 W8A8 quantizes activations to 8 bits")?;
    let a_strategy = a.str("strategy")?;
    let strategy = w.str("strategy")?;
    let quant = match strategy {
        "channel" => Quant::Fp8,
        "tensor" => Quant::Fp8Tensor,
        other => {
            return Err(w.bad(
                "strategy",
                format!("'{other}' is not supported for FP8 (channel or tensor)"),
            ));
        }
    };
    Ok((
        quant,
        format!(
            "compressed-tensors float-quantized, e4m3 weights per {strategy}, activations per {a_strategy}"
        ),
    ))
}

/// compressed-tensors W4A16 (pack-quantized, group 128): symmetric is GPTQ's grid (priced with
/// the `int4-gptq` layout's bytes), with zero points AWQ's (`int4`).
fn ct_int4(w: &Fields<'_>) -> Result<(Quant, String)> {
    let strategy = w.str("strategy")?;
    if strategy != "group" {
        return Err(w.bad(
            "strategy",
            format!("'{strategy}' is not supported for int4 (group)"),
        ));
    }
    w.expect_u64("group_size", INT4_GROUP, "int4 is priced at group 128")?;
    let symmetric = w.opt_bool("symmetric")?.unwrap_or(true);
    let quant = if symmetric {
        Quant::Int4Gptq
    } else {
        Quant::Int4
    };
    Ok((
        quant,
        format!(
            "compressed-tensors pack-quantized, int4 group 128, {}",
            if symmetric {
                "symmetric"
            } else {
                "zero points"
            }
        ),
    ))
}

/// AWQ / GPTQ: 4 bits, group 128 (what cardplan prices); GPTQ's act-order keeps the same bytes.
fn int4(q: &Fields<'_>, quant: Quant, method: &str) -> Result<(Quant, String)> {
    let bits = q.opt_u64("bits")?.or(q.opt_u64("w_bit")?);
    match bits {
        Some(4) => {}
        Some(b) => {
            return Err(q.bad(
                "bits",
                format!("{b} is not supported ({method}: 4 bits only)"),
            ));
        }
        None => return Err(q.bad("bits", "missing")),
    }
    let group = q.opt_u64("group_size")?.or(q.opt_u64("q_group_size")?);
    match group {
        Some(128) => {}
        Some(g) => {
            return Err(q.bad(
                "group_size",
                format!("{g} is not supported (int4 is priced at group 128)"),
            ));
        }
        None => return Err(q.bad("group_size", "missing")),
    }
    if method == "awq" && q.opt_bool("zero_point")? == Some(false) {
        return Err(q.bad(
            "zero_point",
            "false is not supported (AWQ stores zero points)",
        ));
    }
    Ok((quant, format!("{method}, 4 bits, group 128")))
}

/// bitsandbytes: `load_in_4bit` with NF4 → nf4, `load_in_8bit` → llm-int8.
fn bitsandbytes(q: &Fields<'_>) -> Result<(Quant, String)> {
    let four = q.opt_bool("load_in_4bit")?.unwrap_or(false);
    let eight = q.opt_bool("load_in_8bit")?.unwrap_or(false);
    match (four, eight) {
        (true, false) => {
            let kind = q
                .get("bnb_4bit_quant_type")
                .and_then(Value::as_str)
                .unwrap_or("fp4");
            if kind != "nf4" {
                return Err(q.bad(
                    "bnb_4bit_quant_type",
                    format!("'{kind}' is not supported (nf4 only; bitsandbytes' default is fp4)"),
                ));
            }
            Ok((Quant::Nf4, "bitsandbytes load_in_4bit, nf4".into()))
        }
        (false, true) => {
            if let Some(t) = q.get("llm_int8_threshold").and_then(Value::as_f64) {
                if t != 6.0 {
                    return Err(q.bad(
                        "llm_int8_threshold",
                        format!("{t} is not supported (llm-int8 is measured at bitsandbytes' 6.0)"),
                    ));
                }
            }
            Ok((
                Quant::LlmInt8,
                "bitsandbytes load_in_8bit, LLM.int8() threshold 6.0".into(),
            ))
        }
        (true, true) => Err(q.bad(
            "load_in_8bit",
            "load_in_4bit and load_in_8bit are both true",
        )),
        (false, false) => Err(q.bad(
            "load_in_4bit",
            "neither load_in_4bit nor load_in_8bit is true",
        )),
    }
}
