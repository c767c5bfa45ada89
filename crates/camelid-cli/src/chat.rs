//! `camelid chat`: a conversation with a chat model, in a terminal or scripted through stdin.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use camelid_engine::chat::{BUILTIN_NAMES, ChatTemplate};
use camelid_engine::conversation::{Conversation, ConversationError, Event, Reply};
use camelid_engine::{FinishReason, GenParams};
use camelid_tokenizer::Tokenizer;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::load::{LoadArgs, load};
use crate::run::{SampleArgs, report};

const AFTER_HELP: &str = "\
In a terminal, type a message and press Enter. Input:
  a line ending in \\        continues on the next line
  \"\"\"                       starts a block of lines, ended by a line ending in \"\"\"
Commands:
  /reset                    forget the conversation (the system prompt stays)
  /system TEXT              set the system prompt and start over (/system alone removes it)
  /help                     this list
  /exit, Ctrl-D             leave
Ctrl-C stops a reply; at the prompt it clears the line.
When the conversation no longer leaves room for a reply in the context (--ctx), its oldest turns
are dropped, a line on stderr says how many; the system prompt stays.

When stdin is not a terminal, each line is one message (or one of the commands) and each reply
is printed followed by a newline:
  echo \"What is the capital of France? Answer in one sentence.\" | camelid chat";

#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ChatArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The system prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Tokens per reply at most; -1 = no limit (until the model ends its reply or the context
    /// is full).
    #[arg(short = 'n', long = "n-predict", default_value = "512",
          value_parser = crate::run::parse_n_predict, allow_negative_numbers = true)]
    pub n_predict: usize,
    /// The chat format: a built-in one (`chatml`, `llama2`, `llama3`) or a file holding a Jinja
    /// template (default: the model's own template, else the built-in one its vocabulary is
    /// recognised by).
    #[arg(long, value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// After each reply, print token counts and speeds on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(a: &ChatArgs) -> Result<()> {
    a.sample.check()?;
    // A --chat-template that names nothing fails before the model is loaded.
    let named = a.chat_template.as_deref().map(named_template).transpose()?;
    let loaded = load(&a.load)?;
    let name = a
        .load
        .model
        .as_deref()
        .unwrap_or(crate::fetch::SMOLLM2.file_name);
    let (template, origin) = match named {
        Some(t) => t,
        None => model_template(&loaded.tokenizer, name)?,
    };
    // A template that cannot encode even the first message is reported now, not after the user
    // typed one.
    let system = a.system.as_deref().filter(|s| !s.is_empty());
    template
        .validate(&loaded.tokenizer, system)
        .with_context(|| format!("{origin} cannot be used"))?;
    let sampler = a.sample.sampler(&loaded.sampling)?;
    let options = a.sample.options();
    if let Some(note) = options.hints_note(&loaded.sampling) {
        eprintln!("{note}");
    }
    if let Some(note) = options.seed_note(&sampler) {
        eprintln!("{note}");
    }
    let params = GenParams {
        max_tokens: a.n_predict,
        stop: a.sample.stop.clone(),
        sampler,
        grammar: a.sample.grammar(&loaded.tokenizer)?,
    };
    let conv = Conversation::new(
        &loaded.model,
        &loaded.tokenizer,
        template,
        loaded.n_ctx,
        system.map(str::to_string),
        params,
    )?;
    let mut chat = Chat {
        conv,
        verbose: a.verbose,
    };
    let cancel = crate::interrupt_flag();
    if io::stdin().is_terminal() {
        interactive(&mut chat, name, cancel)
    } else {
        scripted(&mut chat, cancel)
    }
}

/// The template `--chat-template` names: a built-in, or a file of Jinja; and where it came from,
/// for messages.
fn named_template(spec: &str) -> Result<(ChatTemplate, String)> {
    let names = BUILTIN_NAMES.join(", ");
    if let Some(t) = ChatTemplate::builtin(spec) {
        return Ok((t, format!("--chat-template {spec}")));
    }
    let path = PathBuf::from(spec);
    if !path.exists() {
        bail!(
            "--chat-template {spec:?}: not a built-in chat format (one of: {names}) nor a \
             template file"
        );
    }
    let source = crate::run::read_text(&path).context("reading --chat-template")?;
    Ok((
        ChatTemplate::Jinja(source),
        format!("--chat-template {}", path.display()),
    ))
}

/// The model's own template, else the built-in format its vocabulary is recognised by.
fn model_template(tok: &Tokenizer, model: &str) -> Result<(ChatTemplate, String)> {
    let t = ChatTemplate::for_tokenizer(tok).with_context(|| {
        format!(
            "{model}: the model has no chat template and its vocabulary is not one of a known \
             chat format; give one with --chat-template NAME|FILE (built-in names: {})",
            BUILTIN_NAMES.join(", ")
        )
    })?;
    let origin = match t {
        ChatTemplate::Jinja(_) => format!("{model}: the model's chat template"),
        _ => format!("the built-in {} chat format", t.name()),
    };
    Ok((t, origin))
}

/// A conversation and how its replies are reported.
struct Chat<'a> {
    conv: Conversation<'a>,
    verbose: bool,
}

impl Chat<'_> {
    /// Answers `user`, streaming the reply through `out`; a line on stderr says when the
    /// oldest turns were dropped to make room.
    fn reply(
        &mut self,
        user: String,
        cancel: &AtomicBool,
        out: &mut dyn FnMut(&str),
    ) -> Result<Reply, ConversationError> {
        self.conv.reply(user, cancel, &mut |e| match e {
            Event::Text(t) => out(t),
            Event::Dropped { turns, system_kept } => {
                let what = match turns {
                    1 => "the oldest turn".to_string(),
                    n => format!("the {n} oldest turns"),
                };
                let kept = if system_kept {
                    "; the system prompt is kept"
                } else {
                    ""
                };
                eprintln!("[context full: dropped {what}{kept}]");
            }
        })
    }

    /// Tells how the reply ended (on stderr), after it was printed.
    fn report(&self, r: &Reply) {
        let n_ctx = self.conv.n_ctx();
        if self.verbose {
            eprintln!("[{} prompt tokens reused from the cache]", r.reused);
            report(&r.generation, n_ctx);
        } else if r.generation.finish == FinishReason::Cancelled {
            eprintln!("[interrupted]");
        }
        if r.generation.finish == FinishReason::Length {
            eprintln!(
                "[reply cut at {} tokens; raise -n for longer replies]",
                self.conv.params.max_tokens
            );
        }
        if r.generation.finish == FinishReason::ContextFull {
            eprintln!(
                "[context full: the reply filled the context of {n_ctx} tokens; the oldest turns \
                 make room for the next message (raise --ctx to keep more)]"
            );
        }
    }

    /// Runs a `/command`; false when it asks to leave.
    fn command(&mut self, line: &str) -> bool {
        let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd {
            "/exit" | "/quit" | "/bye" => return false,
            "/reset" | "/clear" => {
                self.conv.reset();
                eprintln!("[conversation cleared]");
            }
            "/system" => {
                let arg = arg.trim();
                self.conv
                    .set_system((!arg.is_empty()).then(|| arg.to_string()));
                match self.conv.system() {
                    Some(_) => eprintln!("[system prompt set; conversation cleared]"),
                    None => eprintln!("[system prompt removed; conversation cleared]"),
                }
            }
            "/help" | "/?" => eprintln!("{AFTER_HELP}"),
            _ => eprintln!("[unknown command {cmd}; /help lists them]"),
        }
        true
    }
}

/// Scripted use: one message per line of stdin, each reply on stdout followed by a newline.
fn scripted(chat: &mut Chat, cancel: &AtomicBool) -> Result<()> {
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    let mut failed = 0usize;
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('/') {
            if !chat.command(line.trim()) {
                break;
            }
            continue;
        }
        let mut io_err: io::Result<()> = Ok(());
        let r = chat.reply(line.to_string(), cancel, &mut |t| {
            if io_err.is_ok() {
                io_err = stdout.write_all(t.as_bytes()).and_then(|_| stdout.flush());
                if io_err.is_err() {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        });
        io_err.context("writing to stdout")?;
        match r {
            Ok(r) => {
                writeln!(stdout)?;
                stdout.flush()?;
                chat.report(&r);
            }
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                writeln!(stdout)?;
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} message(s) got no reply");
    }
    Ok(())
}

/// The terminal REPL.
fn interactive(chat: &mut Chat, name: &str, cancel: &AtomicBool) -> Result<()> {
    let mut rl = DefaultEditor::new().context("setting up the terminal")?;
    // The line history: `$XDG_CACHE_HOME/camelid/chat_history`, else ~/.cache/camelid/….
    let history = crate::fetch::camelid_cache_path("chat_history");
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!(
        "camelid chat: {name}, {} template, context of {} tokens\n\
         Type a message; /help lists the commands; Ctrl-D leaves.",
        chat.conv.template.name(),
        chat.conv.n_ctx()
    );
    let mut stdout = io::stdout();
    loop {
        let text = match read_message(&mut rl) {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err(e) => return Err(e),
        };
        if text.trim().is_empty() {
            continue;
        }
        if text.starts_with('/') && !text.contains('\n') {
            if !chat.command(text.trim()) {
                break;
            }
            continue;
        }
        let mut io_err: io::Result<()> = Ok(());
        let r = chat.reply(text, cancel, &mut |t| {
            if io_err.is_ok() {
                io_err = stdout.write_all(t.as_bytes()).and_then(|_| stdout.flush());
            }
        });
        io_err.context("writing to stdout")?;
        println!();
        match r {
            Ok(r) => chat.report(&r),
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.save_history(h);
    }
    Ok(())
}

/// Reads one message: a line, lines joined by a trailing `\`, or a `"""` block. `None` on
/// Ctrl-D at an empty prompt.
fn read_message(rl: &mut DefaultEditor) -> Result<Option<String>> {
    let mut text = String::new();
    let mut block = false;
    loop {
        let prompt = if text.is_empty() && !block {
            "> "
        } else {
            "... "
        };
        let line = match rl.readline(prompt) {
            Ok(l) => l,
            // Ctrl-C clears what was typed so far.
            Err(ReadlineError::Interrupted) => {
                text.clear();
                block = false;
                continue;
            }
            Err(ReadlineError::Eof) if text.is_empty() && !block => return Ok(None),
            Err(ReadlineError::Eof) => return Ok(Some(text)),
            Err(e) => return Err(e).context("reading the terminal"),
        };
        if !line.trim().is_empty() {
            let _ = rl.add_history_entry(line.as_str());
        }
        if block {
            if let Some(last) = line.trim_end().strip_suffix("\"\"\"") {
                text.push_str(last);
                return Ok(Some(text));
            }
            text.push_str(&line);
            text.push('\n');
        } else if text.is_empty() && line.trim_start().starts_with("\"\"\"") {
            let rest = &line.trim_start()[3..];
            if let Some(one) = rest.trim_end().strip_suffix("\"\"\"") {
                return Ok(Some(one.to_string()));
            }
            block = true;
            if !rest.is_empty() {
                text.push_str(rest);
                text.push('\n');
            }
        } else if let Some(head) = line.strip_suffix('\\') {
            text.push_str(head);
            text.push('\n');
        } else {
            text.push_str(&line);
            return Ok(Some(text));
        }
    }
}
