//! Text measured in terminal cells: sanitising, wrapping and truncating
//! with `unicode-width` over grapheme clusters, the same units ratatui's
//! buffer uses, so a wrapped line never overflows its area whatever the
//! script (emoji, CJK, right-to-left, combining marks).

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Halfwidth katakana sound marks: terminals give them a cell although
/// `unicode-width` says zero (ratatui counts them the same way).
const HALFWIDTH_MARKS: [char; 2] = ['\u{FF9E}', '\u{FF9F}'];

/// Makes untrusted text safe to draw: a tab becomes a space and any other
/// control character (escape sequences included) becomes U+FFFD, except
/// line feeds, which [`wrap`] honours.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Width of one grapheme cluster in cells (0 for one that draws nothing).
pub fn grapheme_width(g: &str) -> usize {
    if g.len() == 1 {
        return usize::from(!g.as_bytes()[0].is_ascii_control());
    }
    if g.chars().any(char::is_control) {
        return 0;
    }
    let marks = g.chars().filter(|c| HALFWIDTH_MARKS.contains(c)).count();
    g.width() + marks
}

/// Width of a string in cells.
pub fn width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// Wraps `text` into lines of at most `max` cells: at line feeds, between
/// words when it can, inside a word when the word alone is too wide.
/// Graphemes that draw nothing are dropped. Always returns one line at least.
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(2); // a wide grapheme must fit somewhere
    let mut out = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = Line::default();
        for token in paragraph.split_word_bounds() {
            let w = width(token);
            if line.width + w <= max {
                line.push_str(token, w);
            } else if token.chars().all(char::is_whitespace) {
                out.push(line.take());
            } else if w <= max {
                out.push(line.take());
                line.push_str(token, w);
            } else {
                for g in token.graphemes(true) {
                    let gw = grapheme_width(g);
                    if line.width + gw > max {
                        out.push(line.take());
                    }
                    line.push_str(g, gw);
                }
            }
        }
        out.push(line.take());
    }
    out
}

/// Cuts `s` to at most `max` cells, ending with `…` when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s
            .graphemes(true)
            .filter(|g| grapheme_width(g) > 0)
            .collect();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for g in s.graphemes(true) {
        let w = grapheme_width(g);
        if used + w > max - 1 {
            break;
        }
        if w > 0 {
            out.push_str(g);
            used += w;
        }
    }
    out.push('…');
    out
}

/// `s` truncated to `cells` and padded with spaces to exactly that width.
pub fn fit(s: &str, cells: usize) -> String {
    let mut out = truncate(s, cells);
    let w = width(&out);
    out.extend(std::iter::repeat_n(' ', cells.saturating_sub(w)));
    out
}

/// The first line of `s` with runs of whitespace folded, for one-line
/// previews.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Default)]
struct Line {
    text: String,
    width: usize,
}

impl Line {
    fn push_str(&mut self, s: &str, w: usize) {
        for g in s.graphemes(true) {
            if grapheme_width(g) > 0 {
                self.text.push_str(g);
            }
        }
        self.width += w;
    }

    fn take(&mut self) -> String {
        self.width = 0;
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_of_wide_and_combining_text() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("日本語"), 6);
        assert_eq!(width("👋"), 2);
        assert_eq!(width("e\u{301}"), 1); // e + combining acute
        assert_eq!(width("שלום"), 4);
        assert_eq!(width("\u{200B}"), 0);
    }

    #[test]
    fn wrap_never_exceeds_the_width() {
        let samples = [
            "hello world, this is a fairly long line that must wrap somewhere",
            "日本語のテキストはスペースなしで長く続きますので途中で折り返す必要があります",
            "emoji 👋👋👋👋👋👋👋👋👋👋👋👋 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
            "עברית עם מילים ארוכות וגם العربية مع كلمات",
            "averyveryveryveryveryverylongwordwithoutanyspacesatall",
        ];
        for s in samples {
            for max in [2usize, 3, 5, 7, 10, 13] {
                for line in wrap(s, max) {
                    assert!(width(&line) <= max, "{line:?} wider than {max}");
                }
            }
        }
    }

    #[test]
    fn wrap_keeps_every_visible_grapheme() {
        let s = "日本語 👋 abc de";
        let joined: String = wrap(s, 4).concat();
        let strip = |x: &str| x.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(strip(&joined), strip(s));
    }

    #[test]
    fn wrap_honours_line_feeds() {
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
        assert_eq!(wrap("", 10), vec![""]);
    }

    #[test]
    fn truncate_and_fit() {
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(truncate("日本語", 4), "日…");
        assert_eq!(width(&fit("日本語", 4)), 4);
        assert_eq!(width(&fit("a", 4)), 4);
    }

    #[test]
    fn sanitize_removes_escape_sequences() {
        assert_eq!(sanitize("a\u{1b}[2Jb\tc\nd"), "a\u{FFFD}[2Jb c\nd");
    }
}
