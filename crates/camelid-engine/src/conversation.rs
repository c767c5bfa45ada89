//! A conversation with a chat model: the system prompt, the turns so far, and the model's cache
//! carried from one reply to the next, so that each reply recomputes only what follows the part
//! of the prompt that is already cached. When the dialog no longer leaves room for a reply, the
//! oldest turns are dropped (never the system prompt or the last message).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use camelid_model::{Model, ModelError, State};
use camelid_tokenizer::Tokenizer;

use crate::chat::{ChatError, ChatTemplate, Message};
use crate::generate::{FinishReason, GenError, GenParams, Generation, Speculation, generate_with};
use crate::speculate::Speculator;

/// Why a message got no reply.
#[derive(Debug)]
pub enum ConversationError {
    /// The template refused the dialog.
    Template(ChatError),
    /// Even with the oldest turns dropped, the prompt leaves no room for a reply.
    NoRoom {
        prompt: usize,
        n_ctx: usize,
    },
    Gen(GenError),
}

impl ConversationError {
    /// Whether the model itself failed, which ends the conversation, rather than the message
    /// (a template that refuses it, a message that does not fit).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConversationError::Gen(GenError::Model(_)))
    }
}

impl fmt::Display for ConversationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationError::Template(e) => e.fmt(f),
            ConversationError::NoRoom { prompt, n_ctx } => write!(
                f,
                "the message makes a prompt of {prompt} tokens, which leaves no room for a reply \
                 in the context of {n_ctx} tokens (raise --ctx or shorten it)"
            ),
            ConversationError::Gen(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConversationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent: the wrapped error's own cause, not the wrapped error said a second time.
        match self {
            ConversationError::Template(e) => e.source(),
            ConversationError::NoRoom { .. } => None,
            ConversationError::Gen(e) => e.source(),
        }
    }
}

/// What a reply tells its caller while it runs.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    /// Turns were dropped to make room, before the reply started.
    Dropped(Dropped),
    /// A piece of the reply, as soon as it is certain.
    Text(&'a str),
}

/// The oldest `turns` (user messages with their replies) were dropped to make room;
/// `system_kept` when there is a system prompt, which stays. Displayed as the line a chat
/// front end shows.
#[derive(Debug, PartialEq)]
pub struct Dropped {
    pub turns: usize,
    pub system_kept: bool,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.turns {
            1 => write!(f, "[context full: dropped the oldest turn")?,
            n => write!(f, "[context full: dropped the {n} oldest turns")?,
        }
        if self.system_kept {
            write!(f, "; the system prompt is kept")?;
        }
        write!(f, "]")
    }
}

/// How a reply ended.
pub struct Reply {
    pub generation: Generation,
    /// Prompt tokens whose keys and values came from the cache.
    pub reused: usize,
}

/// What a chat command did ([`Conversation::command`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Leave the chat.
    Leave,
    /// Show the list of commands.
    Help,
    /// Done, or not understood: the line says which.
    Note(String),
}

/// One conversation: the dialog so far and the tokens in the model's cache.
pub struct Conversation<'a> {
    model: &'a Model,
    tok: &'a Tokenizer,
    pub template: ChatTemplate,
    state: State,
    /// The tokens whose keys and values are in `state`'s cache (`cached.len() == state.pos`).
    cached: Vec<u32>,
    system: Option<String>,
    /// User and assistant turns, the system prompt not included.
    messages: Vec<Message>,
    pub params: GenParams,
    /// Speculative decoding of the replies (the same replies, sooner when drafts are good).
    pub speculator: Option<Speculator<'a>>,
}

impl<'a> Conversation<'a> {
    /// A conversation in a fresh cache of `n_ctx` tokens.
    pub fn new(
        model: &'a Model,
        tok: &'a Tokenizer,
        template: ChatTemplate,
        n_ctx: usize,
        system: Option<String>,
        params: GenParams,
    ) -> Result<Conversation<'a>, ModelError> {
        Ok(Conversation {
            model,
            tok,
            template,
            state: model.new_state(n_ctx)?,
            cached: Vec::new(),
            system,
            messages: Vec::new(),
            params,
            speculator: None,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.state.n_ctx
    }

    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// The user and assistant turns so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Forgets the turns; the cache is kept, since the next prompt shares its start (system
    /// prompt, BOS) with what is cached and only the rest is recomputed.
    pub fn reset(&mut self) {
        self.messages.clear();
    }

    /// Replaces the system prompt (None removes it) and forgets the turns.
    pub fn set_system(&mut self, system: Option<String>) {
        self.system = system;
        self.reset();
    }

    /// Runs a chat command typed as `line`: `/reset` (`/clear`), `/system [TEXT]`, `/exit`
    /// (`/quit`, `/bye`), `/help` (`/?`).
    pub fn command(&mut self, line: &str) -> Command {
        let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let note = match cmd {
            "/exit" | "/quit" | "/bye" => return Command::Leave,
            "/help" | "/?" => return Command::Help,
            "/reset" | "/clear" => {
                self.reset();
                "[conversation cleared]".to_string()
            }
            "/system" => {
                let arg = arg.trim();
                self.set_system((!arg.is_empty()).then(|| arg.to_string()));
                let what = if self.system.is_some() {
                    "set"
                } else {
                    "removed"
                };
                format!("[system prompt {what}; conversation cleared]")
            }
            _ => format!("[unknown command {cmd}; /help lists them]"),
        };
        Command::Note(note)
    }

    /// The lines that tell how reply `r` ended, after its text: with `verbose` the prompt tokens
    /// reused and the generation's speeds; a cut reply says how to get longer ones.
    pub fn reply_notes(&self, r: &Reply, verbose: bool) -> Vec<String> {
        let (g, n_ctx) = (&r.generation, self.n_ctx());
        let mut lines = Vec::new();
        if verbose {
            lines.push(format!(
                "[{} prompt tokens reused from the cache]",
                r.reused
            ));
            lines.extend(g.summary_lines(n_ctx));
        } else if g.finish == FinishReason::Cancelled {
            lines.push("[interrupted]".into());
        }
        if g.finish == FinishReason::Length {
            lines.push(format!(
                "[reply cut at {} tokens; raise -n for longer replies]",
                self.params.max_tokens
            ));
        }
        if g.finish == FinishReason::ContextFull {
            lines.push(format!(
                "[context full: the reply filled the context of {n_ctx} tokens; the oldest turns \
                 make room for the next message (raise --ctx to keep more)]"
            ));
        }
        lines
    }

    /// Answers `user`, streaming the reply through `on`. A message that gets no reply leaves
    /// the dialog as it was.
    pub fn reply(
        &mut self,
        user: String,
        cancel: &AtomicBool,
        on: &mut dyn FnMut(Event),
    ) -> Result<Reply, ConversationError> {
        self.messages.push(Message::user(user));
        let ids = match self.prompt_ids(on) {
            Ok(ids) => ids,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };

        // Keep the cached tokens the new prompt starts with; recompute from where they part.
        // At least one token must go through the model to get the logits of the next one.
        let common = self
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count();
        let keep = common.min(ids.len() - 1);
        self.state.pos = keep;
        self.cached.truncate(keep);

        cancel.store(false, Ordering::SeqCst);
        let spec = self.speculator.as_mut().map(|speculator| Speculation {
            speculator,
            before: &self.cached,
        });
        let result = generate_with(
            self.model,
            &mut self.state,
            self.tok,
            &ids[keep..],
            &self.params,
            spec,
            cancel,
            |t| on(Event::Text(t)),
        );
        let g = match result {
            Ok(g) => g,
            Err(e) => {
                self.messages.pop();
                self.state.pos = 0;
                self.cached.clear();
                return Err(ConversationError::Gen(e));
            }
        };
        cancel.store(false, Ordering::SeqCst);
        // What went through the model: the prompt, then each reply token that was fed back (not
        // the last one sampled when generation ended on a budget, a stop string or the context).
        self.cached = ids;
        self.cached.extend_from_slice(&g.tokens);
        if self.cached.len() >= self.state.pos {
            self.cached.truncate(self.state.pos);
        } else {
            self.state.pos = 0;
            self.cached.clear();
        }
        // A reply cut by a full context stays in the dialog: the next prompt makes room by
        // dropping the oldest turns (see `prompt_ids`).
        self.messages.push(Message::assistant(g.text.as_str()));
        Ok(Reply {
            generation: g,
            reused: keep,
        })
    }

    /// The ids of the dialog with the assistant's turn opened. When they leave too little room
    /// for a reply, the oldest turns (user message and reply together) are dropped, never the
    /// system prompt or the last message, and `on` hears of it.
    fn prompt_ids(&mut self, on: &mut dyn FnMut(Event)) -> Result<Vec<u32>, ConversationError> {
        let system = self.system.as_deref().map(Message::system);
        let (ids, dropped) = self
            .template
            .encode_within(
                self.tok,
                system.as_ref(),
                &self.messages,
                self.prompt_budget(),
            )
            .map_err(ConversationError::Template)?;
        if ids.len() >= self.n_ctx() {
            return Err(ConversationError::NoRoom {
                prompt: ids.len(),
                n_ctx: self.n_ctx(),
            });
        }
        if dropped > 0 {
            let turns = self.messages[..dropped]
                .iter()
                .filter(|m| m.role == "user")
                .count();
            self.messages.drain(..dropped);
            on(Event::Dropped(Dropped {
                turns,
                system_kept: self.system.is_some(),
            }));
        }
        Ok(ids)
    }

    /// The longest prompt that leaves room for a reply of up to `max_tokens`, or of half the
    /// context when that asks for more. Turns are dropped before a reply would run into the end
    /// of the context rather than after it was cut there; and since each drop changes the prompt
    /// after the system prompt (all of which is then recomputed), making room for a whole reply
    /// at once keeps drops rare.
    fn prompt_budget(&self) -> usize {
        let room = self.params.max_tokens.min(self.n_ctx() / 2);
        self.n_ctx().saturating_sub(room)
    }
}

/// One message assembled from lines typed at a prompt: a line ending in `\` continues on the
/// next, and a line starting with `"""` opens a block of lines closed by a line ending in
/// `"""` (or both on one line).
#[derive(Debug, Default)]
pub struct MessageReader {
    text: String,
    block: bool,
}

impl MessageReader {
    /// Whether a message is under way (a front end shows a continuation prompt).
    pub fn continuing(&self) -> bool {
        !self.text.is_empty() || self.block
    }

    /// Forgets what was typed (Ctrl-C at the prompt).
    pub fn clear(&mut self) {
        *self = MessageReader::default();
    }

    /// At the end of input: the message under way, None at an empty prompt.
    pub fn finish(&mut self) -> Option<String> {
        let under_way = self.continuing();
        let text = std::mem::take(&mut self.text);
        self.block = false;
        under_way.then_some(text)
    }

    /// Takes a typed line (without its line break); the message when the line completes one.
    pub fn push(&mut self, line: &str) -> Option<String> {
        if self.block {
            if let Some(last) = line.trim_end().strip_suffix("\"\"\"") {
                self.text.push_str(last);
                return self.finish();
            }
            self.text.push_str(line);
            self.text.push('\n');
        } else if self.text.is_empty() && line.trim_start().starts_with("\"\"\"") {
            let rest = &line.trim_start()[3..];
            if let Some(one) = rest.trim_end().strip_suffix("\"\"\"") {
                return Some(one.to_string());
            }
            self.block = true;
            if !rest.is_empty() {
                self.text.push_str(rest);
                self.text.push('\n');
            }
        } else if let Some(head) = line.strip_suffix('\\') {
            self.text.push_str(head);
            self.text.push('\n');
        } else {
            self.text.push_str(line);
            return self.finish();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;
    use camelid_model::weights::Weights;

    fn tokenizer() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/tokenizer/spm-tiny.model"
        );
        camelid_model::tokenizer_load::load_tokenizer(std::path::Path::new(path)).unwrap()
    }

    /// A two-layer model with random weights over the tokenizer's vocabulary.
    fn model(n_vocab: usize) -> Model {
        let preset = camelid_model::config::presets()
            .into_iter()
            .find(|p| p.id == "llama-7b")
            .unwrap();
        let config = preset
            .config
            .resized(Some(2), Some(n_vocab), Some(128), Some(256))
            .unwrap();
        Model::new(config.clone(), Weights::random(&config, 1))
    }

    fn greedy(max_tokens: usize) -> GenParams {
        GenParams {
            max_tokens,
            stop: Vec::new(),
            sampler: SamplerConfig {
                temperature: 0.0,
                ..SamplerConfig::default()
            },
            grammar: None,
        }
    }

    fn say(c: &mut Conversation, text: &str) -> (Result<Reply, ConversationError>, Vec<String>) {
        let never = AtomicBool::new(false);
        let mut events = Vec::new();
        let r = c.reply(text.into(), &never, &mut |e| {
            if let Event::Dropped(d) = e {
                events.push(d.to_string());
            }
        });
        (r, events)
    }

    fn read(lines: &[&str]) -> (Vec<String>, Option<String>) {
        let mut r = MessageReader::default();
        let done = lines.iter().filter_map(|l| r.push(l)).collect();
        (done, r.finish())
    }

    #[test]
    fn typed_lines_make_messages() {
        let one = |s: &str| vec![s.to_string()];
        assert_eq!(read(&["hello"]), (one("hello"), None));
        assert_eq!(read(&["a \\", "b"]), (one("a \nb"), None));
        assert_eq!(
            read(&["\"\"\"x", "  y", "z\"\"\""]),
            (one("x\n  y\nz"), None)
        );
        assert_eq!(read(&["  \"\"\"one line\"\"\"  "]), (one("one line"), None));
        assert_eq!(read(&["\"\"\"", "a\\", "\"\"\""]), (one("a\\\n"), None));
        // Input that ends inside a message gives what was typed; at an empty prompt, nothing.
        assert_eq!(read(&["a \\"]), (vec![], Some("a \n".into())));
        assert_eq!(read(&["\"\"\""]), (vec![], Some(String::new())));
        assert_eq!(read(&[]), (vec![], None));
        let mut r = MessageReader::default();
        r.push("\"\"\"half");
        assert!(r.continuing());
        r.clear();
        assert!(!r.continuing());
        assert_eq!(r.push("next"), Some("next".into()));
    }

    #[test]
    fn commands_reset_set_the_system_prompt_and_leave() {
        let tok = tokenizer();
        let m = model(tok.n_vocab());
        let mut c =
            Conversation::new(&m, &tok, ChatTemplate::Llama2, 256, None, greedy(2)).unwrap();
        say(&mut c, "hello").0.unwrap();
        assert_eq!(c.messages().len(), 2);
        let note = |s: &str| Command::Note(s.to_string());
        assert_eq!(c.command("/reset"), note("[conversation cleared]"));
        assert!(c.messages().is_empty());
        let set = note("[system prompt set; conversation cleared]");
        assert_eq!(c.command("/system  Be brief. "), set);
        assert_eq!(c.system(), Some("Be brief."));
        let removed = note("[system prompt removed; conversation cleared]");
        assert_eq!(c.command("/system"), removed);
        assert_eq!(c.system(), None);
        assert_eq!(c.command("/bye"), Command::Leave);
        assert_eq!(c.command("/?"), Command::Help);
        let unknown = note("[unknown command /nope; /help lists them]");
        assert_eq!(c.command("/nope x"), unknown);
    }

    #[test]
    fn the_second_reply_reuses_the_cached_dialog_and_equals_a_fresh_run() {
        let tok = tokenizer();
        let m = model(tok.n_vocab());
        let new = |n_ctx| {
            Conversation::new(&m, &tok, ChatTemplate::Llama2, n_ctx, None, greedy(4)).unwrap()
        };
        let mut c = new(256);
        let (first, _) = say(&mut c, "hello there");
        let first = first.unwrap();
        assert_eq!(first.reused, 0);
        let (second, events) = say(&mut c, "and again");
        let second = second.unwrap();
        assert!(events.is_empty());
        // Llama 2's format closes a turn and opens the next with BOS: everything up to the end of
        // the first reply is a prefix of the second prompt, and the cache holds all of it but
        // the last token sampled (never fed back).
        let first_prompt = ChatTemplate::Llama2
            .encode(&tok, &[Message::user("hello there")], true)
            .unwrap();
        assert!(second.reused >= first_prompt.len(), "{}", second.reused);
        // The reply does not depend on what came from the cache: a conversation that replays the
        // dialog from scratch answers the same.
        let mut fresh = new(256);
        fresh.messages = c.messages()[..2].to_vec();
        let (again, _) = say(&mut fresh, "and again");
        assert_eq!(again.unwrap().generation.tokens, second.generation.tokens);
    }

    #[test]
    fn a_full_context_drops_the_oldest_turns_and_keeps_the_system_prompt() {
        let tok = tokenizer();
        let m = model(tok.n_vocab());
        let mut c = Conversation::new(
            &m,
            &tok,
            ChatTemplate::Llama2,
            64,
            Some("Be brief.".into()),
            greedy(16),
        )
        .unwrap();
        let mut all_events = Vec::new();
        for i in 0..6 {
            let (r, events) = say(&mut c, &format!("message number {i} with some words"));
            r.unwrap();
            all_events.extend(events);
        }
        assert!(!all_events.is_empty(), "nothing was dropped");
        assert!(
            all_events
                .iter()
                .all(|e| e.ends_with("; the system prompt is kept]")),
            "{all_events:?}"
        );
        assert_eq!(c.system(), Some("Be brief."));
        // The dialog still ends with the last exchange and starts with a user turn.
        let msgs = c.messages();
        assert_eq!(msgs[0].role, "user");
        assert!(msgs[msgs.len() - 2].content.contains("number 5"));
    }

    #[test]
    fn dropped_turns_and_cut_replies_are_told() {
        let d = |turns, system_kept| Dropped { turns, system_kept }.to_string();
        assert_eq!(d(1, false), "[context full: dropped the oldest turn]");
        assert_eq!(
            d(3, true),
            "[context full: dropped the 3 oldest turns; the system prompt is kept]"
        );
        let tok = tokenizer();
        let m = model(tok.n_vocab());
        let mut c =
            Conversation::new(&m, &tok, ChatTemplate::Llama2, 256, None, greedy(2)).unwrap();
        let (r, _) = say(&mut c, "hello");
        let mut r = r.unwrap();
        // A random model seldom ends its reply in two tokens; set the ending to check each note.
        r.generation.finish = FinishReason::Length;
        assert_eq!(
            c.reply_notes(&r, false),
            ["[reply cut at 2 tokens; raise -n for longer replies]"]
        );
        r.generation.finish = FinishReason::Cancelled;
        assert_eq!(c.reply_notes(&r, false), ["[interrupted]"]);
        let verbose = c.reply_notes(&r, true);
        assert_eq!(verbose[0], "[0 prompt tokens reused from the cache]");
        assert_eq!(verbose[1], "[interrupted]");
    }

    #[test]
    fn a_message_too_long_for_the_context_is_refused_and_forgotten() {
        let tok = tokenizer();
        let m = model(tok.n_vocab());
        let mut c = Conversation::new(&m, &tok, ChatTemplate::Llama2, 16, None, greedy(4)).unwrap();
        let (r, _) = say(&mut c, &"word ".repeat(40));
        let e = r.err().unwrap();
        assert!(
            matches!(e, ConversationError::NoRoom { n_ctx: 16, .. }),
            "{e}"
        );
        assert!(!e.is_fatal());
        assert!(c.messages().is_empty());
    }
}
