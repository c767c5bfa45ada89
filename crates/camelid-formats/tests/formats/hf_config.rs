//! config.json: published configs (testdata/hf_config/, copied from the model repositories)
//! parse into the values their model cards state (see shared LLAMA.md).

use std::path::Path;

use camelid_formats::Error;
use camelid_formats::hf_config::{self, IdOrIds};

use crate::{fixture, scratch_dir, testdata};

/// Both layouts of every published config give the values transformers resolves from it
/// (testdata/hf_config/reference.json, from tools/hf_config_reference.py). The defaults applied
/// here are `LlamaConfig`'s, for fields the older files leave out.
#[test]
fn both_layouts_match_transformers() {
    let reference = fixture("hf_config/reference.json");
    for (name, r) in reference["configs"].as_object().unwrap() {
        for rel in [
            format!("hf_config/{name}"),
            format!("hf_config/transformers5/{name}"),
        ] {
            let c = hf_config::load(&testdata().join(&rel)).unwrap();
            let u = |v: Option<usize>| v.map(|x| x as u64);
            let num = |key: &str| r[key].as_u64();
            assert_eq!(u(c.vocab_size), num("vocab_size"), "{rel}");
            assert_eq!(u(c.hidden_size), num("hidden_size"), "{rel}");
            assert_eq!(u(c.intermediate_size), num("intermediate_size"), "{rel}");
            assert_eq!(u(c.num_hidden_layers), num("num_hidden_layers"), "{rel}");
            assert_eq!(
                u(c.num_attention_heads),
                num("num_attention_heads"),
                "{rel}"
            );
            assert_eq!(
                u(c.num_key_value_heads.or(c.num_attention_heads)),
                num("num_key_value_heads"),
                "{rel}"
            );
            let head_dim = c.head_dim.or(Some(
                c.hidden_size.unwrap() / c.num_attention_heads.unwrap(),
            ));
            assert_eq!(u(head_dim), num("head_dim"), "{rel}");
            assert_eq!(c.rms_norm_eps, r["rms_norm_eps"].as_f64(), "{rel}");
            assert_eq!(
                u(c.max_position_embeddings),
                num("max_position_embeddings"),
                "{rel}"
            );
            assert_eq!(
                c.tie_word_embeddings,
                r["tie_word_embeddings"].as_bool(),
                "{rel}"
            );
            let ids = |v: &Option<IdOrIds>| v.as_ref().map(IdOrIds::ids).unwrap_or_default();
            let want = |key: &str| -> Vec<u32> {
                r[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            };
            assert_eq!(ids(&c.bos_token_id), want("bos_token_id"), "{rel}");
            assert_eq!(ids(&c.eos_token_id), want("eos_token_id"), "{rel}");

            let rope = c
                .rope_parameters
                .clone()
                .or(c.rope_scaling.clone())
                .unwrap_or_default();
            let theta = c.rope_theta.or(rope.rope_theta).unwrap_or(10000.0);
            assert_eq!(Some(theta), r["rope_theta"].as_f64(), "{rel}");
            assert_eq!(
                rope.rope_type.as_deref().unwrap_or("default"),
                r["rope_type"],
                "{rel}"
            );
            assert_eq!(rope.factor, r["rope_factor"].as_f64(), "{rel}");
            assert_eq!(rope.low_freq_factor, r["low_freq_factor"].as_f64(), "{rel}");
            assert_eq!(
                rope.high_freq_factor,
                r["high_freq_factor"].as_f64(),
                "{rel}"
            );
            assert_eq!(
                u(rope.original_max_position_embeddings),
                num("original_max_position_embeddings"),
                "{rel}"
            );
        }
    }
}

#[test]
fn llama_3_1_8b_instruct() {
    let c = hf_config::load(&testdata().join("hf_config/llama-3.1-8b-instruct.json")).unwrap();
    assert_eq!(
        c.architectures.as_deref(),
        Some(&["LlamaForCausalLM".to_owned()][..])
    );
    assert_eq!(c.model_type.as_deref(), Some("llama"));
    assert_eq!(
        (
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads
        ),
        (Some(4096), Some(32), Some(32), Some(8))
    );
    assert_eq!(
        (c.intermediate_size, c.vocab_size),
        (Some(14336), Some(128256))
    );
    assert_eq!((c.rope_theta, c.rms_norm_eps), (Some(500000.0), Some(1e-5)));
    assert_eq!(c.max_position_embeddings, Some(131072));
    assert_eq!(c.bos_token_id, Some(IdOrIds::One(128000)));
    assert_eq!(
        c.eos_token_id.as_ref().unwrap().ids(),
        [128001, 128008, 128009]
    );
    assert_eq!(c.tie_word_embeddings, Some(false));
    assert_eq!(c.weights_dtype(), Some("bfloat16"));
    assert_eq!(c.head_dim, None);
    let rope = c.rope_scaling.unwrap();
    assert_eq!(rope.rope_type.as_deref(), Some("llama3"));
    assert_eq!(
        (rope.factor, rope.low_freq_factor, rope.high_freq_factor),
        (Some(8.0), Some(1.0), Some(4.0))
    );
    assert_eq!(rope.original_max_position_embeddings, Some(8192));
}

#[test]
fn llama_2_7b_has_null_rope_scaling_and_single_ids() {
    // A folder holding config.json works as well as the file.
    let dir = scratch_dir("hf_config_folder");
    std::fs::copy(
        testdata().join("hf_config/llama-2-7b.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let c = hf_config::load(&dir).unwrap();
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.num_key_value_heads, Some(32));
    assert_eq!(c.eos_token_id, Some(IdOrIds::One(2)));
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.weights_dtype(), Some("float16"));
}

#[test]
fn llama_3_2_1b_is_tied_with_rope_factor_32() {
    let c = hf_config::load(&testdata().join("hf_config/llama-3.2-1b.json")).unwrap();
    assert_eq!(c.tie_word_embeddings, Some(true));
    assert_eq!(c.head_dim, Some(64));
    assert_eq!(c.rope_scaling.unwrap().factor, Some(32.0));
}

#[test]
fn rope_scaling_accepts_the_old_type_key() {
    let path = Path::new("old.json");
    let c = hf_config::parse(r#"{"rope_scaling": {"type": "linear", "factor": 2}}"#, path).unwrap();
    let rope = c.rope_scaling.unwrap();
    assert_eq!(
        (rope.rope_type.as_deref(), rope.factor),
        (Some("linear"), Some(2.0))
    );
    let both = r#"{"rope_scaling": {"type": "llama3", "rope_type": "llama3", "factor": 8.0}}"#;
    assert_eq!(
        hf_config::parse(both, path)
            .unwrap()
            .rope_scaling
            .unwrap()
            .rope_type
            .as_deref(),
        Some("llama3")
    );
    let clash = r#"{"rope_scaling": {"type": "linear", "rope_type": "llama3"}}"#;
    let e = hf_config::parse(clash, path).unwrap_err().to_string();
    assert!(
        e.contains("field `rope_scaling`")
            && e.contains("\"rope_type\" is \"llama3\" but \"type\" is \"linear\""),
        "{e}"
    );
}

#[test]
fn errors_name_the_file_field_and_position() {
    let path = Path::new("dir/config.json");
    let e = hf_config::parse(
        "{\n  \"hidden_size\": 4096,\n  \"vocab_size\": \"many\"\n}",
        path,
    )
    .unwrap_err();
    match &e {
        Error::Config { field, .. } => assert_eq!(field, "vocab_size"),
        other => panic!("{other:?}"),
    }
    let e = e.to_string();
    assert!(
        e.starts_with(
            "dir/config.json: invalid config field `vocab_size`: invalid type: string \"many\""
        ),
        "{e}"
    );
    assert!(e.contains("line 3 column"), "{e}");

    let e = hf_config::parse("{\"hidden_size\": 4096,,}", path)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("dir/config.json: invalid config: not valid JSON:"),
        "{e}"
    );
    assert!(e.contains("line 1 column 22"), "{e}");

    let e = hf_config::parse("{\"num_key_value_heads\": -8}", path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `num_key_value_heads`"), "{e}");

    let e = hf_config::load(Path::new("no/such/config.json"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("no/such/config.json: "), "{e}");
}
