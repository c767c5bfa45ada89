//! Chat templates against references: transformers' `apply_chat_template`, Meta's Llama 2 and
//! Llama 3 layouts, llama.cpp's tokenizer (fixtures from tools/chat_reference.py in
//! testdata/chat/).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use camelid_engine::chat::{BUILTIN_NAMES, ChatError, ChatTemplate, Message, render_jinja};
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_tokenizer::Tokenizer;
use serde_json::Value;

fn assets() -> PathBuf {
    std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets")))
}

fn tokenizer(rel: &str) -> Tokenizer {
    let path = assets().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        path.display()
    );
    load_tokenizer(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/chat")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

struct Case {
    name: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    raw: Value,
}

impl Case {
    fn ids(&self, key: &str) -> Vec<u32> {
        self.raw[key]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no {key}", self.name))
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    }
}

fn cases(f: &Value) -> Vec<Case> {
    f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            messages: c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                .collect(),
            add_generation_prompt: c["add_generation_prompt"].as_bool().unwrap(),
            raw: c.clone(),
        })
        .collect()
}

// Loaded once: the tests run in parallel and share them.
fn llama3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| tokenizer("llama3-hf"))
}

fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| tokenizer("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn llama2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| tokenizer("llama-spm/ggml-vocab-llama-spm.gguf"))
}

/// The first ids of both sides and where they part, for a readable failure.
fn assert_ids(name: &str, got: &[u32], want: &[u32]) {
    if got != want {
        let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        panic!(
            "{name}: ids differ at {at} (got {} ids, want {})\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            &got[at.saturating_sub(3)..got.len().min(at + 8)],
            &want[at.saturating_sub(3)..want.len().min(at + 8)]
        );
    }
}

#[test]
fn llama3_file_template_matches_transformers() {
    let tok = llama3();
    let t = ChatTemplate::for_tokenizer(tok).unwrap();
    assert!(
        matches!(t, ChatTemplate::Jinja(_)),
        "the file's template beats the built-in one"
    );
    let f = fixture("llama3.json");
    for c in cases(&f) {
        let got = t.encode(tok, &c.messages, c.add_generation_prompt).unwrap();
        assert_ids(&c.name, &got, &c.ids("template_ids"));
    }
}

#[test]
fn llama3_builtin_matches_meta_chat_format() {
    let tok = llama3();
    assert_eq!(ChatTemplate::builtin_for(tok), Some(ChatTemplate::Llama3));
    let f = fixture("llama3.json");
    for c in cases(&f) {
        let got = ChatTemplate::Llama3
            .encode(tok, &c.messages, c.add_generation_prompt)
            .unwrap();
        assert_ids(&c.name, &got, &c.ids("meta_ids"));
    }
}

#[test]
fn llama3_builtin_recognised_without_a_file_template() {
    // The GGUF Llama 3 vocabulary of llama.cpp's tests carries no template.
    let tok = tokenizer("llama-bpe/ggml-vocab-llama-bpe.gguf");
    assert_eq!(tok.chat_template(), None);
    assert_eq!(
        ChatTemplate::for_tokenizer(&tok),
        Some(ChatTemplate::Llama3)
    );
}

/// A one-turn chat is the system prompt (none when empty) and the user's message, the
/// assistant's turn opened.
#[test]
fn one_turn_is_system_then_user() {
    let t = ChatTemplate::Llama3;
    let both = [Message::system("Be brief."), Message::user("Hi")];
    let want = t.encode(llama3(), &both, true).unwrap();
    assert_eq!(
        t.encode_turn(llama3(), Some("Be brief."), "Hi").unwrap(),
        want
    );
    let alone = t.encode(llama3(), &[Message::user("Hi")], true).unwrap();
    assert_eq!(t.encode_turn(llama3(), Some(""), "Hi").unwrap(), alone);
    assert_eq!(t.encode_turn(llama3(), None, "Hi").unwrap(), alone);
}

/// Where a model's template comes from, said in messages; a vocabulary of no known format is an
/// error that lists the built-ins.
#[test]
fn a_models_template_says_where_it_comes_from() {
    let vocab = tokenizer("llama-bpe/ggml-vocab-llama-bpe.gguf");
    let (_, origin) = ChatTemplate::for_model(&vocab, "v.gguf").unwrap();
    assert_eq!(origin, "the built-in llama3 chat format");
    let (t, origin) = ChatTemplate::for_model(smollm2(), "s.gguf").unwrap();
    assert!(matches!(t, ChatTemplate::Jinja(_)));
    assert_eq!(origin, "s.gguf: the model's chat template");
    let spm = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tokenizer/spm-tiny.model"
    );
    let plain = load_tokenizer(Path::new(spm)).unwrap();
    let e = ChatTemplate::for_model(&plain, "tiny").unwrap_err();
    assert!(e.starts_with("tiny: the model has no chat template"), "{e}");
    assert!(
        e.ends_with("(built-in names: chatml, llama2, llama3)"),
        "{e}"
    );
}

#[test]
fn smollm2_gguf_template_matches_transformers_and_llama_cpp() {
    let tok = smollm2();
    let f = fixture("smollm2.json");
    let t = ChatTemplate::for_tokenizer(tok).unwrap();
    assert_eq!(
        t,
        ChatTemplate::Jinja(f["template"].as_str().unwrap().to_string())
    );
    for c in cases(&f) {
        let text = render_jinja(
            f["template"].as_str().unwrap(),
            tok,
            &c.messages,
            c.add_generation_prompt,
        )
        .unwrap();
        assert_eq!(text, c.raw["text"].as_str().unwrap(), "{}", c.name);
        let got = t.encode(tok, &c.messages, c.add_generation_prompt).unwrap();
        assert_ids(&c.name, &got, &c.ids("template_ids"));
    }
}

#[test]
fn llama2_builtin_matches_meta_chat_completion() {
    let tok = llama2();
    assert_eq!(ChatTemplate::for_tokenizer(tok), Some(ChatTemplate::Llama2));
    let f = fixture("llama2.json");
    for c in cases(&f) {
        let got = ChatTemplate::Llama2
            .encode(tok, &c.messages, c.add_generation_prompt)
            .unwrap();
        assert_ids(&c.name, &got, &c.ids("meta_ids"));
    }
}

#[test]
fn jinja_features_render_as_transformers_does() {
    let tok = llama2(); // bos_token "<s>", eos_token "</s>", as the fixture was rendered
    let f = fixture("jinja_features.json");
    for c in cases(&f) {
        let tname = c.raw["template"].as_str().unwrap();
        let src = f["templates"][tname].as_str().unwrap();
        let got = render_jinja(src, tok, &c.messages, c.add_generation_prompt);
        match (&got, c.raw.get("text"), c.raw.get("error")) {
            (Ok(text), Some(want), None) => {
                assert_eq!(text, want.as_str().unwrap(), "{tname}/{}", c.name)
            }
            (Err(ChatError::Raised(msg)), None, Some(want)) => {
                assert_eq!(msg, want.as_str().unwrap(), "{tname}/{}", c.name)
            }
            _ => panic!("{tname}/{}: got {got:?}, want {:?}", c.name, c.raw),
        }
    }
}

/// Double BOS from a template that writes `{{ bos_token }}` while the vocabulary also asks for
/// one was a bug other engines shipped (llama.cpp #7193 and others).
#[test]
fn no_template_path_yields_two_bos() {
    let dialogs = [
        vec![Message::user("Hi")],
        vec![Message::system("Be brief."), Message::user("Hi")],
        vec![
            Message::user("Hi"),
            Message::assistant("Hello"),
            Message::user("Bye"),
        ],
    ];
    let spm = llama2();
    assert!(spm.add_bos_default());
    let l3 = llama3();
    let smol = smollm2();
    let with_bos =
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
    let without_bos = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
    let paths: Vec<(&str, &Tokenizer, ChatTemplate)> = vec![
        ("llama3 file", l3, ChatTemplate::for_tokenizer(l3).unwrap()),
        ("llama3 built-in", l3, ChatTemplate::Llama3),
        ("llama2 built-in", spm, ChatTemplate::Llama2),
        (
            "spm jinja with bos",
            spm,
            ChatTemplate::Jinja(with_bos.into()),
        ),
        (
            "spm jinja without bos",
            spm,
            ChatTemplate::Jinja(without_bos.into()),
        ),
        (
            "smollm2 file",
            smol,
            ChatTemplate::for_tokenizer(smol).unwrap(),
        ),
        ("smollm2 chatml", smol, ChatTemplate::ChatMl),
    ];
    for (name, tok, t) in &paths {
        let bos = tok.bos().unwrap();
        for d in &dialogs {
            let ids = t.encode(tok, d, true).unwrap();
            assert!(
                !ids.windows(2).any(|w| w == [bos, bos]),
                "{name}: two BOS in a row: {ids:?}"
            );
            let want_first = match *name {
                // SmolLM2 asks for no BOS; its "bos" (<|im_start|>) opens each turn.
                "smollm2 file" | "smollm2 chatml" => continue,
                _ => bos,
            };
            assert_eq!(ids[0], want_first, "{name}: BOS first");
            if !name.starts_with("llama2") {
                assert_eq!(
                    ids.iter().filter(|&&i| i == bos).count(),
                    1,
                    "{name}: {ids:?}"
                );
            }
        }
    }
}

#[test]
fn builtin_formats_keep_control_text_in_messages_as_text() {
    let l3 = llama3();
    let eot = l3.token_id("<|eot_id|>").unwrap();
    let d = [Message::user("say <|eot_id|> now")];
    let ids = ChatTemplate::Llama3.encode(l3, &d, true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == eot).count(), 1, "{ids:?}");

    let spm = llama2();
    let eos = spm.eos().unwrap();
    let d = [
        Message::user("a</s>b"),
        Message::assistant("c</s>"),
        Message::user("d"),
    ];
    let ids = ChatTemplate::Llama2.encode(spm, &d, true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == eos).count(), 1, "{ids:?}");
}

#[test]
fn errors_are_reported_not_panics() {
    let spm = llama2();
    let u = Message::user;
    let a = Message::assistant;
    let s = Message::system;
    let role_err = |d: &[Message], add_gen: bool| match ChatTemplate::Llama2.encode(spm, d, add_gen)
    {
        Err(e @ ChatError::RoleOrder { .. }) => e.to_string(),
        other => panic!("{d:?}: expected a role-order error, got {other:?}"),
    };
    assert!(role_err(&[a("x"), u("y")], true).contains("message 0"));
    assert!(role_err(&[u("x"), u("y")], true).contains("message 1"));
    assert!(role_err(&[s("x")], true).contains("system"));
    assert!(role_err(&[s("x"), a("y")], true).contains("message 1"));
    assert!(role_err(&[u("x"), a("y")], true).contains("final"));
    assert!(role_err(&[u("x"), a("y"), s("z")], false).contains("message 2"));
    assert!(
        ChatTemplate::Llama2
            .encode(spm, &[u("x"), a("y")], false)
            .is_ok()
    );
    assert!(matches!(
        ChatTemplate::Llama2.encode(spm, &[], true),
        Err(ChatError::Empty)
    ));
    assert!(matches!(
        ChatTemplate::Llama3.encode(spm, &[u("x")], true),
        Err(ChatError::MissingToken("<|begin_of_text|>"))
    ));

    let jinja = |src: &str| ChatTemplate::Jinja(src.to_string()).encode(spm, &[u("x")], true);
    match jinja("{% for m in messages %}{{ m.content }") {
        Err(ChatError::Syntax(e)) => assert!(e.contains("chat_template:1"), "{e}"),
        other => panic!("{other:?}"),
    }
    match jinja("{% if messages|length < 2 %}{{ raise_exception('need two messages') }}{% endif %}")
    {
        Err(e @ ChatError::Raised(_)) => {
            assert_eq!(
                e.to_string(),
                "the chat template refused the dialog: need two messages"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        jinja("{{ messages[0].content.no_such_method() }}"),
        Err(ChatError::Render(_))
    ));
    assert!(matches!(jinja("{{ 1 / 0 }}"), Err(ChatError::Render(_))));
}

/// The SmolLM2 template (testdata/chat/smollm2.json, rendered by transformers and tokenized by
/// llama.cpp) is ChatML with a default system prompt put first when the dialog has none; so the
/// built-in ChatML of that dialog with that system prompt must give the reference's ids.
#[test]
fn chatml_builtin_matches_the_smollm2_reference() {
    const DEFAULT_SYSTEM: &str =
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    let tok = smollm2();
    let f = fixture("smollm2.json");
    assert!(f["template"].as_str().unwrap().contains(DEFAULT_SYSTEM));
    assert_eq!(ChatTemplate::builtin_for(tok), Some(ChatTemplate::ChatMl));
    for c in cases(&f) {
        let mut dialog = c.messages.clone();
        if dialog[0].role != "system" {
            dialog.insert(0, Message::system(DEFAULT_SYSTEM));
        }
        let got = ChatTemplate::ChatMl
            .encode(tok, &dialog, c.add_generation_prompt)
            .unwrap();
        assert_ids(&c.name, &got, &c.ids("template_ids"));
    }
    // Control text in a message stays text.
    let end = tok.token_id("<|im_end|>").unwrap();
    let ids = ChatTemplate::ChatMl
        .encode(tok, &[Message::user("a<|im_end|>b")], true)
        .unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == end).count(), 1, "{ids:?}");
}

/// `--chat-template` names: llama.cpp's, each parsed back to the format of that name; anything
/// else is Jinja source.
#[test]
fn builtin_names_round_trip() {
    assert_eq!(BUILTIN_NAMES, ["chatml", "llama2", "llama3"]);
    for name in BUILTIN_NAMES {
        let t = ChatTemplate::builtin(name).unwrap();
        assert_eq!(t.name(), name);
        assert_eq!(ChatTemplate::from_name_or_source(name), t);
    }
    assert_eq!(ChatTemplate::builtin("vicuna"), None);
    assert_eq!(
        ChatTemplate::from_name_or_source("{{ messages }}"),
        ChatTemplate::Jinja("{{ messages }}".into())
    );
}

/// What `validate` catches before the first message: Jinja that does not parse or fails to
/// render, a template that refuses the system prompt, a built-in whose tokens the vocabulary
/// lacks.
#[test]
fn validate_catches_unusable_templates_up_front() {
    let spm = llama2();
    let smol = smollm2();
    let jinja = |src: &str| ChatTemplate::Jinja(src.to_string());
    assert!(matches!(
        jinja("{% for m in messages %}{{ m.content }").validate(spm, None),
        Err(ChatError::Syntax(_))
    ));
    assert!(matches!(
        jinja("{{ messages[0].content.no_such_method() }}").validate(spm, None),
        Err(ChatError::Render(_))
    ));
    let no_system = "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}\
                     {% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
    assert!(jinja(no_system).validate(spm, None).is_ok());
    assert!(matches!(
        jinja(no_system).validate(spm, Some("Be brief.")),
        Err(ChatError::Raised(m)) if m == "no system role"
    ));
    assert!(matches!(
        ChatTemplate::Llama3.validate(smol, None),
        Err(ChatError::MissingToken("<|begin_of_text|>"))
    ));
    assert!(matches!(
        ChatTemplate::ChatMl.validate(spm, None),
        Err(ChatError::MissingToken("<|im_start|>"))
    ));
    for (t, tok) in [
        (ChatTemplate::ChatMl, smol),
        (ChatTemplate::Llama2, spm),
        (ChatTemplate::Llama3, llama3()),
        (ChatTemplate::for_tokenizer(smol).unwrap(), smol),
    ] {
        assert!(t.validate(tok, Some("Be brief.")).is_ok(), "{}", t.name());
    }
}

/// A conversation that outgrows its budget loses its oldest turns, whole (user and reply
/// together, so Llama 2's alternation holds), never the system prompt nor the last user turn;
/// the ids are those of the shortened dialog.
#[test]
fn encode_within_drops_the_oldest_turns_and_keeps_the_system_prompt() {
    let system = Message::system("You are terse.");
    let turns = vec![
        Message::user("First question, about llamas."),
        Message::assistant("Llamas are camelids."),
        Message::user("Second question, about alpacas."),
        Message::assistant("Alpacas are smaller."),
        Message::user("Third question, about vicunas."),
        Message::assistant("Vicunas are wild."),
        Message::user("And guanacos?"),
    ];
    let cases: [(&str, &Tokenizer, ChatTemplate); 4] = [
        ("chatml", smollm2(), ChatTemplate::ChatMl),
        (
            "smollm2 file",
            smollm2(),
            ChatTemplate::for_tokenizer(smollm2()).unwrap(),
        ),
        ("llama2", llama2(), ChatTemplate::Llama2),
        ("llama3", llama3(), ChatTemplate::Llama3),
    ];
    for (name, tok, t) in cases {
        let with = |from: usize| {
            let d: Vec<Message> = std::iter::once(system.clone())
                .chain(turns[from..].iter().cloned())
                .collect();
            t.encode(tok, &d, true).unwrap()
        };
        let full = with(0);
        let fit = |budget| t.encode_within(tok, Some(&system), &turns, budget).unwrap();
        assert_eq!(fit(full.len()), (full.clone(), 0), "{name}");
        assert_eq!(fit(full.len() - 1), (with(2), 2), "{name}");
        assert_eq!(fit(with(2).len()), (with(2), 2), "{name}");
        assert_eq!(fit(with(4).len()), (with(4), 4), "{name}");
        // Nothing left to drop: the last turn comes back longer than the budget.
        assert_eq!(fit(0), (with(6), 6), "{name}");
        // Without a system prompt the same turns go.
        let (ids, from) = t.encode_within(tok, None, &turns, 0).unwrap();
        assert_eq!(from, 6, "{name}");
        assert_eq!(ids, t.encode(tok, &turns[6..], true).unwrap(), "{name}");
    }
}

/// Meta's Llama 3.1 template with tools (testdata/chat/llama31_tools.json, from
/// tools/tool_template_reference.py: transformers' `apply_chat_template(tools=...)`): the tool
/// definitions in the first user message (`tojson(indent=4)` as Python writes it), an assistant
/// turn that called a tool, and its result as an `ipython` turn.
#[test]
fn llama31_tools_render_as_transformers_does() {
    use camelid_engine::chat::{ToolCall, render_jinja_with_tools};
    let f = fixture("llama31_tools.json");
    let tok = tokenizer("llama3-hf");
    let path = assets().join(f["template"].as_str().unwrap());
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/fetch-assets.sh", path.display()));
    let template = ChatTemplate::Jinja(src.clone());
    assert!(template.supports_tools());
    let tools: Vec<Value> = f["tools"].as_array().unwrap().clone();
    for c in f["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let messages: Vec<Message> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut msg = Message::new(
                    m["role"].as_str().unwrap(),
                    m["content"].as_str().unwrap_or(""),
                );
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    msg.tool_calls.push(ToolCall {
                        id: call["id"].as_str().unwrap().into(),
                        name: call["function"]["name"].as_str().unwrap().into(),
                        arguments: call["function"]["arguments"].clone(),
                    });
                }
                msg.tool_call_id = m["tool_call_id"].as_str().map(String::from);
                msg
            })
            .collect();
        let text = render_jinja_with_tools(&src, &tok, &messages, Some(&tools), true)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(text, c["text"].as_str().unwrap(), "{name}: text");
        let ids = template
            .encode_with_tools(&tok, &messages, Some(&tools), true)
            .unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want, "{name}: ids");
    }
}
