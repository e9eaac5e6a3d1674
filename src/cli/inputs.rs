//! The inputs of `import` and `push`, all opened and checked before anything is
//! committed: a typo, a directory or an unreadable file among them must not leave a half
//! import behind.

use anyhow::{Context, bail};
use std::fs::File;

/// One input, open.
pub enum Input {
    Stdin,
    File {
        name: String,
        /// The source name its events and dead letters carry: the absolute path of a
        /// regular file (the same file named `./a` or `a` is one source, so importing it
        /// again stores its dead letters once), else the name as given.
        source: String,
        file: File,
        /// Size in bytes when opened.
        len: u64,
        /// A regular file (not a FIFO or a device).
        regular: bool,
    },
}

impl Input {
    pub fn name(&self) -> &str {
        match self {
            Self::Stdin => "-",
            Self::File { name, .. } => name,
        }
    }
}

/// Opens every input (`-` is stdin, at most once) and checks it can be read as a stream
/// of lines: a regular file, a FIFO, a device; not a directory.
pub fn open_all(names: &[String]) -> anyhow::Result<Vec<Input>> {
    if names.iter().filter(|n| *n == "-").count() > 1 {
        bail!("`-` (stdin) given more than once");
    }
    names
        .iter()
        .map(|name| {
            if name == "-" {
                return Ok(Input::Stdin);
            }
            let opening = || format!("opening {name}");
            let file = File::open(name).with_context(opening)?;
            let meta = file.metadata().with_context(opening)?;
            if meta.is_dir() {
                bail!("{name} is a directory, not a file of events (nothing was imported)");
            }
            Ok(Input::File {
                name: name.clone(),
                source: source_name(name, meta.is_file()),
                file,
                len: meta.len(),
                regular: meta.is_file(),
            })
        })
        .collect()
}

/// See [`Input::File::source`].
pub fn source_name(name: &str, regular: bool) -> String {
    regular
        .then(|| std::fs::canonicalize(name).ok())
        .flatten()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_missing_files_and_double_stdin_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.ndjson");
        std::fs::write(&file, "{}\n").expect("write");
        let name = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
        let ok = open_all(&[name(&file), "-".into()]).expect("a file and stdin");
        assert_eq!(ok.len(), 2);
        let e = open_all(&[name(&file), name(dir.path())])
            .err()
            .expect("a directory");
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
        assert!(open_all(&[name(&dir.path().join("missing"))]).is_err());
        assert!(open_all(&["-".into(), "-".into()]).is_err());
        // One source however the file is named.
        let spelled = format!("{}/./a.ndjson", dir.path().display());
        let [Input::File { source: a, .. }, Input::File { source: b, .. }] =
            <[Input; 2]>::try_from(open_all(&[name(&file), spelled]).expect("open"))
                .unwrap_or_else(|_| panic!("two files"))
        else {
            panic!("two files")
        };
        assert_eq!(a, b);
    }
}
