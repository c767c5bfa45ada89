//! What is in a model file, without reading its tensor data (`camelid inspect`): the format,
//! the metadata, every tensor's name, type, shape and offset, and the config read from it.

use std::fmt::{self, Write};

use crate::weights::Checkpoint;

/// The report of `ckpt`, as `camelid inspect` prints it.
pub fn report(ckpt: &Checkpoint) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, ckpt);
    out
}

fn write_report(out: &mut String, ckpt: &Checkpoint) -> fmt::Result {
    match ckpt.gguf() {
        Some(g) => {
            writeln!(out, "file: {}", ckpt.path.display())?;
            writeln!(
                out,
                "format: GGUF v{}, alignment {}",
                g.version(),
                g.alignment()
            )?;
            writeln!(out, "\nmetadata ({} keys):", g.metadata().len())?;
            for (k, v) in g.metadata() {
                writeln!(out, "  {k} = {v}")?;
            }
            writeln!(out, "\ntensors ({}):", g.tensors().len())?;
            writeln!(
                out,
                "  {:<36} {:<6} {:<20} {:>12}",
                "name", "type", "shape", "offset"
            )?;
            for t in g.tensors() {
                let (name, ty, shape) = (&t.name, t.ggml_type.name(), format!("{:?}", t.dims));
                writeln!(out, "  {name:<36} {ty:<6} {shape:<20} {:>12}", t.offset)?;
            }
            let total: u64 = g.tensors().iter().map(|t| t.n_elements()).sum();
            writeln!(
                out,
                "\nparameters in file: {total} ({:.3}B)",
                total as f64 / 1e9
            )?;
        }
        None => {
            writeln!(out, "folder: {}", ckpt.path.display())?;
            match ckpt.meta() {
                Some(m) => writeln!(
                    out,
                    "format: Meta release of {} (params.json + {} consolidated.NN.pth shard(s))",
                    crate::meta::generation(&m.params).name(),
                    m.shards.len()
                )?,
                None => writeln!(out, "format: Hugging Face (config.json + safetensors)")?,
            }
            if let Some(m) = ckpt.meta() {
                writeln!(
                    out,
                    "\ntensors of rank 0 ({}):",
                    m.shards[0].tensors().len()
                )?;
                writeln!(
                    out,
                    "  {:<48} {:<6} {:<16} {:>12}",
                    "name", "type", "shape", "offset"
                )?;
                for t in m.shards[0].tensors() {
                    let shape = format!("{:?}", t.shape);
                    let (name, ty) = (&t.name, t.dtype.name());
                    let at = t.data_range.start;
                    writeln!(out, "  {name:<48} {ty:<6} {shape:<16} {at:>12}")?;
                }
            }
            if let Some(st) = ckpt.safetensors() {
                writeln!(out, "\ntensors ({}):", st.tensors().len())?;
                writeln!(
                    out,
                    "  {:<48} {:<6} {:<16} {:>5} {:>12}",
                    "name", "type", "shape", "shard", "offset"
                )?;
                for t in st.tensors() {
                    let (name, ty, shape) = (&t.name, t.dtype.name(), format!("{:?}", t.shape));
                    let (file, at) = (t.file, t.data_range.start);
                    writeln!(out, "  {name:<48} {ty:<6} {shape:<16} {file:>5} {at:>12}")?;
                }
                let total: u64 = st.tensors().iter().map(|t| t.n_elements() as u64).sum();
                writeln!(
                    out,
                    "\nparameters in files: {total} ({:.3}B)",
                    total as f64 / 1e9
                )?;
            }
        }
    }
    let c = &ckpt.config;
    writeln!(out, "\nconfig:")?;
    writeln!(
        out,
        "  vocab {}  d_model {}  layers {}  heads {}  kv heads {}  head_dim {}  ffn {}",
        c.n_vocab, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.d_ff
    )?;
    writeln!(
        out,
        "  rms eps {:e}  rope theta {}  rope scaling {:?}  context {}  tied embeddings {}",
        c.norm_eps, c.rope_theta, c.rope_scaling, c.n_ctx_train, c.tied_embeddings
    )?;
    writeln!(
        out,
        "  parameters implied by the shapes: {} ({:.3}B)",
        c.n_params(),
        c.n_params() as f64 / 1e9
    )?;
    Ok(())
}
