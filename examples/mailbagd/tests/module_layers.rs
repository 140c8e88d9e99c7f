//! The module graph of the server has no loops: every `use crate::…` and every
//! path through `crate::` points to a module of a lower layer, and inside a
//! folder module (`web/`, `outbound/`) the files use each other one way only
//! and never reach back into their `mod.rs`. The layers are the ones listed in
//! `examples/mailbagd/README.md` ("Inside the server").

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Bottom first. A module may use the modules of the layers below its own.
const LAYERS: &[&[&str]] = &[
    // Comparing secrets.
    &["constant_time"],
    // Dovecot's older password schemes (compared in constant time); small
    // private files replaced whole.
    &["legacy_hash", "private_file"],
    // Plain building blocks: no other module of the crate but those above.
    &[
        "client_endpoint",
        "clock",
        "disk_space",
        "envelope",
        "limits",
        "metrics",
        "password_hash",
        "privileges",
        "proxy",
        "read_chunks",
        "redis_conn",
        "lock_keeper",
        "replies",
        "service_manager",
        "signing_key",
        "signals",
        "spamd_breaker",
        "spool",
        "tls",
    ],
    // Password checks: clear text or a hash; the relay table kept over a restart.
    &["credentials", "relay_table_file"],
    // Failed logins, keyed like the connection limits; the passwd-file user database.
    &["login_limiter", "passwd_file"],
    // The validated configuration.
    &["config"],
    // What reads only the configuration.
    &[
        "client_settings",
        "fd_limit",
        "login_name",
        "maildrop_lease",
        "queue_list",
        "relay",
        "relay_store",
        "release_link",
        "shared_login_limiter",
        "user_admin",
        "user_settings",
    ],
    // What every service shares.
    &["context"],
    // The one accept loop; the delivery pipeline; live reload; queue changes.
    &["delivery", "listener", "queue_admin", "reload"],
    // The services.
    &["metrics_page", "outbound", "pop3", "smtp", "sweeper", "web"],
    // What uses a service: the Spam digest lists the Spam folder as the web page does.
    &["digest"],
    // Wiring and the command line.
    &["cli", "server"],
];

fn src() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

/// Names that follow `prefix` in `text` (`crate::` or `super::`), outside comments.
fn referenced(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` lists.
            if name.is_empty() && after.starts_with('{') {
                let inner = after[1..].split('}').next().unwrap_or("");
                for part in inner.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.insert(n);
                    }
                }
            } else if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// Every `.rs` file below `dir`, with its text.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = fs::read_to_string(&p).expect("read");
            out.push((p.display().to_string(), text));
        }
    }
    out
}

/// The top-level module a file belongs to (`web/login.rs` → `web`).
fn top_module(path: &str) -> String {
    let rel = path
        .strip_prefix(&format!("{}/", src().display()))
        .expect("below src");
    rel.split('/')
        .next()
        .unwrap_or(rel)
        .trim_end_matches(".rs")
        .to_owned()
}

#[test]
fn top_level_modules_are_layered() {
    let layer: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i)))
        .collect();
    let mut seen = BTreeSet::new();
    for (path, text) in files(src()) {
        let module = top_module(&path);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            panic!("{module} ({path}) is not in LAYERS: place it in a layer");
        };
        seen.insert(module.clone());
        for used in referenced(&text, "crate::") {
            if used == module {
                continue;
            }
            let Some(&theirs) = layer.get(used.as_str()) else {
                panic!("{path} uses crate::{used}, which is not in LAYERS");
            };
            assert!(
                theirs < own,
                "{path} ({module}, layer {own}) uses crate::{used} (layer {theirs}): \
                 imports must point to lower layers"
            );
        }
    }
    for (i, mods) in LAYERS.iter().enumerate() {
        for m in *mods {
            assert!(
                seen.contains(*m),
                "LAYERS[{i}] names {m}, which has no file"
            );
        }
    }
}

#[test]
fn files_of_a_folder_module_use_each_other_one_way() {
    for folder in ["web", "outbound"] {
        let dir = src().join(folder);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, text) in files(&dir) {
            let name = Path::new(&path)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let mut uses = referenced(&text, "super::");
            // `use super::*` in a test module is the file itself.
            uses.remove("");
            if name != "mod" {
                // A file never reaches back into its folder's mod.rs: the
                // names it uses from super:: must be sibling files.
                for u in &uses {
                    assert!(
                        dir.join(format!("{u}.rs")).exists() || dir.join(u).is_dir(),
                        "{path} uses super::{u}, which is not a sibling file \
                         (an item of {folder}/mod.rs): a loop with the parent"
                    );
                }
            }
            graph.insert(name, uses);
        }
        // No cycle among the files (depth-first search).
        fn visit(
            n: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) {
            if done.contains(n) {
                return;
            }
            assert!(
                !stack.iter().any(|s| s == n),
                "import loop: {} -> {n}",
                stack.join(" -> ")
            );
            stack.push(n.to_owned());
            for m in graph.get(n).into_iter().flatten() {
                visit(m, graph, stack, done);
            }
            stack.pop();
            done.insert(n.to_owned());
        }
        let mut done = BTreeSet::new();
        for n in graph.keys() {
            visit(n, &graph, &mut Vec::new(), &mut done);
        }
    }
}

#[test]
fn the_reference_scanner_sees_lists_and_paths() {
    let text = "use crate::{config::Config, context};\nlet x = crate::replies::local_error();\n// crate::server\n";
    let found: Vec<String> = referenced(text, "crate::").into_iter().collect();
    assert_eq!(found, ["config", "context", "replies"]);
}
