//! The multi-line input box: text, a cursor, editing by grapheme, and
//! its layout in cells (hard-wrapped at the box width).

use crate::text::grapheme_width;
use unicode_segmentation::UnicodeSegmentation;

/// Text being composed and the cursor in it (a byte offset on a grapheme
/// boundary).
#[derive(Debug, Default, Clone)]
pub struct Editor {
    text: String,
    cursor: usize,
}

/// The editor laid out for a given width.
#[derive(Debug, PartialEq, Eq)]
pub struct EditorLayout {
    /// Visual lines.
    pub lines: Vec<String>,
    /// Cursor row and column (cells).
    pub cursor: (usize, usize),
}

impl Editor {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether nothing was typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Takes the text out, leaving the editor empty.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: String) {
        self.cursor = text.len();
        self.text = text;
    }

    /// Inserts text at the cursor (control characters other than line
    /// feeds are dropped; CR LF and CR become LF).
    pub fn insert_str(&mut self, s: &str) {
        let clean: String = s
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .filter(|c| *c == '\n' || !c.is_control())
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    /// Inserts one character at the cursor.
    pub fn insert(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.insert_str(c.encode_utf8(&mut buf));
    }

    fn prev_boundary(&self) -> Option<usize> {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map(|g| self.cursor + g.len())
    }

    /// Deletes the grapheme before the cursor.
    pub fn backspace(&mut self) {
        if let Some(at) = self.prev_boundary() {
            self.text.replace_range(at..self.cursor, "");
            self.cursor = at;
        }
    }

    /// Deletes the grapheme after the cursor.
    pub fn delete(&mut self) {
        if let Some(end) = self.next_boundary() {
            self.text.replace_range(self.cursor..end, "");
        }
    }

    /// Moves one grapheme left.
    pub fn left(&mut self) {
        if let Some(at) = self.prev_boundary() {
            self.cursor = at;
        }
    }

    /// Moves one grapheme right.
    pub fn right(&mut self) {
        if let Some(at) = self.next_boundary() {
            self.cursor = at;
        }
    }

    /// Moves to the start of the current line.
    pub fn home(&mut self) {
        self.cursor = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
    }

    /// Moves to the end of the current line.
    pub fn end(&mut self) {
        self.cursor = self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i);
    }

    /// Whether the cursor is on the first line of the text.
    pub fn on_first_line(&self) -> bool {
        !self.text[..self.cursor].contains('\n')
    }

    /// Whether the cursor is on the last line of the text.
    pub fn on_last_line(&self) -> bool {
        !self.text[self.cursor..].contains('\n')
    }

    /// Moves to the same column of the previous (`up`) or next line.
    pub fn vertical(&mut self, up: bool) {
        let start = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[start..self.cursor].graphemes(true).count();
        let target_start = if up {
            if start == 0 {
                return;
            }
            self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1)
        } else {
            match self.text[self.cursor..].find('\n') {
                Some(i) => self.cursor + i + 1,
                None => return,
            }
        };
        let line_end = self.text[target_start..]
            .find('\n')
            .map_or(self.text.len(), |i| target_start + i);
        let line = &self.text[target_start..line_end];
        let offset: usize = line.graphemes(true).take(column).map(str::len).sum();
        self.cursor = target_start + offset;
    }

    /// Lays the text out in lines of at most `width` cells.
    pub fn layout(&self, width: usize) -> EditorLayout {
        let width = width.max(2);
        let mut lines = vec![String::new()];
        let mut col = 0;
        let mut cursor = None;
        for (at, g) in self.text.grapheme_indices(true) {
            if at == self.cursor {
                cursor = Some((lines.len() - 1, col));
            }
            if g == "\n" || g == "\r\n" {
                lines.push(String::new());
                col = 0;
                continue;
            }
            let w = grapheme_width(g);
            if w == 0 {
                continue;
            }
            if col + w > width {
                lines.push(String::new());
                col = 0;
                if at == self.cursor {
                    cursor = Some((lines.len() - 1, 0));
                }
            }
            if let Some(last) = lines.last_mut() {
                last.push_str(g);
            }
            col += w;
        }
        let cursor = cursor.unwrap_or_else(|| {
            if col >= width {
                lines.push(String::new());
                (lines.len() - 1, 0)
            } else {
                (lines.len() - 1, col)
            }
        });
        EditorLayout { lines, cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_by_grapheme() {
        let mut e = Editor::default();
        e.insert_str("a👨‍👩‍👧b");
        e.left();
        e.backspace();
        assert_eq!(e.text(), "ab");
        e.home();
        e.delete();
        assert_eq!(e.text(), "b");
    }

    #[test]
    fn newlines_and_vertical_moves() {
        let mut e = Editor::default();
        e.insert_str("first\nsecond");
        assert!(!e.on_first_line());
        e.vertical(true);
        e.insert('!');
        assert_eq!(e.text(), "first!\nsecond");
        e.vertical(false);
        assert!(e.on_last_line());
    }

    #[test]
    fn layout_wraps_wide_text_and_places_the_cursor() {
        let mut e = Editor::default();
        e.insert_str("日本語です");
        let l = e.layout(4);
        assert_eq!(l.lines, vec!["日本", "語で", "す"]);
        assert_eq!(l.cursor, (2, 2));
        e.set("abcd".into());
        assert_eq!(e.layout(4).cursor, (1, 0));
    }
}
