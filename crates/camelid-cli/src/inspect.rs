//! `camelid inspect`: what is in a model file, without reading its tensor data; or what a LoRA
//! adapter changes.

use std::io::Write;

use anyhow::Result;
use camelid_model::lora;
use camelid_model::weights::Checkpoint;

#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(help = crate::load::MODEL_HELP)]
    pub model: Option<String>,
}

pub fn run(a: &InspectArgs) -> Result<()> {
    let path = crate::fetch::resolve_model(a.model.as_deref())?;
    let report = if lora::is_adapter(&path) {
        lora::Adapter::open(&path)?.report()
    } else {
        camelid_model::inspect::report(&Checkpoint::open(&path)?)
    };
    std::io::stdout().lock().write_all(report.as_bytes())?;
    Ok(())
}
