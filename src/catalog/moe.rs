//! Mixture-of-experts feed-forward blocks: a router picks `top_k` of `experts` gated MLPs per
//! token, optionally beside shared experts every token passes through.
//!
//! Memory holds every expert; a token's forward pass multiplies only by the ones it is routed to.
//! So a MoE model has two sizes that matter: total parameters (memory) and active parameters
//! (weights read per token at small batch, FLOPs per token at any batch).

use serde::{Deserialize, Serialize};

use super::model::{Linear, ModelArch};
use super::quant::Quant;

/// The `moe:` block of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moe {
    /// Routed experts per MoE layer (`E`).
    pub experts: u32,
    /// Experts each token is routed to (`k`).
    pub top_k: u32,
    /// Intermediate width of one routed expert (a gated MLP: gate, up, down).
    pub expert_intermediate: u32,
    /// Shared experts every token passes through (Llama 4: 1, Qwen2-MoE: 1, Mixtral: 0).
    #[serde(default)]
    pub shared_experts: u32,
    /// Intermediate width of one shared expert.
    #[serde(default)]
    pub shared_intermediate: u32,
    /// A `hidden × 1` sigmoid gate on the shared experts' output (Qwen2-MoE).
    #[serde(default)]
    pub shared_gate: bool,
    /// Bias on every routed expert's projections (gpt-oss).
    #[serde(default)]
    pub expert_bias: bool,
    /// Bias on the router (gpt-oss).
    #[serde(default)]
    pub router_bias: bool,
    /// Every `step`-th layer is MoE (layer `i` when `(i + 1) % step == 0`, as Qwen's
    /// `decoder_sparse_step` and Llama 4's `interleave_moe_layer_step` count); the others run the
    /// dense MLP of width `intermediate`. 1: every layer.
    #[serde(default = "one")]
    pub step: u32,
    /// Layers forced dense by index (Qwen's `mlp_only_layers`).
    #[serde(default)]
    pub dense_layers: Vec<u32>,
    /// Bits per routed-expert weight as the checkpoint ships them, scales included, when the
    /// checkpoint fixes them whatever the scheme (gpt-oss: MXFP4, 4-bit e2m1 values and one
    /// 8-bit scale per 32 = 4.25). Absent: experts are stored in the chosen scheme.
    #[serde(default)]
    pub expert_weight_bits: Option<f64>,
    /// The format the checkpoint stores its routed experts in, whatever the scheme (gpt-oss:
    /// `mxfp4`): sets their exact bytes and how they are multiplied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert_format: Option<ExpertFormat>,
}

/// A storage format a checkpoint fixes for its routed experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpertFormat {
    /// OCP MXFP4: 4-bit e2m1 values with an e8m0 scale per 32 ([`super::mxfp4`]).
    Mxfp4,
}

impl ExpertFormat {
    pub fn key(self) -> &'static str {
        match self {
            ExpertFormat::Mxfp4 => "mxfp4",
        }
    }

    /// Bits a weight, scales included.
    pub fn bits(self) -> f64 {
        match self {
            ExpertFormat::Mxfp4 => super::mxfp4::BITS,
        }
    }

    /// Exact bytes of one `n × k` expert weight.
    pub fn bytes(self, n: u64, k: u64) -> u64 {
        match self {
            ExpertFormat::Mxfp4 => super::mxfp4::bytes(n, k),
        }
    }
}

fn one() -> u32 {
    1
}

impl Moe {
    /// Check the block; `origin` names the file.
    pub fn validate(&self, origin: &str, layers: u32) -> Result<(), String> {
        if self.experts == 0 || self.top_k == 0 || self.expert_intermediate == 0 {
            return Err(format!(
                "{origin}: `moe.experts`, `moe.top_k` and `moe.expert_intermediate` must be positive"
            ));
        }
        if self.top_k > self.experts {
            return Err(format!(
                "{origin}: `moe.top_k` ({}) exceeds `moe.experts` ({})",
                self.top_k, self.experts
            ));
        }
        if self.experts > 1 << 14 {
            return Err(format!(
                "{origin}: implausibly many experts ({})",
                self.experts
            ));
        }
        if (self.shared_experts == 0) != (self.shared_intermediate == 0) {
            return Err(format!(
                "{origin}: `moe.shared_experts` and `moe.shared_intermediate` must both be set or both be 0"
            ));
        }
        if self.step == 0 {
            return Err(format!("{origin}: `moe.step` must be positive"));
        }
        if let Some(&l) = self.dense_layers.iter().find(|&&l| l >= layers) {
            return Err(format!(
                "{origin}: `moe.dense_layers` names layer {l}, but the model has {layers}"
            ));
        }
        if let Some(b) = self.expert_weight_bits {
            if !(b.is_finite() && b > 0.0 && b <= 32.0) {
                return Err(format!(
                    "{origin}: `moe.expert_weight_bits` must be in (0, 32], got {b}"
                ));
            }
            if let Some(f) = self.expert_format
                && f.bits() != b
            {
                return Err(format!(
                    "{origin}: `moe.expert_weight_bits` ({b}) contradicts `moe.expert_format` ({}, {} bits); give one",
                    f.key(),
                    f.bits()
                ));
            }
        }
        Ok(())
    }

    /// Bits a routed-expert weight takes where the checkpoint fixes them (its format's, else
    /// `expert_weight_bits`); `None`: the experts follow the scheme.
    pub fn expert_bits(&self) -> Option<f64> {
        self.expert_format
            .map(ExpertFormat::bits)
            .or(self.expert_weight_bits)
    }

    /// Number of MoE layers among `layers`.
    pub fn moe_layers(&self, layers: u32) -> u32 {
        (0..layers)
            .filter(|i| (i + 1) % self.step == 0 && !self.dense_layers.contains(i))
            .count() as u32
    }

    /// Width of the intermediate activations one token produces in a MoE layer.
    pub fn active_width(&self) -> u64 {
        u64::from(self.top_k) * u64::from(self.expert_intermediate)
            + u64::from(self.shared_experts) * u64::from(self.shared_intermediate)
    }

    /// Tokens per step from which uniform routing touches 90% of the experts:
    /// `E·(1 − (1 − k/E)^T) ≥ 0.9·E` ⇔ `T ≥ ln 0.1 / ln(1 − k/E)`.
    pub fn tokens_to_touch_most(&self) -> f64 {
        let miss = 1.0 - f64::from(self.top_k) / f64::from(self.experts);
        if miss <= 0.0 {
            1.0
        } else {
            (0.1f64.ln() / miss.ln()).ceil().max(1.0)
        }
    }
}

/// Gated-MLP linears (`gate_up` fused, `down`) of intermediate width `inter`.
pub fn gated_mlp(
    name_up: &'static str,
    name_down: &'static str,
    h: u32,
    inter: u32,
) -> [Linear; 2] {
    [
        Linear {
            name: name_up,
            n: inter.saturating_mul(2),
            k: h,
        },
        Linear {
            name: name_down,
            n: h,
            k: inter,
        },
    ]
}

/// Parameter counts of a model's MoE stack (all layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MoeParams {
    /// Routed expert weights, every expert.
    pub experts: u64,
    /// Routed expert weights one token multiplies by (`top_k` experts per MoE layer).
    pub active_experts: u64,
    /// Other linear weights of the stack: shared experts, router, shared gate, and the dense MLP
    /// of the layers that are not MoE.
    pub linear: u64,
    /// Expert and router biases, every expert.
    pub bias: u64,
    /// The biases of the active experts only.
    pub active_bias: u64,
}

impl ModelArch {
    /// Layers whose feed-forward block is MoE (0 for a dense model).
    pub fn moe_layers(&self) -> u32 {
        self.moe.as_ref().map_or(0, |m| m.moe_layers(self.layers))
    }

    /// Linears of one MoE layer outside the routed experts: shared experts, router, shared gate.
    pub fn moe_side_linears(&self) -> Vec<Linear> {
        let Some(m) = &self.moe else {
            return Vec::new();
        };
        let mut v = vec![Linear {
            name: "router",
            n: m.experts,
            k: self.hidden,
        }];
        if m.shared_experts > 0 {
            let width = m.shared_experts.saturating_mul(m.shared_intermediate);
            v.extend(gated_mlp(
                "shared_gate_up",
                "shared_down",
                self.hidden,
                width,
            ));
        }
        if m.shared_gate {
            v.push(Linear {
                name: "shared_expert_gate",
                n: 1,
                k: self.hidden,
            });
        }
        v
    }

    /// The two linears of one routed expert.
    pub fn expert_linears(&self) -> Vec<Linear> {
        self.moe.as_ref().map_or(Vec::new(), |m| {
            gated_mlp(
                "expert_gate_up",
                "expert_down",
                self.hidden,
                m.expert_intermediate,
            )
            .to_vec()
        })
    }

    /// Parameters of the MoE stack (zero for a dense model).
    pub fn moe_params(&self) -> MoeParams {
        let Some(m) = &self.moe else {
            return MoeParams::default();
        };
        let numel =
            |ls: &[Linear]| -> u64 { ls.iter().map(|l| u64::from(l.n) * u64::from(l.k)).sum() };
        let moe_layers = u64::from(self.moe_layers());
        let dense_layers = u64::from(self.layers) - moe_layers;
        let (h, e, k) = (
            u64::from(self.hidden),
            u64::from(m.experts),
            u64::from(m.top_k),
        );
        let per_expert = numel(&self.expert_linears());
        let per_expert_bias = if m.expert_bias {
            2 * u64::from(m.expert_intermediate) + h
        } else {
            0
        };
        let router_bias = if m.router_bias { e } else { 0 };
        let dense_mlp = gated_mlp("gate_up_proj", "down_proj", self.hidden, self.intermediate);
        MoeParams {
            experts: moe_layers * e * per_expert,
            active_experts: moe_layers * k * per_expert,
            linear: moe_layers * numel(&self.moe_side_linears()) + dense_layers * numel(&dense_mlp),
            bias: moe_layers * (e * per_expert_bias + router_bias),
            active_bias: moe_layers * (k * per_expert_bias + router_bias),
        }
    }

    /// Bytes of the MoE stack's weights in `quant`, beyond what `Quant::weight_bytes` counts from
    /// [`ModelArch::linears`]: routed experts (at the checkpoint's own bits where it fixes them),
    /// shared experts and dense-layer MLPs (in the scheme), the router and the shared gate (kept
    /// in 16 bits, as vLLM keeps them). Expert biases are in `params().small`, which
    /// `weight_bytes` already stores in 16 bits.
    pub fn moe_weight_bytes(&self, quant: Quant) -> u64 {
        let Some(m) = &self.moe else {
            return 0;
        };
        let moe_layers = u64::from(self.moe_layers());
        let dense_layers = u64::from(self.layers) - moe_layers;
        let experts: u64 = self
            .expert_linears()
            .iter()
            .map(|l| {
                let (n, k) = (u64::from(l.n), u64::from(l.k));
                match (m.expert_format, m.expert_weight_bits) {
                    (Some(f), _) => f.bytes(n, k),
                    (None, Some(bits)) => ((n * k) as f64 * bits / 8.0).ceil() as u64,
                    (None, None) => quant.linear_bytes(n, k),
                }
            })
            .sum::<u64>()
            * u64::from(m.experts);
        let side: u64 = self
            .moe_side_linears()
            .iter()
            .map(|l| {
                let (n, k) = (u64::from(l.n), u64::from(l.k));
                if l.name == "router" || l.name == "shared_expert_gate" {
                    2 * n * k
                } else {
                    quant.linear_bytes(n, k)
                }
            })
            .sum();
        let dense: u64 = gated_mlp("gate_up_proj", "down_proj", self.hidden, self.intermediate)
            .iter()
            .map(|l| quant.linear_bytes(u64::from(l.n), u64::from(l.k)))
            .sum();
        moe_layers * (experts + side) + dense_layers * dense
    }

    /// Parameters one token's forward pass multiplies by: all of a dense model; for a MoE model
    /// everything but the experts it is not routed to (embedding and LM head included).
    pub fn active_params(&self) -> u64 {
        let total = self.params().total();
        let p = self.moe_params();
        total - (p.experts - p.active_experts) - (p.bias - p.active_bias)
    }
}
