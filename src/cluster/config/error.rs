//! Why a cluster.conf (or /etc/default/o2cb) was refused: the file, the line and the problem in
//! words a person can act on. One error can carry several problems, so that a person fixing a
//! file sees all of them at once instead of one per attempt.

use std::fmt;

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the file the problem is on, when it belongs to a line.
    pub line: Option<usize>,
    /// The problem, in plain words.
    pub message: String,
}

/// A configuration that could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: String,
    problems: Vec<Problem>,
    errno: i32,
}

impl ConfigError {
    /// A single problem of `file` (EINVAL).
    pub fn new(file: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.into(),
            problems: vec![Problem { line, message: message.into() }],
            errno: libc::EINVAL,
        }
    }

    /// Several problems of `file` (EINVAL), ordered by line; problems of the whole file first.
    pub fn from_problems(file: impl Into<String>, mut problems: Vec<Problem>) -> ConfigError {
        if problems.is_empty() {
            problems.push(Problem { line: None, message: "the configuration is not valid".to_string() });
        }
        problems.sort_by_key(|p| p.line);
        ConfigError { file: file.into(), problems, errno: libc::EINVAL }
    }

    /// The file could not be read or written; `doing` says what was tried ("cannot read").
    pub fn io(file: impl Into<String>, doing: &str, e: &std::io::Error) -> ConfigError {
        ConfigError {
            file: file.into(),
            problems: vec![Problem { line: None, message: format!("{doing}: {e}") }],
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The same error with another errno (ENOENT for a missing node, for example).
    pub fn with_errno(mut self, errno: i32) -> ConfigError {
        self.errno = errno;
        self
    }

    /// The file (or other source, such as "environment") the problems are in.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line of the first problem.
    pub fn line(&self) -> Option<usize> {
        self.problems.first().and_then(|p| p.line)
    }

    /// The first problem's message.
    pub fn message(&self) -> &str {
        self.problems.first().map(|p| p.message.as_str()).unwrap_or("")
    }

    /// Every problem found, ordered by line.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The errno a C caller should see (positive).
    pub fn errno(&self) -> i32 {
        self.errno
    }
}

impl fmt::Display for ConfigError {
    /// One line per problem: `FILE:LINE: MESSAGE`, or `FILE: MESSAGE` when no line applies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match p.line {
                Some(line) => write!(f, "{}:{}: {}", self.file, line, p.message)?,
                None => write!(f, "{}: {}", self.file, p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_one_problem_per_line_ordered_by_line() {
        let e = ConfigError::from_problems(
            "/etc/ocfs2/cluster.conf",
            vec![
                Problem { line: Some(12), message: "second".into() },
                Problem { line: Some(3), message: "first".into() },
                Problem { line: None, message: "whole file".into() },
            ],
        );
        assert_eq!(
            e.to_string(),
            "/etc/ocfs2/cluster.conf: whole file\n/etc/ocfs2/cluster.conf:3: first\n/etc/ocfs2/cluster.conf:12: second"
        );
        assert_eq!(e.line(), None);
        assert_eq!(e.errno(), libc::EINVAL);
    }

    #[test]
    fn io_error_keeps_the_os_errno() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = ConfigError::io("/x", "cannot read", &io);
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(e.to_string().starts_with("/x: cannot read: "));
    }
}
