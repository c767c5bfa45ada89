//! `camelid inspect`: what is in a model file, without reading its tensor data.

use std::io::Write;

use anyhow::Result;
use camelid_model::weights::Checkpoint;

#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(help = crate::load::MODEL_HELP)]
    pub model: Option<String>,
}

pub fn run(a: &InspectArgs) -> Result<()> {
    let path = crate::fetch::resolve_model(a.model.as_deref())?;
    let report = camelid_model::inspect::report(&Checkpoint::open(&path)?);
    std::io::stdout().lock().write_all(report.as_bytes())?;
    Ok(())
}
