//! The trainable parameters of a Llama model as named f32 tensors.
//!
//! Names and shapes are Hugging Face `LlamaForCausalLM`'s (`model.layers.{i}.self_attn.q_proj.weight`
//! is `[q_dim, d_model]`, row-major, `y = x·Wᵀ`), so a checkpoint is written to safetensors
//! without renaming, and a PyTorch reference addresses the same tensors by the same names.
//! Gradients and Adam moments are `Params` of the same layout (`zeros_like`).

use camelid_model::Config;

/// What a tensor is, for the optimizer (weight decay applies to matrices only, unless asked) and
/// for the initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Embedding,
    /// An RMSNorm gain (initialised to 1).
    Norm,
    /// A projection that writes into the residual stream (`o_proj`, `down_proj`): its init may be
    /// scaled by depth.
    ResidualOut,
    /// Any other projection (`q/k/v_proj`, `gate/up_proj`, `lm_head`).
    Matrix,
}

/// One named tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
    pub data: Vec<f32>,
}

/// All tensors of a model in a fixed order: embedding, then per layer `input_layernorm`,
/// `q_proj`, `k_proj`, `v_proj`, `o_proj`, `post_attention_layernorm`, `gate_proj`, `up_proj`,
/// `down_proj`, then `model.norm`, then `lm_head` unless the embedding is tied.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub config: Config,
    pub tensors: Vec<Tensor>,
}

/// Indices into [`Params::tensors`] of one layer's tensors.
#[derive(Clone, Copy, Debug)]
pub struct LayerIdx {
    pub attn_norm: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub wo: usize,
    pub ffn_norm: usize,
    pub w_gate: usize,
    pub w_up: usize,
    pub w_down: usize,
}

/// Tensors per layer in [`Params::tensors`].
const PER_LAYER: usize = 9;

impl Params {
    /// Zero-filled tensors in the layout of `config`.
    pub fn zeros(config: &Config) -> Params {
        let (d, ff, v) = (config.d_model, config.d_ff, config.n_vocab);
        let (q, kv) = (config.q_dim(), config.kv_dim());
        let mut tensors = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, kind: ParamKind| {
            let n = shape.iter().product();
            tensors.push(Tensor {
                name,
                shape,
                kind,
                data: vec![0.0; n],
            });
        };
        push(
            "model.embed_tokens.weight".into(),
            vec![v, d],
            ParamKind::Embedding,
        );
        for i in 0..config.n_layers {
            let p = format!("model.layers.{i}");
            push(
                format!("{p}.input_layernorm.weight"),
                vec![d],
                ParamKind::Norm,
            );
            push(
                format!("{p}.self_attn.q_proj.weight"),
                vec![q, d],
                ParamKind::Matrix,
            );
            push(
                format!("{p}.self_attn.k_proj.weight"),
                vec![kv, d],
                ParamKind::Matrix,
            );
            push(
                format!("{p}.self_attn.v_proj.weight"),
                vec![kv, d],
                ParamKind::Matrix,
            );
            push(
                format!("{p}.self_attn.o_proj.weight"),
                vec![d, q],
                ParamKind::ResidualOut,
            );
            push(
                format!("{p}.post_attention_layernorm.weight"),
                vec![d],
                ParamKind::Norm,
            );
            push(
                format!("{p}.mlp.gate_proj.weight"),
                vec![ff, d],
                ParamKind::Matrix,
            );
            push(
                format!("{p}.mlp.up_proj.weight"),
                vec![ff, d],
                ParamKind::Matrix,
            );
            push(
                format!("{p}.mlp.down_proj.weight"),
                vec![d, ff],
                ParamKind::ResidualOut,
            );
        }
        push("model.norm.weight".into(), vec![d], ParamKind::Norm);
        if !config.tied_embeddings {
            push("lm_head.weight".into(), vec![v, d], ParamKind::Matrix);
        }
        Params {
            config: config.clone(),
            tensors,
        }
    }

    /// Zeros in the same layout as `self` (gradients, Adam moments).
    pub fn zeros_like(&self) -> Params {
        Params::zeros(&self.config)
    }

    pub fn embedding(&self) -> usize {
        0
    }

    pub fn layer(&self, i: usize) -> LayerIdx {
        let b = 1 + i * PER_LAYER;
        LayerIdx {
            attn_norm: b,
            wq: b + 1,
            wk: b + 2,
            wv: b + 3,
            wo: b + 4,
            ffn_norm: b + 5,
            w_gate: b + 6,
            w_up: b + 7,
            w_down: b + 8,
        }
    }

    pub fn final_norm(&self) -> usize {
        1 + self.config.n_layers * PER_LAYER
    }

    /// The output projection: `lm_head`, or the embedding when tied.
    pub fn output(&self) -> usize {
        if self.config.tied_embeddings {
            self.embedding()
        } else {
            self.final_norm() + 1
        }
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn fill(&mut self, v: f32) {
        for t in &mut self.tensors {
            t.data.fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camelid_model::config::RopeScaling;

    fn cfg(tied: bool) -> Config {
        Config {
            n_vocab: 32,
            d_model: 16,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 4,
            d_ff: 24,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            n_ctx_train: 64,
            tied_embeddings: tied,
        }
    }

    #[test]
    fn the_layout_counts_what_the_config_counts() {
        for tied in [false, true] {
            let c = cfg(tied);
            let p = Params::zeros(&c);
            assert_eq!(p.len() as u64, c.n_params());
            assert_eq!(
                p.tensors[p.layer(1).w_down].name,
                "model.layers.1.mlp.down_proj.weight"
            );
            assert_eq!(p.tensors[p.final_norm()].name, "model.norm.weight");
            let out = &p.tensors[p.output()].name;
            assert_eq!(
                out,
                if tied {
                    "model.embed_tokens.weight"
                } else {
                    "lm_head.weight"
                }
            );
        }
    }
}
