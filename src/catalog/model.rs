//! Transformer architectures: the handful of numbers that decide weight bytes, KV bytes and the
//! shapes of every matrix multiply in a forward pass.

use serde::{Deserialize, Serialize};

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
    /// Parameter count published by the model's authors, checked against the architecture.
    #[serde(default)]
    pub published_params: Option<u64>,
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
    /// Weights of the per-layer linear layers: what int8/NF4 quantize.
    pub linear: u64,
    /// Token embedding (and the LM head when untied): kept in 16 bits by the libraries.
    pub embedding: u64,
    /// Untied LM head weights (kept in 16 bits).
    pub lm_head: u64,
    /// Norm weights and biases: always 16 bits.
    pub small: u64,
}

impl ParamSplit {
    pub fn total(&self) -> u64 {
        self.linear + self.embedding + self.lm_head + self.small
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

    /// The linear layers of one decoder layer, fused the way vLLM fuses them.
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
        ParamSplit {
            linear: linear_per_layer * layers,
            embedding: vocab * h,
            lm_head: if self.tied_embeddings { 0 } else { vocab * h },
            small: small_per_layer * layers + final_norm + lm_head_bias,
        }
    }

    fn norm_params_factor(&self) -> u64 {
        match self.norm {
            NormKind::Rms => 1,
            NormKind::Layer => 2,
        }
    }

    /// FLOPs of the linear layers (all decoder layers) per token: 2 × linear params.
    pub fn linear_flops_per_token(&self) -> f64 {
        2.0 * self.params().linear as f64
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
        Ok(())
    }
}
