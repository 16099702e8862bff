//! Secrets kept in files (`[mqtt] password_file`, `[http] token_file`,
//! `[http] password_file`): one reader, so every section trims, refuses and
//! words its errors the same way.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// The content of the file `key` names, less its trailing line break (an
/// editor's or `echo`'s), so the secret is what the user typed. `key` is the
/// full name, e.g. `"[http] token_file"`; `what` says what the file holds
/// ("token", "password"). A missing, unreadable or empty file is an error
/// naming the key and the file: an empty secret would let anyone in (or
/// nobody), and is always a mistake.
pub(crate) fn read_secret_file(key: &str, file: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read {key} {}: make it a readable text file holding the {what}",
            file.display()
        )
    })?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!(
            "{key} {} is empty: write the {what} into it, or remove {key}",
            file.display()
        );
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_the_line_break_and_refuses_missing_empty_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "pa:ss word\r\n").unwrap();
        assert_eq!(
            read_secret_file("[x] f", &file, "password").unwrap(),
            "pa:ss word"
        );
        std::fs::write(&file, "\n").unwrap();
        let empty = format!(
            "{:#}",
            read_secret_file("[x] f", &file, "password").unwrap_err()
        );
        assert!(
            empty.contains("[x] f") && empty.contains("empty"),
            "{empty}"
        );
        let missing = dir.path().join("nothing");
        let err = format!(
            "{:#}",
            read_secret_file("[x] f", &missing, "token").unwrap_err()
        );
        assert!(
            err.contains("cannot read [x] f") && err.contains("nothing"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            read_secret_file("[x] f", dir.path(), "token").unwrap_err()
        );
        assert!(err.contains("cannot read [x] f"), "{err}");
    }
}
