//! The stanza grammar of cluster.conf, as ocfs2-tools' parser (`o2cb_ctl/jconfig.c`) reads it.
//!
//! What the real parser accepts, checked against `o2cb --config-file`:
//! - a stanza header is a name of letters, digits and `_` in the first column, then `:`, then
//!   nothing but spaces or tabs;
//! - an attribute line starts with one or more spaces or tabs, then a key of letters, digits and
//!   `_`, optional blanks, `=`, optional blanks, and the value to the end of the line (inner
//!   spaces kept, trailing blanks dropped);
//! - `#` starts a comment only in the first column; such a line does not end the stanza;
//! - a blank line, or one of only spaces and tabs, ends the stanza: attributes after it belong
//!   to no stanza and make the file invalid;
//! - stanzas need no blank line between them; the last line needs no newline.
//!
//! The real parser also joins a value ending in `\` with the next line; no cluster.conf value
//! can hold a newline, so such a value is reported instead. Carriage returns make the real
//! parser fail; they are reported once for the whole file, then ignored so that the other
//! problems are found too.

use super::error::Problem;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAttr {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A stanza as written: its name, the line of its header and its attributes in order.
/// A `broken` stanza's header was refused; it only soaks up the lines under it, so that one bad
/// header gives one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawStanza {
    pub name: String,
    pub line: usize,
    pub attrs: Vec<RawAttr>,
    pub broken: bool,
}

/// What an indented line turned out to be.
enum Indented {
    Attr(String, String),
    Header(String),
    Refused,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// At most 40 characters of `s`, for quoting a line in a message.
pub(crate) fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().nth(40).is_some() {
        out.push_str("...");
    }
    out
}

/// Splits `text` into stanzas. Every line that the real parser would refuse adds a problem;
/// parsing goes on after it so that all problems are reported.
pub(crate) fn parse_stanzas(text: &str, problems: &mut Vec<Problem>) -> Vec<RawStanza> {
    let mut stanzas: Vec<RawStanza> = Vec::new();
    // Index of the stanza that attribute lines are added to, if one is open.
    let mut open: Option<usize> = None;
    let mut reported_cr = false;
    // The stanza a blank line closed, and that line, until something else starts.
    let mut ended_by_blank: Option<(usize, usize)> = None;

    for (index, raw_line) in text.split('\n').enumerate() {
        let lineno = index + 1;
        let mut line = raw_line;
        if line.contains('\r') {
            if !reported_cr {
                problems.push(Problem {
                    line: Some(lineno),
                    message: "the file has DOS line endings (carriage returns), which ocfs2-tools \
                              refuses; convert it with dos2unix"
                        .to_string(),
                });
                reported_cr = true;
            }
            line = line.trim_end_matches('\r');
            if line.contains('\r') {
                problems.push(Problem {
                    line: Some(lineno),
                    message: "a carriage return in the middle of the line".to_string(),
                });
                continue;
            }
        }
        if let Some(c) = line.chars().find(|&c| c.is_control() && c != '\t') {
            problems.push(Problem {
                line: Some(lineno),
                message: format!("the line holds a control character (U+{:04X})", c as u32),
            });
            continue;
        }

        if line.chars().all(is_blank) {
            if let Some(i) = open.take() {
                ended_by_blank = Some((i, lineno));
            }
            continue;
        }
        let first = line.chars().next().unwrap_or(' ');
        if first == '#' {
            continue;
        }
        if is_blank(first) {
            let (key, value) = match attribute(line, lineno, problems) {
                Indented::Attr(key, value) => (key, value),
                Indented::Header(name) => {
                    stanzas.push(RawStanza { name, line: lineno, attrs: Vec::new(), broken: true });
                    open = Some(stanzas.len() - 1);
                    ended_by_blank = None;
                    continue;
                }
                Indented::Refused => continue,
            };
            if open.is_none() {
                if let Some((i, blank)) = ended_by_blank.take() {
                    // Attach the rest to the stanza the blank line cut, so that one stray blank
                    // line gives one message instead of one per following line.
                    let header = stanzas.get(i).map_or(0, |s| s.line);
                    problems.push(Problem {
                        line: Some(lineno),
                        message: format!(
                            "the blank line {blank} ends the stanza of line {header}, so '{key} = {}' \
                             belongs to no stanza; remove the blank line",
                            preview(&value)
                        ),
                    });
                    open = Some(i);
                } else {
                    problems.push(Problem {
                        line: Some(lineno),
                        message: format!(
                            "'{key} = {}' is outside any stanza: a stanza starts with a header such as \
                             'node:' in the first column",
                            preview(&value)
                        ),
                    });
                    continue;
                }
            }
            if let Some(stanza) = open.and_then(|i| stanzas.get_mut(i)) {
                stanza.attrs.push(RawAttr { key, value, line: lineno });
            }
            continue;
        }
        ended_by_blank = None;
        let name_len = line.find(|c: char| !is_word_char(c)).unwrap_or(line.len());
        let (name, rest) = line.split_at(name_len);
        // Whatever the verdict on this header, the lines under it belong to it.
        stanzas.push(RawStanza { name: name.to_string(), line: lineno, attrs: Vec::new(), broken: true });
        open = Some(stanzas.len() - 1);
        if !is_word_char(first) {
            problems.push(Problem {
                line: Some(lineno),
                message: format!(
                    "'{}' is neither a stanza header such as 'node:' nor an indented 'key = value' \
                     line nor a comment starting with '#' in the first column",
                    preview(line)
                ),
            });
            continue;
        }
        let Some(after_colon) = rest.strip_prefix(':') else {
            problems.push(Problem {
                line: Some(lineno),
                message: format!(
                    "'{}' is not a stanza header: expected a name and ':', such as 'node:'",
                    preview(line)
                ),
            });
            continue;
        };
        if !after_colon.chars().all(is_blank) {
            problems.push(Problem {
                line: Some(lineno),
                message: format!(
                    "unexpected '{}' after '{name}:'; a stanza header stands alone on its line",
                    preview(after_colon.trim_matches(is_blank))
                ),
            });
            continue;
        }
        if let Some(stanza) = stanzas.last_mut() {
            stanza.broken = false;
        }
    }
    stanzas
}

/// Reads an indented `key = value` line; reports what is wrong with it instead.
fn attribute(line: &str, lineno: usize, problems: &mut Vec<Problem>) -> Indented {
    let body = line.trim_start_matches(is_blank);
    let mut problem = |message: String| problems.push(Problem { line: Some(lineno), message });
    if body.starts_with('#') {
        problem(
            "a comment must start with '#' in the first column; ocfs2-tools refuses an indented comment".to_string(),
        );
        return Indented::Refused;
    }
    let key_len = body.find(|c: char| !is_word_char(c)).unwrap_or(body.len());
    let (key, rest) = body.split_at(key_len);
    if key.is_empty() {
        problem(format!("expected 'key = value' after the indentation, found '{}'", preview(body)));
        return Indented::Refused;
    }
    if let Some(after) = rest.strip_prefix(':') {
        if after.chars().all(is_blank) {
            problem(format!("the stanza header '{key}:' must start in the first column, without indentation"));
            return Indented::Header(key.to_string());
        }
    }
    let Some(after_eq) = rest.trim_start_matches(is_blank).strip_prefix('=') else {
        problem(format!("'{}' is not 'key = value': expected '=' after '{key}'", preview(body)));
        return Indented::Refused;
    };
    let value = after_eq.trim_matches(is_blank);
    if value.ends_with('\\') {
        problem(format!("the value of {key} ends with '\\'; a value cannot continue on the next line"));
        return Indented::Refused;
    }
    Indented::Attr(key.to_string(), value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<RawStanza>, Vec<Problem>) {
        let mut problems = Vec::new();
        let stanzas = parse_stanzas(text, &mut problems);
        (stanzas, problems)
    }

    #[test]
    fn reads_headers_attributes_with_tabs_or_spaces_and_column_zero_comments() {
        let (st, pr) = parse("# top\ncluster:  \n\tname = c\n# inside\n    node_count=2   \n\nnode:\n name = a b \n");
        assert!(pr.is_empty(), "{pr:?}");
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].name, "cluster");
        assert_eq!(st[0].line, 2);
        assert_eq!(
            st[0].attrs,
            vec![
                RawAttr { key: "name".into(), value: "c".into(), line: 3 },
                RawAttr { key: "node_count".into(), value: "2".into(), line: 5 },
            ]
        );
        assert_eq!(st[1].attrs[0].value, "a b");
    }

    #[test]
    fn blank_line_ends_the_stanza() {
        let (_, pr) = parse("cluster:\n\tname = c\n \t\n\tnode_count = 1\n");
        assert_eq!(pr.len(), 1);
        assert_eq!(pr[0].line, Some(4));
        assert!(pr[0].message.contains("the blank line 3 ends the stanza of line 1"), "{}", pr[0].message);
        let (_, pr) = parse("\tname = c\ncluster:\n");
        assert_eq!(pr.len(), 1);
        assert!(pr[0].message.contains("outside any stanza"), "{}", pr[0].message);
    }

    #[test]
    fn a_refused_header_keeps_its_lines_quiet() {
        for text in ["node: x\n\tname = a\n\tnumber = 1\n", "  node:\n\tname = a\n", "no de:\n\tname = a\n"] {
            let (st, pr) = parse(text);
            assert_eq!(pr.len(), 1, "{text:?}: {pr:?}");
            assert!(st.iter().all(|s| s.broken), "{text:?}");
        }
    }

    #[test]
    fn stanzas_need_no_blank_line_between_them() {
        let (st, pr) = parse("cluster:\n\tname = c\nnode:\n\tname = a");
        assert!(pr.is_empty());
        assert_eq!(st.len(), 2);
    }

    #[test]
    fn refuses_what_jconfig_refuses() {
        for (text, line, needle) in [
            ("cluster:\n\t# x\n", 2, "comment must start"),
            ("  cluster:\n", 1, "must start in the first column"),
            ("\t=1\n", 1, "expected 'key = value'"),
            ("cluster\n", 1, "not a stanza header"),
            ("cluster: x\n", 1, "unexpected 'x'"),
            ("cluster:\n\tname c\n", 2, "expected '='"),
            ("cluster:\n\tnode-count = 1\n", 2, "expected '='"),
            ("-x:\n", 1, "neither a stanza header"),
            ("cluster:\n\tname = \\\n", 2, "ends with '\\'"),
            ("cluster:\r\n", 1, "DOS line endings"),
            ("cluster:\n\tname = a\u{1}b\n", 2, "control character (U+0001)"),
        ] {
            let (_, pr) = parse(text);
            assert_eq!(pr.len(), 1, "{text:?}: {pr:?}");
            assert_eq!(pr[0].line, Some(line), "{text:?}");
            assert!(pr[0].message.contains(needle), "{text:?}: {}", pr[0].message);
        }
    }
}
