//! Reading a transcript in the chitchat dataset's shape.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The excerpt shipped with the binary.
const EXCERPT: &str = include_str!("../../data/chitchat-excerpt.json");

#[derive(Deserialize)]
struct RawConversation {
    messages: Vec<Vec<RawMessage>>,
}

#[derive(Deserialize)]
struct RawMessage {
    text: String,
    timestamp: String,
    sender: String,
}

/// One line of a conversation.
#[derive(Clone, Debug)]
pub struct Line {
    /// Dataset sender id.
    pub sender: String,
    /// Text as typed.
    pub text: String,
    /// Seconds since the conversation's first message.
    pub at: f64,
}

/// One conversation to replay.
#[derive(Clone, Debug)]
pub struct Script {
    /// Lines in the order they were typed.
    pub lines: Vec<Line>,
}

impl Script {
    /// Distinct senders, in order of first appearance.
    pub fn senders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in &self.lines {
            if !out.contains(&l.sender) {
                out.push(l.sender.clone());
            }
        }
        out
    }
}

/// Loads the shipped excerpt, or a file of the same shape.
pub fn load(path: Option<&Path>, limit: Option<usize>) -> anyhow::Result<Vec<Script>> {
    let text = match path {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => EXCERPT.to_string(),
    };
    let raw: BTreeMap<String, RawConversation> =
        serde_json::from_str(&text).context("the transcript is not in the chitchat shape")?;
    let mut scripts = Vec::new();
    for conv in raw.into_values() {
        let flat: Vec<RawMessage> = conv.messages.into_iter().flatten().collect();
        let first = flat.first().and_then(|m| seconds(&m.timestamp));
        let lines: Vec<Line> = flat
            .into_iter()
            .filter(|m| !m.text.is_empty())
            .map(|m| Line {
                at: match (first, seconds(&m.timestamp)) {
                    (Some(f), Some(t)) => (t - f).max(0.0),
                    _ => 0.0,
                },
                sender: m.sender,
                text: m.text,
            })
            .collect();
        if !lines.is_empty() {
            scripts.push(Script { lines });
        }
        if limit.is_some_and(|l| scripts.len() >= l) {
            break;
        }
    }
    anyhow::ensure!(!scripts.is_empty(), "the transcript holds no messages");
    Ok(scripts)
}

/// Seconds of an ISO 8601 UTC timestamp `YYYY-MM-DDTHH:MM:SSZ` since an
/// arbitrary epoch (only differences are used).
fn seconds(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let s: f64 = t.next()?.parse().ok()?;
    // Days from a civil date (proleptic Gregorian), Howard Hinnant's method.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe;
    Some((days * 86_400 + h * 3600 + mi * 60) as f64 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_loads_with_offsets() {
        let scripts = load(None, None).expect("excerpt");
        assert_eq!(scripts.len(), 11);
        let total: usize = scripts.iter().map(|s| s.lines.len()).sum();
        assert_eq!(total, 335);
        for s in &scripts {
            assert_eq!(s.senders().len(), 2);
            assert!(s.lines.windows(2).all(|w| w[0].at <= w[1].at));
        }
    }

    #[test]
    fn timestamps_differ_in_seconds_across_days() {
        let a = seconds("2018-02-28T23:59:50Z").expect("a");
        let b = seconds("2018-03-01T00:00:10Z").expect("b");
        assert_eq!(b - a, 20.0);
    }
}
