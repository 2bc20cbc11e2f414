//! Writing output files so that a failure never leaves a partial file, or a partial set of
//! files, behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder `path` is in (`.` for a bare file name), created if missing.
fn parent_dir(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::file(&dir, format!("cannot create folder: {e}")))?;
    Ok(dir)
}

/// A hidden name next to `path` for writing it before it is renamed into place. The extension
/// is kept: some encoders pick the format from it.
fn temp_name(path: &Path) -> Result<PathBuf> {
    let dir = parent_dir(path)?;
    let stem = path
        .file_stem()
        .ok_or_else(|| Error::BadInput(format!("{} is not a file path", path.display())))?
        .to_string_lossy();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    Ok(dir.join(format!(".{stem}.tmp{}{ext}", std::process::id())))
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut files = Staged::default();
    files.write(path, bytes)?;
    files.commit()
}

/// Check up front that files can be written into `dir` (creating it if missing), so a long
/// computation is not thrown away because of where its results were to go.
pub fn check_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::file(dir, format!("cannot create folder: {e}")))?;
    let probe = dir.join(format!(".cardplan-probe{}", std::process::id()));
    write_file(&probe, b"")
        .map_err(|e| Error::file(dir, format!("cannot write into this folder: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Files written under temporary names and renamed into place together: if any write fails,
/// or the set is dropped without [`Staged::commit`], none of them appears.
#[derive(Debug, Default)]
pub struct Staged {
    /// (temporary, final) paths.
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// A temporary path to write `path`'s content to (for writers that take a path).
    pub fn temp_for(&mut self, path: &Path) -> Result<PathBuf> {
        let tmp = temp_name(path)?;
        self.files.push((tmp.clone(), path.to_path_buf()));
        Ok(tmp)
    }

    /// Write `bytes` as `path`'s content.
    pub fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.temp_for(path)?;
        write_file(&tmp, bytes).map_err(|e| Error::file(path, format!("cannot write: {e}")))
    }

    /// Move every file into place. A rename that fails takes back the files already moved.
    pub fn commit(mut self) -> Result<()> {
        let files = std::mem::take(&mut self.files);
        for (i, (tmp, path)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, path) {
                for (_, done) in &files[..i] {
                    let _ = std::fs::remove_file(done);
                }
                for (rest, _) in &files[i..] {
                    let _ = std::fs::remove_file(rest);
                }
                return Err(Error::file(path, format!("cannot write: {e}")));
            }
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cardplan-fsutil-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_set_dropped_before_commit_leaves_nothing() {
        let d = scratch("drop");
        {
            let mut s = Staged::default();
            s.write(&d.join("a.md"), b"a").unwrap();
            s.write(&d.join("b.svg"), b"b").unwrap();
        }
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_committed_set_is_all_there() {
        let d = scratch("commit");
        let mut s = Staged::default();
        s.write(&d.join("a.md"), b"a").unwrap();
        s.write(&d.join("b.svg"), b"b").unwrap();
        s.commit().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.md", "b.svg"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
