//! The restored file's directory: made when missing (with its missing parents), and removed
//! again when the restore left nothing in it.

use std::path::{Path, PathBuf};

use super::RestoreError;

/// Makes `dir` and its missing ancestors; returns those it made, outermost first. An ancestor
/// that exists but is not a directory is an error naming it.
pub fn make(dir: &Path) -> Result<Vec<PathBuf>, RestoreError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(RestoreError::OutputNotAFile(format!(
                    "{} is not a directory",
                    d.display()
                )));
            }
            Err(_) => missing.push(d.to_path_buf()),
        }
        at = d.parent();
    }
    missing.reverse();
    for (i, d) in missing.iter().enumerate() {
        let made = std::fs::create_dir(d)
            .or_else(|e| {
                // Made meanwhile by someone else: theirs, not ours to remove.
                if d.is_dir() { Ok(()) } else { Err(e) }
            })
            .and_then(|()| crate::fsutil::sync_dir(d));
        if let Err(e) = made {
            unmake(&missing[..i]);
            return Err(RestoreError::NoOutputDir(format!(
                "{} (cannot create it: {e})",
                d.display()
            )));
        }
    }
    Ok(missing)
}

/// Removes what [`make`] made, innermost first, as far as each is empty.
pub fn unmake(made: &[PathBuf]) {
    for d in made.iter().rev() {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parents_are_made_and_taken_away_again() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        let made = make(&deep).unwrap();
        assert_eq!(
            made,
            vec![t.path().join("a"), t.path().join("a/b"), deep.clone()]
        );
        assert!(deep.is_dir());
        assert!(make(&deep).unwrap().is_empty(), "nothing made twice");
        unmake(&made);
        assert!(!t.path().join("a").exists());
        std::fs::write(t.path().join("f"), b"x").unwrap();
        let e = make(&t.path().join("f/g")).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
    }
}
