//! The subject tagger on arbitrary header blocks: no panic, the output header block is
//! well-formed and ends with an empty line, the body is untouched, chunking does not
//! matter, and rewriting twice equals rewriting once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_spam_tag::{
    HeaderAction, HeaderRewriter, RewriteOptions, RuleName, Score, Template, Verdict,
};

const TEMPLATES: &[&str] = &[
    "**SPAM( _SCORE_)**",
    "[SPAM _SCORE(0)_/_REQD_]",
    "*** SPAM ***",
    "_YESNOCAPS_ _HITS_ _TESTS_:",
    "(_STARS_)",
];

fn rewrite(msg: &[u8], action: &HeaderAction, opts: &RewriteOptions, chunk: usize) -> Vec<u8> {
    let mut rw = HeaderRewriter::new(action.clone(), opts.clone());
    let mut out = Vec::new();
    for c in msg.chunks(chunk.max(1)) {
        rw.feed(c, &mut out)
            .expect("input is below the header limit");
    }
    rw.finish(&mut out).expect("finish");
    out
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Independent oracle: where the body of `msg` starts (the rules in the tagger docs).
fn body_start(msg: &[u8]) -> usize {
    let mut pos = 0;
    let mut first = true;
    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            return end;
        }
        if is_wsp(content[0]) {
            if first {
                return pos;
            }
        } else {
            let colon = content.iter().position(|&b| b == b':');
            let ok = colon.is_some_and(|c| {
                let mut name = &content[..c];
                while let [rest @ .., last] = name {
                    if is_wsp(*last) { name = rest } else { break }
                }
                !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
            });
            if !ok {
                return pos;
            }
        }
        first = false;
        pos = end;
    }
    msg.len()
}

fuzz_target!(|data: &[u8]| {
    let [sel, score_hi, score_lo, chunk, rest @ ..] = data else {
        return;
    };
    let tenths = i32::from(i16::from_be_bytes([*score_hi, *score_lo]));
    let rules: Vec<RuleName> = ["GTUBE", "MISSING_DATE", "A_1"]
        .iter()
        .take(usize::from(sel >> 6))
        .map(|r| RuleName::new(r).unwrap())
        .collect();
    let action = match sel & 7 {
        0 => HeaderAction::Untag,
        1 => HeaderAction::Strip,
        2 => HeaderAction::Unscanned,
        n => HeaderAction::Mark {
            verdict: Verdict::new(Score::from_tenths(tenths), rules),
            required: Score::DEFAULT_THRESHOLD,
            tag_subject: n != 3,
        },
    };
    let mut opts = RewriteOptions::default();
    opts.template =
        Template::new(TEMPLATES[usize::from((sel >> 3) & 7) % TEMPLATES.len()]).unwrap();
    opts.fold_width = 40 + usize::from(*chunk & 63);

    let out = rewrite(rest, &action, &opts, rest.len());
    assert_eq!(
        out,
        rewrite(rest, &action, &opts, usize::from(*chunk)),
        "chunking changed the output"
    );

    // The body is the input's body, byte for byte, after an empty line.
    let body = &rest[body_start(rest)..];
    assert!(out.ends_with(body), "body changed");
    let head = &out[..out.len() - body.len()];
    assert!(head.ends_with(b"\n"), "header block not terminated");
    let head_body = head.strip_suffix(b"\n").unwrap();
    let head_body = head_body.strip_suffix(b"\r").unwrap_or(head_body);
    assert!(
        head_body.is_empty() || head_body.ends_with(b"\n"),
        "no empty line before the body"
    );

    // Lines we wrote stay within 998 bytes; no forged X-Spam-* header survives.
    let strip = !matches!(action, HeaderAction::Untag);
    let mut ours = false;
    for line in head_body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if !is_wsp(line[0]) {
            let lower = line.to_ascii_lowercase();
            ours = strip && lower.starts_with(b"x-spam-");
            if strip && lower.starts_with(b"x-spam-") {
                assert!(
                    [
                        &b"x-spam-flag: yes"[..],
                        b"x-spam-level:",
                        b"x-spam-status: ",
                        b"x-spam-prev-subject:"
                    ]
                    .iter()
                    .any(|p| lower.starts_with(p)),
                    "foreign X-Spam header kept: {:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        if ours {
            assert!(line.len() <= 998);
        }
    }

    // Idempotent.
    assert_eq!(
        rewrite(&out, &action, &opts, out.len()),
        out,
        "second rewrite changed the output"
    );
});
