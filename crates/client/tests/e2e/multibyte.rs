//! Text in every script arrives byte-identical: no normalisation, no
//! trimming, no re-encoding, at the recipient and on the server.

use crate::status::StatusLog;
use crate::support::{TestServer, User};
use chatsync_client::Status;
use std::path::Path;

const CORPUS: &str = "/work/shared/data/chatterbot-corpus";
const LANGUAGES: &[&str] = &[
    "hebrew", "chinese", "japanese", "korean", "persian", "thai", "hindi", "russian", "urdu",
    "tamil",
];
const LINES_PER_LANGUAGE: usize = 4;

/// Samples that must survive as they are, whether or not the corpus exists.
fn inline_samples() -> Vec<String> {
    [
        "👨\u{200d}👩\u{200d}👧\u{200d}👦 family (ZWJ sequence)",
        "e\u{301} (e + combining acute), not é",
        "\u{e9} (precomposed é), not e + U+0301",
        "Hello שָׁלוֹם world 123 مرحبا end",
        "\u{202b}RTL embedding\u{202c} and \u{200f}marks\u{200e}",
        "你好，世界！漢字とかなカナ 한국어",
        "🏳\u{fe0f}\u{200d}🌈 👍🏽 🇫🇷",
        "\u{feff}leading BOM and trailing spaces   ",
        "  two lines\nand a\r\nCRLF\tand a tab",
        "𝕌𝕟𝕚𝕔𝕠𝕕𝕖 𝄞 astral plane",
        "Ａ full-width, ﬁ ligature, Å (U+212B) vs Å",
        "\"quotes\" \\backslash\\ and {\"json\": true}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A few dialogue lines per language from the chatterbot corpus, read with
/// plain string handling: lines of a `conversations:` list look like
/// `- - text` or `  - text`, sometimes quoted.
fn corpus_samples(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for lang in LANGUAGES {
        let Ok(dir) = std::fs::read_dir(root.join(lang)) else {
            continue;
        };
        let mut files: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yml"))
            .collect();
        files.sort();
        let mut taken = 0;
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let mut in_conversations = false;
            for line in text.lines() {
                if line.starts_with("conversations:") {
                    in_conversations = true;
                    continue;
                }
                if !in_conversations || taken == LINES_PER_LANGUAGE {
                    continue;
                }
                let trimmed = line.trim_start();
                let item = trimmed
                    .strip_prefix("- - ")
                    .or_else(|| trimmed.strip_prefix("- "));
                let Some(item) = item else { continue };
                let item = item
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(item);
                if item.is_empty() || item.is_ascii() || item.contains('\0') {
                    continue;
                }
                out.push(item.to_string());
                taken += 1;
            }
            if taken == LINES_PER_LANGUAGE {
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_in_every_script_arrives_byte_identical() {
    let mut bodies = inline_samples();
    let corpus = corpus_samples(Path::new(CORPUS));
    if corpus.is_empty() {
        eprintln!("note: {CORPUS} not found; using the inline samples only");
    }
    bodies.extend(corpus);
    bodies.retain(|b| b.len() <= 4096);

    let server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("שלום 世界 🌍", &["bob"]).await;
    bob.knows(conv).await;
    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());

    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(alice.client.send(conv, body.as_str()).await.unwrap());
    }
    log.wait_all(&ids, Status::Success).await;

    let at_bob = bob.confirmed_timeline(conv, ids.len()).await;
    let at_alice = alice.confirmed_timeline(conv, ids.len()).await;
    let on_server = probe.messages(conv);
    assert_eq!(at_bob.len(), bodies.len());
    for (i, (id, body)) in ids.iter().zip(&bodies).enumerate() {
        for (who, got) in [
            ("bob", at_bob[i].body.as_bytes()),
            ("alice", at_alice[i].body.as_bytes()),
            ("the server", on_server[i].body.as_bytes()),
        ] {
            assert_eq!(
                got,
                body.as_bytes(),
                "{who} holds different bytes for message {i} ({id}): {body:?}"
            );
        }
        assert_eq!(at_bob[i].id, *id);
    }
    let titles: Vec<_> = bob.client.conversations().await.unwrap();
    assert_eq!(titles[0].title.as_bytes(), "שלום 世界 🌍".as_bytes());
}
