//! The shell's local commands, as in sftp: `lls` lists a local folder,
//! `lcd` changes the local folder (where `get` saves and `put` reads
//! relative paths), `lpwd` prints it. `~` stands for the home folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::anyhow;

use super::output::{clean, clean_path, human_size, io_words, utc_time};

/// `lls [PATH]`: the entries of a folder (hidden ones left out, as `ls`
/// does) or one file, as a table like `ls`'s. Folders end in `/`.
///
/// # Errors
/// If `path` cannot be read.
pub fn lls(path: Option<&Path>) -> anyhow::Result<String> {
    let path = &expand_home(path.unwrap_or(Path::new(".")));
    let meta = fs::metadata(path).map_err(|e| anyhow!("{}: {}", clean_path(path), io_words(&e)))?;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if meta.is_dir() {
        let entries =
            fs::read_dir(path).map_err(|e| anyhow!("{}: {}", clean_path(path), io_words(&e)))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // An entry that vanished or cannot be looked at is left out.
            if let Ok(m) = fs::metadata(entry.path()) {
                rows.push(row(&name, &m));
            }
        }
    } else {
        rows.push(row(&path.display().to_string(), &meta));
    }
    rows.sort_by(|a, b| a.2.cmp(&b.2));
    if rows.is_empty() {
        return Ok("no files\n".to_string());
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let mut out = format!("{:>width$}  {:<16}  NAME\n", "SIZE", "MODIFIED (UTC)");
    for (size, time, name) in rows {
        out.push_str(&format!("{size:>width$}  {time:<16}  {name}\n"));
    }
    Ok(out)
}

/// One `lls` row: size (`-` for a folder), time, cleaned name.
fn row(name: &str, m: &fs::Metadata) -> (String, String, String) {
    let secs = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let (size, suffix) = if m.is_dir() {
        ("-".to_string(), "/")
    } else {
        (human_size(m.len()), "")
    };
    (size, utc_time(secs), format!("{}{suffix}", clean(name)))
}

/// `lcd [DIR]`: changes the local folder; to the home folder without DIR.
///
/// # Errors
/// If `dir` is not a folder one can enter, or there is no home folder.
pub fn lcd(dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => expand_home(d),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("no home folder: say which folder"))?,
    };
    std::env::set_current_dir(&dir)
        .map_err(|e| anyhow!("cannot enter {}: {}", clean_path(&dir), io_words(&e)))
}

/// `lpwd`: the local folder.
///
/// # Errors
/// If it cannot be found (it was removed, say).
pub fn lpwd() -> anyhow::Result<String> {
    let dir = std::env::current_dir().map_err(|e| anyhow!("no local folder: {}", io_words(&e)))?;
    Ok(format!("{}\n", clean_path(&dir)))
}

/// `~` and `~/...` under the home folder, as a shell would (the shell's
/// own word splitting does not); anything else as it is.
fn expand_home(p: &Path) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tilde_is_the_home_folder() {
        let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
            return;
        };
        assert_eq!(expand_home(Path::new("~")), home);
        assert_eq!(expand_home(Path::new("~/a/b")), home.join("a/b"));
        assert_eq!(expand_home(Path::new("a/~")), Path::new("a/~"));
        assert_eq!(expand_home(Path::new("~bob")), Path::new("~bob"));
    }

    #[test]
    fn lls_lists_files_and_folders_but_not_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("报告.txt"), vec![0u8; 1536]).unwrap();
        fs::write(d.join(".netdisk-x.part"), b"part").unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        let text = lls(Some(d)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("   SIZE  MODIFIED (UTC)"), "{text}");
        assert!(
            lines[1].starts_with("      -  ") && lines[1].ends_with("  sub/"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("1.5 KiB  ") && lines[2].ends_with("  报告.txt"),
            "{text}"
        );
        assert!(!text.contains("part"));
        let one = lls(Some(&d.join("报告.txt"))).unwrap();
        assert!(one.contains("报告.txt"), "{one}");
        assert!(lls(Some(&d.join("missing"))).is_err());
    }
}
