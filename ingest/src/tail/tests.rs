//! The follower driven by hand: rotations, copytruncate and restarts, each position
//! checked against the one before (no gap), every line read exactly once.

use super::*;
use std::io::Write;

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("queue_log");
        Self { _tmp: tmp, path }
    }

    fn at(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(suffix);
        p.into()
    }

    fn source(&self) -> TailSource {
        TailSource::new(&self.path, Format::QueueLog)
            .expect("source")
            .with_poll_interval(Duration::from_millis(1))
    }
}

/// A writer holding its file open (as a PBX does until it reopens its log).
fn writer(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log")
}

fn write(f: &mut File, text: &str) {
    f.write_all(text.as_bytes()).expect("write");
}

/// What a run of polls brings: the lines handed out, the context lines; the
/// checkpoint moved by every batch, which must never leave a gap.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    context: Vec<String>,
    checkpoint: SourceCheckpoint,
}

impl Seen {
    fn drain(&mut self, src: &mut TailSource) {
        let mut idle = 0;
        while idle < 5 {
            if self.poll_once(src) {
                idle = 0;
            } else {
                idle += 1;
            }
        }
    }

    /// One poll; whether it brought anything.
    fn poll_once(&mut self, src: &mut TailSource) -> bool {
        match src.poll().expect("poll") {
            Poll::Batch(b) => {
                self.checkpoint.check(&b.delta).expect("no gap");
                self.checkpoint.apply(&b.delta);
                self.lines.extend(lines(&b.bytes));
            }
            Poll::Context { bytes, .. } => self.context.extend(lines(&bytes)),
            Poll::Idle => return false,
            Poll::End => panic!("a followed file does not end"),
        }
        true
    }

    fn take(&mut self) -> (Vec<String>, Vec<String>) {
        (
            std::mem::take(&mut self.lines),
            std::mem::take(&mut self.context),
        )
    }
}

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_writer_appending_to_the_renamed_file_until_it_reopens_loses_nothing() {
    let d = Dir::new();
    let mut src = d.source();
    let mut seen = Seen::default();
    src.resume(&seen.checkpoint).expect("resume");
    let mut old = writer(&d.path);
    write(&mut old, "a\n");
    seen.drain(&mut src);
    // logrotate: rename, `create` an empty file; the writer still has the old one.
    std::fs::rename(&d.path, d.at(".1")).expect("rotate");
    let mut new = writer(&d.path);
    seen.drain(&mut src);
    write(&mut old, "b\n");
    write(&mut old, "c-cut");
    seen.drain(&mut src);
    // The writer reopens.
    write(&mut new, "d\n");
    seen.drain(&mut src);
    write(&mut new, "e\n");
    seen.drain(&mut src);
    assert_eq!(seen.take().0, strings(&["a", "b", "c-cut", "d", "e"]));
}

#[test]
fn two_rotations_before_the_first_file_is_read_lose_nothing() {
    let d = Dir::new();
    let mut src = d.source();
    let mut seen = Seen::default();
    write(&mut writer(&d.path), "a\n");
    src.resume(&seen.checkpoint).expect("resume"); // the file is known, not read yet
    std::fs::rename(&d.path, d.at("-1")).expect("rotate");
    write(&mut writer(&d.path), "b\n");
    seen.poll_once(&mut src); // the new file is seen (queued); the first one read
    std::fs::rename(&d.path, d.at("-2")).expect("rotate");
    write(&mut writer(&d.path), "c\n");
    seen.drain(&mut src);
    assert_eq!(seen.take().0, strings(&["a", "b", "c"]));
}

#[test]
fn copytruncate_reads_the_lines_after_the_last_read_from_the_copy() {
    let d = Dir::new();
    let mut src = d.source();
    let mut seen = Seen::default();
    src.resume(&seen.checkpoint).expect("resume");
    let mut w = writer(&d.path);
    write(&mut w, "a\nb\n");
    seen.drain(&mut src);
    write(&mut w, "c\n"); // not read before the copy
    std::fs::copy(&d.path, d.at(".1")).expect("copy");
    w.set_len(0).expect("truncate");
    write(&mut w, "d\n");
    seen.drain(&mut src);
    // The truncated file grows past the old offset before it is looked at again.
    write(&mut w, "e\n");
    seen.drain(&mut src);
    std::fs::copy(&d.path, d.at(".2")).expect("copy");
    w.set_len(0).expect("truncate");
    write(&mut w, "f-long-enough-to-pass-the-old-offset\n");
    seen.drain(&mut src);
    assert_eq!(
        seen.take().0,
        strings(&[
            "a",
            "b",
            "c",
            "d",
            "e",
            "f-long-enough-to-pass-the-old-offset"
        ])
    );
}

#[test]
fn a_restart_goes_on_at_its_position_across_the_rotations_made_while_stopped() {
    let d = Dir::new();
    let mut seen = Seen::default();
    {
        let mut src = d.source();
        src.resume(&seen.checkpoint).expect("resume");
        write(&mut writer(&d.path), "a\n");
        seen.drain(&mut src);
    }
    // Stopped: more lines, two rotations (slept between: modification times order them).
    let pause = || std::thread::sleep(Duration::from_millis(20));
    write(&mut writer(&d.path), "b\n");
    pause();
    std::fs::rename(&d.path, d.at("-20190304")).expect("rotate");
    write(&mut writer(&d.path), "c\n");
    pause();
    std::fs::rename(&d.path, d.at("-20190305")).expect("rotate");
    pause();
    write(&mut writer(&d.path), "d\n");
    let mut src = d.source();
    src.resume(&seen.checkpoint).expect("resume");
    seen.drain(&mut src);
    let (read, context) = seen.take();
    assert_eq!(read, strings(&["a", "b", "c", "d"]), "each line once");
    assert_eq!(
        context,
        strings(&["a"]),
        "the lines committed before, as context"
    );
    // Restarted again: the file before the position's comes back as context.
    let mut src = d.source();
    src.resume(&seen.checkpoint).expect("resume");
    seen.drain(&mut src);
    assert_eq!(seen.take(), (vec![], strings(&["c", "d"])));
}

#[test]
fn a_restart_after_a_copytruncate_while_stopped_reads_the_rest_from_the_copy() {
    let d = Dir::new();
    let mut seen = Seen::default();
    let mut w = writer(&d.path);
    {
        let mut src = d.source();
        src.resume(&seen.checkpoint).expect("resume");
        write(&mut w, "a\n");
        seen.drain(&mut src);
    }
    write(&mut w, "b\n");
    std::fs::copy(&d.path, d.at(".1")).expect("copy");
    w.set_len(0).expect("truncate");
    write(&mut w, "c\nd\n");
    let mut src = d.source();
    src.resume(&seen.checkpoint).expect("resume");
    seen.drain(&mut src);
    assert_eq!(seen.take().0, strings(&["a", "b", "c", "d"]));
}
