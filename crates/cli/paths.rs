//! Where the subcommands' reports go: a file, or stdout for `-`; and the
//! one rule they share, that two of them never go to one place.

use crate::UsageError;
use std::path::{Path, PathBuf};

/// `-`: the report goes to stdout.
pub fn is_stdout(p: &Option<PathBuf>) -> bool {
    p.as_deref() == Some(Path::new("-"))
}

/// Refuse, before anything runs, two of these (flag, path) that name one
/// place: two reports in one file would leave only the last (or a mix of
/// both), two on stdout would interleave, and an output over an input
/// would destroy it.
pub fn distinct(places: &[(&str, &Path)]) -> Result<(), UsageError> {
    let resolved: Vec<PathBuf> = places.iter().map(|(_, p)| resolve(p)).collect();
    for (i, place) in resolved.iter().enumerate() {
        if let Some(j) = resolved[..i].iter().position(|q| q == place) {
            let ((first, path), (second, _)) = (places[j], places[i]);
            let what = if path == Path::new("-") {
                "stdout".to_string()
            } else {
                path.display().to_string()
            };
            return Err(UsageError(if first == second {
                format!("{first} {what} is given twice")
            } else {
                format!("{first} and {second} both name {what}: one would overwrite or garble the other; give each its own")
            }));
        }
    }
    Ok(())
}

/// Where a path points, as far as can be told before the file exists: an
/// existing file resolved (links, `..`), else its resolved folder and its
/// name; `-` stays itself.
fn resolve(p: &Path) -> PathBuf {
    if p == Path::new("-") {
        return p.to_path_buf();
    }
    if let Ok(real) = std::fs::canonicalize(p) {
        return real;
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (p.file_name(), std::fs::canonicalize(dir)) {
        (Some(name), Ok(dir)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_by_two_spellings_is_one_place() {
        let dir = std::env::temp_dir().join(format!("ringport-paths-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let a = dir.join("r.json");
        let b = dir.join("sub/../r.json");
        let err = distinct(&[("--json", &a), ("--csv", &b)]).unwrap_err();
        assert!(err.0.starts_with("--json and --csv both name"), "{}", err.0);
        // Existing or not, the same.
        std::fs::write(&a, "").unwrap();
        assert!(distinct(&[("--json", &a), ("--csv", &b)]).is_err());
        assert!(distinct(&[("--json", &a), ("--csv", &dir.join("r.csv"))]).is_ok());
        let dash = Path::new("-");
        let err = distinct(&[("--json", dash), ("--csv", dash)]).unwrap_err();
        assert!(err.0.contains("both name stdout"), "{}", err.0);
        assert!(distinct(&[("--json", dash), ("--csv", &a)]).is_ok());
        let err = distinct(&[("LOG", &a), ("LOG", &b)]).unwrap_err();
        assert!(err.0.ends_with("is given twice"), "{}", err.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
