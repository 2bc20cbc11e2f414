//! Transformer architectures: the handful of numbers that decide weight bytes, KV bytes and the
//! shapes of every matrix multiply in a forward pass.

use serde::{Deserialize, Serialize};

use super::moe::Moe;

/// Which feed-forward block the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MlpKind {
    /// `down(silu(gate(x)) * up(x))`: Llama, Mistral, Qwen2, Phi-3/4.
    GatedSilu,
    /// `down(gelu(gate(x)) * up(x))`: Gemma 2.
    GatedGelu,
    /// `fc2(gelu(fc1(x)))`: Phi-2, GPT-style.
    Gelu,
}

/// Which normalisation layer the model uses (LayerNorm carries a bias, RMSNorm does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    Rms,
    Layer,
}

/// A decoder-only transformer, as its published `config.json` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArch {
    /// Catalog key, e.g. `llama-3.1-8b`.
    pub key: String,
    /// Hugging Face repository the numbers come from.
    pub source: String,
    pub layers: u32,
    pub hidden: u32,
    pub intermediate: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub tied_embeddings: bool,
    pub max_context: u32,
    pub mlp: MlpKind,
    #[serde(default = "default_norm")]
    pub norm: NormKind,
    /// Norm layers per decoder layer (2 for Llama, 4 for Gemma 2, 1 for Phi-2's parallel block).
    #[serde(default = "default_norms_per_layer")]
    pub norms_per_layer: u32,
    /// Bias on the q, k, v projections (Qwen2, Phi-2).
    #[serde(default)]
    pub qkv_bias: bool,
    /// Bias on the attention output, MLP projections and LM head (Phi-2).
    #[serde(default)]
    pub dense_bias: bool,
    /// RMSNorm weights (one per head dim) on q and on k in every layer (Qwen3, Gemma 3).
    #[serde(default)]
    pub qk_norm: bool,
    /// Bias on the attention output alone (gpt-oss: `attention_bias` covers q, k, v and o).
    #[serde(default)]
    pub o_bias: bool,
    /// One learned sink logit per head in every layer (gpt-oss).
    #[serde(default)]
    pub attention_sinks: bool,
    /// Mixture-of-experts feed-forward block; absent for a dense model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<Moe>,
    /// Parameter count published by the model's authors, checked against the architecture. Given
    /// to the digit where the authors (or the checkpoint's tensors) give one; a figure rounded to
    /// `d` digits (e.g. 116 830 000 000) is checked to within one unit of its last digit.
    #[serde(default)]
    pub published_params: Option<u64>,
    /// Parameters the published count includes that the text decoder does not have (a vision
    /// encoder and its projector): the published count is `params().total()` plus these.
    #[serde(default)]
    pub published_unmodeled_params: u64,
    /// Active parameters per token published by the authors (MoE), checked like
    /// `published_params` against [`ModelArch::active_params`].
    #[serde(default)]
    pub published_active_params: Option<u64>,
    /// The published active count leaves out the input embedding (OpenAI's convention for
    /// gpt-oss: a token reads one row of it, not the matrix).
    #[serde(default)]
    pub published_active_excludes_embedding: bool,
}

fn default_norm() -> NormKind {
    NormKind::Rms
}

fn default_norms_per_layer() -> u32 {
    2
}

/// One linear layer of a decoder layer, as serving engines run it (q/k/v fused, gate/up fused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub name: &'static str,
    /// Output features.
    pub n: u32,
    /// Input features.
    pub k: u32,
}

/// Parameter counts split by how quantization treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamSplit {
    /// Weights of the linear layers other than routed experts: what int8/NF4 quantize.
    pub linear: u64,
    /// Routed expert weights of a MoE model, every expert (0 for a dense model).
    pub experts: u64,
    /// Token embedding (and the LM head when untied): kept in 16 bits by the libraries.
    pub embedding: u64,
    /// Untied LM head weights (kept in 16 bits).
    pub lm_head: u64,
    /// Norm weights and biases: always 16 bits.
    pub small: u64,
}

impl ParamSplit {
    pub fn total(&self) -> u64 {
        self.linear + self.experts + self.embedding + self.lm_head + self.small
    }
}

impl ModelArch {
    /// Width of the attention output (`heads × head_dim`), which need not equal `hidden` (Gemma 2).
    pub fn q_width(&self) -> u64 {
        u64::from(self.heads) * u64::from(self.head_dim)
    }

    /// Width of one of K or V (`kv_heads × head_dim`).
    pub fn kv_width(&self) -> u64 {
        u64::from(self.kv_heads) * u64::from(self.head_dim)
    }

    /// The linear layers present in every decoder layer, fused the way vLLM fuses them: attention
    /// and the MLP of a dense model; attention alone for a MoE model, whose feed-forward
    /// linears (routed and shared experts, router, dense layers) are in [`super::moe`].
    pub fn linears(&self) -> Vec<Linear> {
        let h = self.hidden;
        let qkv = (self.q_width() + 2 * self.kv_width()) as u32;
        let o_in = self.q_width() as u32;
        let mut v = vec![
            Linear {
                name: "qkv_proj",
                n: qkv,
                k: h,
            },
            Linear {
                name: "o_proj",
                n: h,
                k: o_in,
            },
        ];
        if self.moe.is_some() {
            return v;
        }
        match self.mlp {
            MlpKind::GatedSilu | MlpKind::GatedGelu => {
                v.push(Linear {
                    name: "gate_up_proj",
                    n: 2 * self.intermediate,
                    k: h,
                });
                v.push(Linear {
                    name: "down_proj",
                    n: h,
                    k: self.intermediate,
                });
            }
            MlpKind::Gelu => {
                v.push(Linear {
                    name: "fc1",
                    n: self.intermediate,
                    k: h,
                });
                v.push(Linear {
                    name: "fc2",
                    n: h,
                    k: self.intermediate,
                });
            }
        }
        v
    }

    /// Parameters split by class; `total()` matches the published count.
    pub fn params(&self) -> ParamSplit {
        let h = u64::from(self.hidden);
        let inter = u64::from(self.intermediate);
        let layers = u64::from(self.layers);
        let vocab = u64::from(self.vocab);
        let linear_per_layer: u64 = self
            .linears()
            .iter()
            .map(|l| u64::from(l.n) * u64::from(l.k))
            .sum();
        let mut small_per_layer = u64::from(self.norms_per_layer) * h * self.norm_params_factor();
        if self.qkv_bias {
            small_per_layer += self.q_width() + 2 * self.kv_width();
        }
        if self.qk_norm {
            small_per_layer += 2 * u64::from(self.head_dim);
        }
        if self.o_bias {
            small_per_layer += h;
        }
        if self.attention_sinks {
            small_per_layer += u64::from(self.heads);
        }
        if self.dense_bias {
            small_per_layer += h; // attention output
            small_per_layer += match self.mlp {
                MlpKind::Gelu => inter + h,
                MlpKind::GatedSilu | MlpKind::GatedGelu => 2 * inter + h,
            };
        }
        let final_norm = h * self.norm_params_factor();
        let lm_head_bias = if self.dense_bias && !self.tied_embeddings {
            vocab
        } else {
            0
        };
        let moe = self.moe_params();
        ParamSplit {
            linear: linear_per_layer * layers + moe.linear,
            experts: moe.experts,
            embedding: vocab * h,
            lm_head: if self.tied_embeddings { 0 } else { vocab * h },
            small: small_per_layer * layers + final_norm + lm_head_bias + moe.bias,
        }
    }

    fn norm_params_factor(&self) -> u64 {
        match self.norm {
            NormKind::Rms => 1,
            NormKind::Layer => 2,
        }
    }

    /// FLOPs of the linear layers (all decoder layers) per token: 2 × the linear params a token
    /// multiplies by (its routed experts only, for a MoE model).
    pub fn linear_flops_per_token(&self) -> f64 {
        2.0 * (self.params().linear + self.moe_params().active_experts) as f64
    }

    /// Width of the MLP intermediate activations of one token: `intermediate` for a dense model;
    /// for a MoE model its routed and shared experts' widths (or the dense layers', if wider).
    pub fn mlp_width_per_token(&self) -> u64 {
        let dense = u64::from(self.intermediate);
        match &self.moe {
            None => dense,
            Some(m) if self.moe_layers() < self.layers => m.active_width().max(dense),
            Some(m) => m.active_width(),
        }
    }

    /// Check the numbers make sense; `origin` names the file for the error.
    pub fn validate(&self, origin: &str) -> Result<(), String> {
        let fields = [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("intermediate", self.intermediate),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("vocab", self.vocab),
            ("max_context", self.max_context),
        ];
        for (name, value) in fields {
            if value == 0 {
                return Err(format!("{origin}: `{name}` must be positive"));
            }
        }
        if self.heads % self.kv_heads != 0 {
            return Err(format!(
                "{origin}: heads ({}) must be a multiple of kv_heads ({})",
                self.heads, self.kv_heads
            ));
        }
        if self.hidden > 1 << 20 || self.layers > 1024 || self.vocab > 1 << 24 {
            return Err(format!("{origin}: implausibly large architecture"));
        }
        if let Some(m) = &self.moe {
            if self.mlp == MlpKind::Gelu {
                return Err(format!(
                    "{origin}: `moe` needs a gated MLP (`mlp: gated-silu` or `gated-gelu`)"
                ));
            }
            m.validate(origin, self.layers)?;
        }
        Ok(())
    }
}
