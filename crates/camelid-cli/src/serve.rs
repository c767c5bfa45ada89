//! `camelid serve`: an OpenAI-compatible HTTP server (see the camelid-server crate).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use camelid_model::Pooling;
use camelid_server::{AccessLog, AppState, Cors, LogFormat, LogSink, ServerConfig};

use crate::load::{LoadArgs, load};

#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together, each with its own KV cache of --ctx tokens.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a free slot; more get 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1/ endpoints.
    #[arg(long)]
    pub api_key: Option<String>,
    /// The model name /v1/models lists (default: the file name without .gguf).
    #[arg(long)]
    pub alias: Option<String>,
    /// Refuse requests whose `model` is not that name (404); by default any name is taken,
    /// since one model is served.
    #[arg(long)]
    pub strict_model: bool,
    /// An origin whose browser pages may call the API (http(s)://host[:port], or * for any);
    /// repeat it or separate origins with commas. None by default: no cross-origin requests.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// The access log on stderr, one line per request: text or json.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub body_limit: usize,
    /// On SIGINT/SIGTERM, seconds to let requests in flight finish before cancelling them.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_grace: f64,
    /// How /v1/embeddings pools a text's final hidden states: mean (over its tokens), last
    /// (its last token) or cls (its first token).
    #[arg(long, default_value_t = Pooling::Mean)]
    pub pooling: Pooling,
    #[command(flatten)]
    pub draft: crate::run::DraftArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormatArg {
    Text,
    Json,
}

pub fn run(a: &ServeArgs) -> Result<()> {
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if !(a.shutdown_grace.is_finite() && a.shutdown_grace >= 0.0) {
        bail!("--shutdown-grace must be a number of seconds ≥ 0");
    }
    let cors = Cors::parse(&a.cors_origin).map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
    let addr: SocketAddr = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving --host {}", a.host))?
        .next()
        .with_context(|| format!("--host {} has no address", a.host))?;
    let path = crate::fetch::resolve_model(a.load.model.as_deref())?;
    let loaded = load(&LoadArgs {
        model: Some(path.display().to_string()),
        ..a.load.clone()
    })?;
    let draft = a.draft.load(&a.load)?;
    let spec = a.draft.server_speculation(draft, &loaded)?;
    let model_id = a
        .alias
        .clone()
        .unwrap_or_else(|| crate::fetch::model_name(&path));
    // The model's recommendations become the defaults of every request: check them now.
    crate::run::SampleArgs::default().sampler(&loaded.sampling)?;
    if !loaded.sampling.is_empty() {
        eprintln!(
            "camelid serve: requests that leave them out get the model's sampling: {} ({})",
            loaded.sampling.describe(),
            loaded.sampling.source
        );
    }
    let config = ServerConfig {
        api_key: a.api_key.clone(),
        n_slots: a.parallel,
        max_queue: a.queue,
        body_limit: a.body_limit,
        sampling: loaded.sampling.clone(),
        strict_model: a.strict_model,
        pooling: a.pooling,
        cors,
        access_log: Some(AccessLog {
            format: match a.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            },
            sink: LogSink::stderr(),
        }),
        ..ServerConfig::new(model_id.clone(), loaded.n_ctx)
    };
    let n_ctx = loaded.n_ctx;
    let state = AppState::with_speculation(loaded.model, loaded.tokenizer, config, spec)?;
    let grace = Duration::from_secs_f64(a.shutdown_grace);
    camelid_server::serve(state, addr, grace, |bound| {
        eprintln!(
            "camelid serve: model {model_id}, {} slots of {n_ctx} tokens, listening on http://{bound}",
            a.parallel
        );
    })
    .with_context(|| format!("serving on {addr}"))?;
    eprintln!("camelid serve: stopped");
    Ok(())
}
