//! `camelid chat`: a conversation with a chat model, in a terminal or scripted through stdin.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use camelid_engine::GenParams;
use camelid_engine::chat::{BUILTIN_NAMES, ChatTemplate};
use camelid_engine::conversation::{
    Command, Conversation, ConversationError, Event, MessageReader, Reply,
};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::load::{LoadArgs, load};
use crate::run::{DraftArgs, SampleArgs};

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
          value_parser = camelid_engine::options::max_tokens, allow_negative_numbers = true)]
    pub n_predict: usize,
    /// The chat format: a built-in one (`chatml`, `llama2`, `llama3`) or a file holding a Jinja
    /// template (default: the model's own template, else the built-in one its vocabulary is
    /// recognised by).
    #[arg(long, value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
    #[command(flatten)]
    pub sample: SampleArgs,
    #[command(flatten)]
    pub draft: DraftArgs,
    /// After each reply, print token counts and speeds on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(a: &ChatArgs) -> Result<()> {
    a.sample.check()?;
    // A --chat-template that names nothing fails before the model is loaded.
    let named = a.chat_template.as_deref().map(named_template).transpose()?;
    let loaded = load(&a.load)?;
    let draft = a.draft.load(&a.load)?;
    let speculator = a.draft.speculator(&draft, &loaded)?;
    let name = a
        .load
        .model
        .as_deref()
        .unwrap_or(crate::fetch::SMOLLM2.file_name);
    let (template, origin) = match named {
        Some(t) => t,
        None => ChatTemplate::for_model(&loaded.tokenizer, name).map_err(anyhow::Error::msg)?,
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
    let mut conv = Conversation::new(
        &loaded.model,
        &loaded.tokenizer,
        template,
        loaded.n_ctx,
        system.map(str::to_string),
        params,
    )?;
    conv.speculator = speculator;
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
            Event::Dropped(d) => eprintln!("{d}"),
        })
    }

    /// Tells how the reply ended (on stderr), after it was printed.
    fn report(&self, r: &Reply) {
        for line in self.conv.reply_notes(r, self.verbose) {
            eprintln!("{line}");
        }
    }

    /// Runs a `/command`; false when it asks to leave.
    fn command(&mut self, line: &str) -> bool {
        match self.conv.command(line) {
            Command::Leave => return false,
            Command::Help => eprintln!("{AFTER_HELP}"),
            Command::Note(note) => eprintln!("{note}"),
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
    let mut msg = MessageReader::default();
    loop {
        let prompt = if msg.continuing() { "... " } else { "> " };
        let line = match rl.readline(prompt) {
            Ok(l) => l,
            // Ctrl-C clears what was typed so far.
            Err(ReadlineError::Interrupted) => {
                msg.clear();
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(msg.finish()),
            Err(e) => return Err(e).context("reading the terminal"),
        };
        if !line.trim().is_empty() {
            let _ = rl.add_history_entry(line.as_str());
        }
        if let Some(text) = msg.push(&line) {
            return Ok(Some(text));
        }
    }
}
